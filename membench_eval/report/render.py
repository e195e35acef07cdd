"""Leaderboard as markdown (for humans and the terminal summary).

The markdown has three tables: the paper's columns (mean [95% CI]), the paired difference of each
method to base on the same prompts, and the extra columns (Top-1 against any memorized image).

- An unavailable metric, or a published target withheld as not comparable, reads "n/a" with a
  numbered footnote giving the reason.
- An incomplete row's label says how many prompts it has (``rna n=6 (12/18 trigger prompts)``);
  its delta to base reads "-" with a footnote (different prompt set, not compared).
- An interval resampled from fewer than 5 clusters carries a ``†`` and one footnote.
- Numbers go through :func:`fmt_number`: a value that rounds to zero prints ``0.000`` (never
  ``-0.000``, and unsigned even in the delta table, where other values carry their sign).

JSON and file writing live in ``report.output``.
"""

from __future__ import annotations

from typing import Any

from membench_eval.report.leaderboard import Cell, Leaderboard, few_clusters
from membench_eval.metrics.registry import columns as registered_columns
from membench_eval.metrics.registry import direction_sentence, image_metrics
from membench_eval.report.records import Column
from membench_eval.report.text import FEW_CLUSTERS_MARK, Notes, _Notes, fmt_number, md_cell, md_table
from membench_eval.stats import Estimate

def _interval(est: Estimate, col: Column, notes: _Notes, signed: bool) -> str:
    d = col.decimals
    text = f"{fmt_number(est.mean, d, signed)} [{fmt_number(est.low, d, signed)}, {fmt_number(est.high, d, signed)}]"
    if few_clusters(est):
        notes.few.add(est.n_clusters)
        text += FEW_CLUSTERS_MARK
    return text


def _cell_text(cell: Cell, col: Column, notes: _Notes, delta: bool = False) -> str:
    if cell.reference_value is not None:
        return "-" if delta else fmt_number(cell.reference_value, col.decimals)
    if cell.estimate is None and cell.reason is None:
        return "-"  # not declared (reference row)
    if cell.estimate is None:
        if delta and cell.withheld_value is not None:
            return "-"
        return f"n/a {notes.ref(cell.reason or 'not available')}"
    if not delta:
        return _interval(cell.estimate, col, notes, signed=False)
    if cell.delta is None:
        return f"- {notes.ref(cell.delta_reason)}" if cell.delta_reason else "-"
    return _interval(cell.delta, col, notes, signed=True)


def table_rows(board: Leaderboard, columns: tuple[Column, ...], notes: _Notes, delta: bool) -> list[list[str]]:
    """The cells of one table as text (label first): what the markdown, HTML and LaTeX show."""
    rows = []
    for row in board.rows:
        if delta and row.kind in ("reference", "computed_reference", "base"):
            continue
        if row.kind == "reference" and not any(row.cells[c.key].reference_value is not None
                                               or row.cells[c.key].withheld_value is not None for c in columns):
            continue
        rows.append([row.display_label] + [_cell_text(row.cells[c.key], c, notes, delta) for c in columns])
    return rows


def _table(board: Leaderboard, columns: tuple[Column, ...], notes: _Notes, delta: bool) -> str:
    rows = table_rows(board, columns, notes, delta)
    if not rows:
        return ""
    return md_table(rows, ["method"] + [c.title for c in columns])


def _prompts_run(row: Any) -> str:
    parts = []
    for role in ("trigger", "general"):
        cov = row.prompt_coverage.get(role)
        if cov is None:
            parts.append(f"{row.n_prompts.get(role, 0)} {role} prompts")
            continue
        text = f"{cov['present']} of {cov['expected']} {role} prompts"
        if cov["missing"]:
            text += f" (missing {len(cov['missing'])}, e.g. {', '.join(cov['missing'][:3])})"
        if cov["extra"]:
            text += f" (+{cov['extra']} outside the plan)"
        parts.append(text)
    return ", ".join(parts)


