"""The paper beside ours: MemBench Table 3's value next to each measured cell, and the difference.

Only on suites with published numbers (``paper_table.paper_columns``: ``sd1`` trigger columns, ``coco``
general columns; nothing on ``mini``), and only for rows the paper has (base, RNA/RTA n = 1..6, Wen
l = 7..2, Ren c = 1.0..1.3; matched by method name and parameter value).

The difference (ours - paper) is shown only where the run measured the column the way the paper
did (SD 1.4; SSCD ``disc_large``; CLIP ViT-g-14 / laion2b_s12b_b42k; aesthetic on OpenAI ViT-L/14)
and the row is complete; otherwise the paper's value still stands beside ours, and a footnote says
why there is no difference. A ``--limit`` / ``--subset`` run is said to cover part of the suite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from membench_eval.report import paper_table as pt
from membench_eval.metrics.registry import columns_by_key
from membench_eval.report.text import Table
from membench_eval.report.targets import SSCD_METRICS, parse_clip_id

if TYPE_CHECKING:
    from membench_eval.report.leaderboard import Leaderboard, Row
    from membench_eval.report.text import _Notes


def _fields(text: Any) -> dict[str, str]:
    return dict(part.split("=", 1) for part in str(text or "").split("|") if "=" in part)


def column_checks(board: "Leaderboard") -> dict[str, str | None]:
    """Column key -> None when the run measured it as the paper did, else the reason it did not."""
    meta = board.metadata
    model = meta.get("model")
    model_reason = None
    if not model:
        model_reason = f"the paper ran SD 1.4 ({pt.PAPER_MODEL}); this run records no model"
    elif str(model) != pt.PAPER_MODEL:
        model_reason = f"the paper ran SD 1.4 ({pt.PAPER_MODEL}); this run uses {model}"
    out: dict[str, str | None] = {}
    for key in pt.paper_columns(board.suite):
        col = columns_by_key()[key]
        reason = model_reason
        if reason is None and col.metric in SSCD_METRICS:
            backend = meta.get("sscd_backend")
            if backend != pt.PAPER_SSCD_BACKEND:
                reason = (f"the paper scored SSCD with {pt.PAPER_SSCD_BACKEND}; this run with "
                          f"{backend or 'an unrecorded backend'}")
        elif reason is None and col.metric == "clip":
            got = parse_clip_id(meta.get("clip_model"))
            if got != pt.PAPER_CLIP:
                reason = (f"the paper's CLIP score is open_clip {' / '.join(pt.PAPER_CLIP)}; this run's is "
                          f"{' / '.join(g for g in got if g) or 'not recorded'}")
        elif reason is None and col.metric == "aesthetic":
            f = _fields(meta.get("aesthetic_model"))
            got = (f.get("aesthetic_clip_model"), f.get("aesthetic_clip_pretrained"))
            if got != pt.PAPER_AESTHETIC_CLIP:
                reason = (f"the paper's aesthetic head runs on CLIP {' / '.join(pt.PAPER_AESTHETIC_CLIP)}; this run's "
                          f"on {' / '.join(g for g in got if g) or 'an unrecorded model'}")
        out[key] = reason
    return out


def _paper_rows(board: "Leaderboard") -> list[tuple["Row", dict[str, float]]]:
    rows = []
    for row in board.rows:
        if row.kind in ("reference", "computed_reference"):
            continue
        values = pt.paper_row(row.method, row.params)
        if values is not None:
            rows.append((row, values))
    return rows


def paper_comparison(board: "Leaderboard") -> dict[str, Any] | None:
    """The JSON record: per row and column, ours, the paper's value, the difference or why none.
    None on suites without published numbers."""
    columns = pt.paper_columns(board.suite)
    if not columns:
        return None
    checks = column_checks(board)
    out: dict[str, Any] = {"source": pt.PAPER_SOURCE, "columns": list(columns), "not_comparable": checks, "rows": {}}
    for row, values in _paper_rows(board):
        cells = {}
        for key in columns:
            cell = row.cells.get(key)
            ours = cell.estimate.mean if cell is not None and cell.estimate is not None else None
            reason = _diff_reason(row, key, ours, checks, cell)
            cells[key] = {"ours": ours, "paper": values[key],
                          "difference": None if reason else ours - values[key],  # type: ignore[operator]
                          "reason": reason}
        out["rows"][row.label] = cells
    return out


def _diff_reason(row: "Row", key: str, ours: float | None, checks: dict[str, str | None], cell: Any) -> str | None:
    if ours is None:
        return (cell.reason if cell is not None and cell.reason else "not measured in this run")
    if checks.get(key):
        return f"{checks[key]}: not compared"
    role = columns_by_key()[key].role
    if not row.role_complete(role):
        return f"this row misses some planned {role} prompts: not compared"
    return None


def paper_tables(board: "Leaderboard", notes: "_Notes") -> list[Table]:
    """The "paper beside ours" table, or nothing on suites without published numbers."""
    data = paper_comparison(board)
    if data is None:
        return []
    known = columns_by_key()
    columns = [known[k] for k in data["columns"]]
    from membench_eval.report.text import fmt_number

    body = []
    for row, _ in _paper_rows(board):
        cells = []
        for col in columns:
            c = data["rows"][row.label][col.key]
            d = col.decimals
            ours = "n/a" if c["ours"] is None else fmt_number(c["ours"], d)
            diff = (f"- {notes.ref(c['reason'])}" if c["difference"] is None
                    else fmt_number(c["difference"], d, signed=True))
            cells.append(f"{ours} / {fmt_number(c['paper'], d)} / {diff}")
        body.append([row.display_label] + cells)
    intro = [f"Each cell: ours / paper / ours - paper. Paper: {pt.PAPER_SOURCE} (SSCD disc_large, CLIP ViT-g-14, "
             "LAION aesthetic on CLIP ViT-L/14); a difference is shown only where this run measured the column the "
             "same way."]
    limit, subset = board.metadata.get("limit"), board.metadata.get("subset")
    if limit is not None or subset:
        intro.append(f"This run covers part of the suite ({board.metadata.get('coverage') or 'limit/subset run'}); "
                     "the paper's means are over all of it.")
    if not body:
        intro.append("No row of this run has a published counterpart (base, RNA/RTA n=1..6, Wen l=7..2, "
                     "Ren c=1.0..1.3).")
    return [Table("paper", "The paper beside ours (MemBench Table 3)", ["method"] + [c.title for c in columns],
                  body, intro=intro)]
