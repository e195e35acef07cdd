"""The attack table: per method, fixed-prompt and attacked Top-1 SSCD with intervals over
memorized images, the share re-extracted, and the paired difference attacked minus fixed.

Intervals are ``membench_eval.stats.ClusterBootstrap`` percentile intervals with one cluster per
memorized image (the unit the attack targets), resampled once and shared by every method and
column, so differences are paired: same images, same resamples. Written as
``<out>/<suite>.attack.md`` and ``.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from membench_eval.attack.run import COPY_THRESHOLD, ImageResult
from membench_eval.attack.signal import AttackError
from membench_eval.report.text import md_cell

if TYPE_CHECKING:
    from membench_eval.stats import Estimate

COLUMNS = {
    "fixed_top1": "Top-1 SSCD (fixed prompts)",
    "attacked_top1": "Top-1 SSCD under attack",
    "delta": "attacked - fixed",
    "re_extracted": "images re-extracted",
    "fixed_extracted": "extracted (fixed prompts)",
}


@dataclass
class AttackRow:
    label: str
    kind: str  # base | method
    scorer: str  # what the attacker's score sees of the method
    estimates: dict[str, "Estimate"]
    candidates_mean: float
    unet_rows_mean: float
    images: list[ImageResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "kind": self.kind, "scorer": self.scorer,
                **{k: e.to_dict() for k, e in self.estimates.items()},
                "candidates_per_image": self.candidates_mean, "scorer_unet_rows_per_image": self.unet_rows_mean,
                "images": [r.to_dict() for r in self.images]}


@dataclass
class AttackTable:
    suite: str
    rows: list[AttackRow]
    metadata: dict[str, Any]
    # White-box variant, reported separately: label -> {"reason"} (n/a) or estimates and per-image results.
    whitebox: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "columns": COLUMNS, "metadata": self.metadata, "rows": [r.to_dict() for r in self.rows],
                "whitebox": self.whitebox}


def whitebox_rows(rows: Sequence[AttackRow], results: dict[str, list[dict[str, Any]]], *, n_resamples: int,
                  seed: int) -> dict[str, dict[str, Any]]:
    """Per method: white-box Top-1, its paired difference to the fixed-prompt Top-1, re-extracted."""
    from membench_eval.stats import ClusterBootstrap

    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        per_image = results.get(row.label)
        if per_image is None:
            continue
        reasons = {r["reason"] for r in per_image if "reason" in r}
        if reasons:
            out[row.label] = {"reason": sorted(reasons)[0]}
            continue
        boot = ClusterBootstrap(np.arange(len(per_image)), n_resamples=n_resamples, seed=seed)
        fixed = np.array([r.fixed_top1 for r in row.images])
        top1 = np.array([r["top1"] for r in per_image])
        out[row.label] = {"whitebox_top1": boot.estimate(top1).to_dict(), "delta": boot.paired_delta(top1, fixed).to_dict(),
                          "re_extracted": boot.estimate((top1 > COPY_THRESHOLD).astype(float)).to_dict(),
                          "fixed_top1": row.estimates["fixed_top1"].to_dict(), "images": per_image}
    return out


def build_table(suite: str, results: dict[str, tuple[str, str, list[ImageResult]]], metadata: dict[str, Any], *,
                n_resamples: int, seed: int) -> AttackTable:
    """``results``: label -> (kind, scorer note, per-image results); every method over the same images."""
    from membench_eval.stats import ClusterBootstrap

    orders = {label: [r.image_id for r in rs] for label, (_, _, rs) in results.items()}
    first = next(iter(orders.values()), None)
    if not first:
        raise AttackError("attack table: no results")
    if any(o != first for o in orders.values()):
        raise AttackError("attack table: methods were attacked on different memorized images")
    boot = ClusterBootstrap(np.arange(len(first)), n_resamples=n_resamples, seed=seed)
    rows = []
    for label, (kind, note, rs) in results.items():
        fixed = np.array([r.fixed_top1 for r in rs])
        attacked = np.array([r.attacked_top1 for r in rs])
        est = {
            "fixed_top1": boot.estimate(fixed), "attacked_top1": boot.estimate(attacked),
            "delta": boot.paired_delta(attacked, fixed),
            "re_extracted": boot.estimate((attacked > COPY_THRESHOLD).astype(float)),
            "fixed_extracted": boot.estimate((fixed > COPY_THRESHOLD).astype(float)),
        }
        rows.append(AttackRow(label, kind, note, est, float(np.mean([r.candidates for r in rs])),
                              float(np.mean([r.unet_rows for r in rs])), list(rs)))
    return AttackTable(suite, rows, metadata)


def _est(d: dict[str, Any]) -> "Estimate":
    from membench_eval.stats import Estimate

    return Estimate(**d)


def _fmt(e: "Estimate", signed: bool = False) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(e.mean)} [{f.format(e.low)}, {f.format(e.high)}]"


def to_markdown(table: AttackTable) -> str:
    md = table.metadata
    lines = [
        f"# Adaptive attack on {table.suite}",
        "",
        f"Attacker budget: **{md['budget']} scored candidates per memorized image** (one conditional UNet "
        f"evaluation of the signal each), equal for every method; {md['n_images']} memorized images; "
        f"{md['prompts_per_image']} attack prompts x {md['images_per_prompt']} images each vs "
        f"{md['fixed_images_per_prompt']} images per fixed trigger prompt. Search: MemBench Algorithm 2 from "
        f"each image's trigger prompt, Wen's single-step signal through the method's UNet-call hooks; rewrites "
        f"(RNA, RTA) act after submission. Run seed {md['seed']}. 95% bootstrap intervals over memorized images; "
        f"'images re-extracted': share with an attack image of SSCD > {COPY_THRESHOLD}.",
        "",
        "| method | " + " | ".join(COLUMNS.values()) + " | candidates / image | scorer UNet rows / image | attacker's score |",
        "|---|" + "---|" * (len(COLUMNS) + 3),
    ]
    for r in table.rows:
        cells = [_fmt(r.estimates[k], signed=(k == "delta")) for k in COLUMNS]
        lines.append(f"| {md_cell(r.label)} | " + " | ".join(cells)
                     + f" | {r.candidates_mean:.0f} | {r.unet_rows_mean:.0f} | {r.scorer} |")
    if table.whitebox:
        steps = md.get("whitebox_steps")
        lines += ["", "## White-box: prompt embedding optimised against the method (reported separately)", "",
                  f"Adam on the trigger prompt's text-encoder output ({steps} steps of one forward and backward pass "
                  f"over two UNet rows), maximising the same signal with the method's cross-attention processor "
                  f"installed; generated {md['fixed_images_per_prompt']} times through the mitigated pipeline."
                  + (f" Perturbation budget (Finding Dori): every token within {md['whitebox_budget']:g} x its own "
                     f"L2 norm of the encoded prompt." if md.get("whitebox_budget") is not None else ""), "",
                  "| method | Top-1 SSCD (fixed prompts) | Top-1 SSCD, white-box | white-box - fixed | images re-extracted |",
                  "|---|---|---|---|---|"]
        for label, w in table.whitebox.items():
            if "reason" in w:
                lines.append(f"| {md_cell(label)} | n/a | n/a ({md_cell(w['reason'])}) | n/a | n/a |")
                continue
            e = {k: _est(w[k]) for k in ("fixed_top1", "whitebox_top1", "delta", "re_extracted")}
            lines.append(f"| {md_cell(label)} | {_fmt(e['fixed_top1'])} | {_fmt(e['whitebox_top1'])} | "
                         f"{_fmt(e['delta'], signed=True)} | {_fmt(e['re_extracted'])} |")
    lines += ["", f"Best attack prompt per image ({table.rows[-1].label if table.rows else '-'}):", ""]
    if table.rows:
        for img in table.rows[-1].images[:50]:
            best = max(img.attack_prompts, key=lambda a: a.get("top1", -1.0))
            lines.append(f"- {img.image_id}: fixed {img.fixed_top1:.3f} -> attacked {img.attacked_top1:.3f} "
                         f"with {best['prompt']!r} (from {img.origin[0]!r})")
    return "\n".join(lines) + "\n"


def write_table(table: AttackTable, out_dir: str | Path, stem: str, store_root: str | Path | None = None) -> tuple[Path, Path]:
    """``<out>/<stem>.attack.md`` and ``.json``; with ``store_root`` also the store's copy, which
    leaderboards over that store show (``report.attack_section``)."""
    from membench_eval.report.attack_section import attack_table_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out / f"{stem}.attack.md", out / f"{stem}.attack.json"
    text_json = json.dumps(table.to_dict(), indent=2) + "\n"
    files = [(md_path, to_markdown(table)), (json_path, text_json)]
    if store_root is not None:
        stored = attack_table_path(store_root, stem, table.metadata["seed"])
        files.append((stored, text_json))
    from membench_eval.store.atomic import write_atomic

    for path, text in files:
        write_atomic(path, text)
    return md_path, json_path


def attack_methods(ev: Any, files: Sequence[str], params: Sequence[str]) -> list[Any]:
    """Base, then every configuration of the given method files (``MethodSpec``s)."""
    from membench_eval.evaluation.plan import MethodSpec
    from membench_eval.mitigation import Mitigation
    from membench_eval.plugins.mitigations import load_mitigations
    from membench_eval.report.leaderboard import BASE_LABEL

    specs = [MethodSpec(BASE_LABEL, "base", "base", {}, None, Mitigation())]
    for path in files:
        for m in load_mitigations(path, None, list(params)):
            if m.label() != BASE_LABEL and all(s.label != m.label() for s in specs):
                specs.append(MethodSpec(m.label(), "method", m.name, m.params(), str(path), m))
    return specs


def run_attack(ev: Any, specs: Sequence[Any], options: Any, *, whitebox_steps: int | None = None,
               whitebox_budget: float | None = None) -> AttackTable:
    """Attack every method of ``specs`` (``MethodSpec``s, base first) on the same memorized images;
    with ``whitebox_steps`` also the white-box variant (``attack.whitebox``)."""
    from membench_eval.attack.run import Attack
    from membench_eval.attack.signal import scorer_note
    from membench_eval.models.identity import model_identity
    from membench_eval.mitigation import Mitigation

    attack = Attack(ev, options)
    targets = attack.targets()
    results = {}
    for spec in specs:
        m = spec.mitigation if spec.mitigation is not None else Mitigation()
        results[spec.label] = (spec.kind, scorer_note(m), attack.run_method(spec, targets))
    settings = ev.settings
    metadata = {
        "budget": options.budget, "budget_unit": "scored candidate prompts per memorized image",
        "n_images": len(targets), "prompts_per_image": options.n_prompts(settings.trigger_images_per_prompt),
        "images_per_prompt": options.images_per_prompt, "fixed_images_per_prompt": settings.trigger_images_per_prompt,
        "trigger_prompts_per_image": options.trigger_prompts, "seed": settings.seed, "mlm": attack.mlm.spec,
        "model": model_identity(ev.pipeline), "sscd_backend": ev.sscd_backend, "copy_threshold": COPY_THRESHOLD,
        "options": {k: v for k, v in options.__dict__.items() if k != "progress"},
        "counts": {**attack.counts, **{k: ev.counts[k] for k in ("generated", "reused")}},
        "bootstrap": {"resamples": ev.options.bootstrap_resamples, "seed": ev.options.bootstrap_seed,
                      "cluster": "memorized image"},
    }
    table = build_table(ev.suite.name, results, metadata, n_resamples=ev.options.bootstrap_resamples,
                        seed=ev.options.bootstrap_seed)
    if whitebox_steps is not None:
        if whitebox_steps < 1:
            raise AttackError(f"attack: --whitebox-steps must be >= 1, got {whitebox_steps}")
        if whitebox_budget is not None and not whitebox_budget > 0:
            raise AttackError(f"attack: --whitebox-budget must be > 0, got {whitebox_budget}")
        wb = {spec.label: [attack.whitebox_image(spec, t, whitebox_steps, whitebox_budget) for t in targets]
              for spec in specs}
        table.whitebox = whitebox_rows(table.rows, wb, n_resamples=ev.options.bootstrap_resamples,
                                       seed=ev.options.bootstrap_seed)
        table.metadata["whitebox_steps"] = whitebox_steps
        if whitebox_budget is not None:
            table.metadata["whitebox_budget"] = whitebox_budget
    return table