def to_markdown(board: Leaderboard, failed: bool = False) -> str:
    """The leaderboard page; ``terminal_summary`` prints the same text. It opens on the banner
    (limited, subset, partial or failed run) and one verdict line per method (``report.verdict``)."""
    from membench_eval.report.verdict import markdown_lines, run_status, title_tag

    notes = _Notes()
    main_cols = registered_columns("main")
    cols_present = [c for c in main_cols if c.key in board.rows[0].cells] if board.rows else list(main_cols)
    extra = [c for c in registered_columns("extra") if board.rows and c.key in board.rows[0].cells]
    b = board.bootstrap
    conf = int(round(100 * b["confidence"]))
    meta = board.metadata
    parts = [f"# MemBench leaderboard: suite `{board.suite}`{title_tag(run_status(board, failed))}", ""]
    parts += markdown_lines(board, failed)
    clusters = {"components": "prompts linked through shared memorized images resample together",
                "first": "prompts resample with their first memorized image"}.get(b["cluster_method"], b["cluster_method"])
    parts.append(
        f"Each cell: mean over prompts [{conf}% CI]. Intervals: percentile cluster bootstrap over memorized images "
        f"({clusters}; general prompts resample one by one), {b['n_resamples']} resamples, seed {b['seed']}. "
        + direction_sentence()
    )
    parts += ["", _table(board, tuple(cols_present), notes, delta=False), ""]
    if board.reference.get("note"):
        parts += [board.reference["note"], ""]
    delta_table = _table(board, tuple(cols_present), notes, delta=True)
    if delta_table:
        parts += ["## Paired difference to base (same prompts, same resamples)", "", delta_table, ""]
    if extra:
        parts += ["## Also measured (not in the paper's table)", "", _table(board, tuple(extra), notes, False), ""]
        extra_delta = _table(board, tuple(extra), notes, True)
        if extra_delta:
            parts += ["Difference to base:", "", extra_delta, ""]
    from membench_eval.report.sections import extra_tables  # AMS/UMS bands; the paper beside ours

    for table in extra_tables(board, notes):
        parts += table.markdown_lines()
    parts += ["## Run", ""]
    scorer_keys = scorer_metadata_keys()
    for key in ("model", "sscd_backend", *scorer_keys, "seed", "coverage", "limit", "subset",
                "images_per_prompt", "batch_size", "engine", "computed_reference", "versions"):
        if key in meta and meta[key] not in (None, "", {}):
            value = _short_scorer(meta[key]) if key in scorer_keys else _plain(meta[key])
            parts.append(f"- {key}: {value}")
    for row in board.rows:
        if row.kind != "reference":
            flag = "" if row.complete else " (incomplete)"
            source = meta.get("methods", {}).get(row.label, {})
            code = f"; code {source['path']} sha256 {source['sha256'][:12]}" if source.get("path") else ""
            parts.append(f"- {md_cell(row.label)} ({row.kind}){flag}: {_prompts_run(row)}{code}")
    footnotes = notes.lines()
    if footnotes:
        parts.append("")
        parts += footnotes
    return "\n".join(parts).rstrip() + "\n"


def scorer_metadata_keys() -> tuple[str, ...]:
    """The metadata keys naming each per-image metric's scorer (clip_model, aesthetic_model, ...)."""
    return tuple(str(s.model_key) for s in image_metrics())


def _short_scorer(value: Any) -> str:
    """A scorer id (``k=v|k=v...``, the JSON keeps it whole) as its model and weights only."""
    fields = dict(part.split("=", 1) for part in str(value).split("|") if "=" in part)
    names = [fields.get(k) for spec in image_metrics() for k in spec.id_fields]
    return " / ".join(n for n in names if n) or str(value)


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items())
    return str(value)


__all__ = ["FEW_CLUSTERS_MARK", "Notes", "fmt_number", "table_rows", "to_markdown"]
