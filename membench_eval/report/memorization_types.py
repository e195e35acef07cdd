"""Top-1 / Top-3 / SSCD>0.5 per memorization type, where a suite labels its trigger prompts.

Why: Webster's SD 2 list labels each prompt matching verbatim (MV: the prompt reproduces one
training image) or template verbatim (TV: a caption template reproduces a family of images), and a
mitigation may remove one kind and not the other; a mean over 215 TV and 4 MV prompts hides that.
The labels come with the suite (``Prompt.memorization_type``) into the leaderboard metadata
(``memorization_types``: prompt id -> type); intervals are the main table's cluster bootstrap,
drawn over the prompts of each type alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from membench_eval.report.text import Table, fmt_number

if TYPE_CHECKING:
    from membench_eval.report.leaderboard import Leaderboard
    from membench_eval.report.text import _Notes

METRICS = (("top1_sscd", "Top-1 SSCD"), ("top3_sscd", "Top-3 SSCD"), ("sscd_gt_05", "SSCD>0.5"))


def type_tables(board: "Leaderboard", notes: "_Notes") -> list[Table]:
    """One table: a line per (row, type) with each metric's mean [CI] over that type's prompts."""
    from membench_eval.stats import ClusterBootstrap
    from membench_eval.stats.clusters import cluster_labels

    types: dict[str, str] = dict(board.metadata.get("memorization_types") or {})
    if not types:
        return []
    b = board.bootstrap
    lines = []
    for row in board.rows:
        results = [r for r in board.results if r.label == row.label and r.role == "trigger" and r.prompt_id in types]
        for kind in sorted(set(types.values())):
            rs = sorted((r for r in results if types[r.prompt_id] == kind), key=lambda r: r.prompt_id)
            if not rs:
                continue
            boot = ClusterBootstrap(cluster_labels([r.prompt_id for r in rs], [r.memorized_ids for r in rs],
                                                   b["cluster_method"]),
                                    n_resamples=b["n_resamples"], seed=b["seed"], confidence=b["confidence"])
            cells = []
            for metric, _ in METRICS:
                values = [r.metrics.get(metric) for r in rs]
                if any(v is None for v in values):
                    cells.append(f"n/a {notes.ref(f'{metric} missing for some {kind} prompts')}")
                    continue
                est = boot.estimate([float(v) for v in values])  # type: ignore[arg-type]
                cells.append(f"{fmt_number(est.mean, 3)} [{fmt_number(est.low, 3)}, {fmt_number(est.high, 3)}]")
            lines.append([row.label, kind, str(len(rs)), *cells])
    if not lines:
        return []
    counts = {k: sum(1 for v in types.values() if v == k) for k in sorted(set(types.values()))}
    intro = ("The suite labels its trigger prompts by memorization type (" +
             ", ".join(f"{k}: {n} prompts" for k, n in counts.items()) +
             "; MV = matching verbatim, TV = template verbatim). Each cell: mean over that type's prompts [CI].")
    return [Table("memorization-types", "Per memorization type", ["method", "type", "prompts",
                                                                  *(t for _, t in METRICS)], lines, [intro])]
