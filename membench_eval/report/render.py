"""Leaderboard as markdown (for humans and the terminal summary) and JSON (everything, for tools).

The markdown has three tables: the paper's columns (mean [95% CI]), the paired difference of each
method to base on the same prompts, and the extra columns (Top-1 against any memorized image).
Unavailable metrics read "n/a" with a numbered footnote giving the reason.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from membench_eval.report.leaderboard import Cell, Leaderboard
from membench_eval.report.records import EXTRA_COLUMNS, PAPER_COLUMNS, Column

JSON_SCHEMA_VERSION = 1


def _fmt(x: float, decimals: int, signed: bool = False) -> str:
    return f"{x:+.{decimals}f}" if signed else f"{x:.{decimals}f}"


def _cell_text(cell: Cell, col: Column, notes: dict[str, int], delta: bool = False) -> str:
    if cell.reference_value is not None:
        return "-" if delta else _fmt(cell.reference_value, col.decimals)
    if cell.estimate is None and cell.reason is None:
        return "-"  # not declared (reference row)
    if cell.estimate is None:
        reason = cell.reason or "not available"
        n = notes.setdefault(reason, len(notes) + 1)
        return f"n/a [^{n}]"
    est = cell.delta if delta else cell.estimate
    if est is None:
        return "-"
    return f"{_fmt(est.mean, col.decimals, delta)} [{_fmt(est.low, col.decimals, delta)}, {_fmt(est.high, col.decimals, delta)}]"


def _table(board: Leaderboard, columns: tuple[Column, ...], notes: dict[str, int], delta: bool) -> str:
    from tabulate import tabulate

    rows = []
    for row in board.rows:
        if delta and row.kind in ("reference", "base"):
            continue
        if row.kind == "reference" and not any(row.cells[c.key].reference_value is not None for c in columns):
            continue
        rows.append([row.label] + [_cell_text(row.cells[c.key], c, notes, delta) for c in columns])
    if not rows:
        return ""
    return tabulate(rows, headers=["method"] + [c.title for c in columns], tablefmt="github", disable_numparse=True)


def to_markdown(board: Leaderboard) -> str:
    """The leaderboard page; ``terminal_summary`` prints the same text."""
    notes: dict[str, int] = {}
    cols_present = [c for c in PAPER_COLUMNS if c.key in board.rows[0].cells] if board.rows else list(PAPER_COLUMNS)
    extra = [c for c in EXTRA_COLUMNS if board.rows and c.key in board.rows[0].cells]
    b = board.bootstrap
    conf = int(round(100 * b["confidence"]))
    meta = board.metadata
    parts = [f"# MemBench leaderboard: suite `{board.suite}`", ""]
    clusters = {"components": "prompts linked through shared memorized images resample together",
                "first": "prompts resample with their first memorized image"}.get(b["cluster_method"], b["cluster_method"])
    parts.append(
        f"Each cell: mean over prompts [{conf}% CI]. Intervals: percentile cluster bootstrap over memorized images "
        f"({clusters}; general prompts resample one by one), {b['n_resamples']} resamples, seed {b['seed']}. "
        "Lower SSCD is better; higher CLIP and Aesthetic are better."
    )
    parts += ["", _table(board, tuple(cols_present), notes, delta=False), ""]
    delta_table = _table(board, tuple(cols_present), notes, delta=True)
    if delta_table:
        parts += ["## Paired difference to base (same prompts, same resamples)", "", delta_table, ""]
    if extra:
        parts += ["## Also measured (not in the paper's table)", "", _table(board, tuple(extra), notes, False), ""]
        extra_delta = _table(board, tuple(extra), notes, True)
        if extra_delta:
            parts += ["Difference to base:", "", extra_delta, ""]
    parts += ["## Run", ""]
    for key in ("model", "sscd_backend", "clip_model", "aesthetic_model", "seed", "coverage", "limit", "subset",
                "images_per_prompt", "versions"):
        if key in meta and meta[key] not in (None, "", {}):
            parts.append(f"- {key}: {_plain(meta[key])}")
    for row in board.rows:
        if row.kind != "reference":
            parts.append(f"- {row.label} ({row.kind}): {row.n_prompts.get('trigger', 0)} trigger prompts, "
                         f"{row.n_prompts.get('general', 0)} general prompts")
    if notes:
        parts.append("")
        for reason, n in notes.items():
            parts.append(f"[^{n}]: {reason}")
    return "\n".join(parts).rstrip() + "\n"


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items())
    return str(value)


def to_json(board: Leaderboard) -> dict[str, Any]:
    """Every number of the table plus every per-prompt value and the run's metadata."""
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "suite": board.suite,
        "metadata": board.metadata,
        "bootstrap": board.bootstrap,
        "columns": [{"key": c.key, "title": c.title, "prompt_set": c.role, "metric": c.metric} for c in board.columns],
        "unavailable": board.unavailable,
        "rows": [
            {"label": r.label, "kind": r.kind, "method": r.method, "params": r.params, "n_prompts": r.n_prompts,
             "metrics": {k: c.to_dict() for k, c in r.cells.items()}}
            for r in board.rows
        ],
        "per_prompt": [r.to_dict() for r in board.results],
    }


def write_leaderboard(board: Leaderboard, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``<out_dir>/<suite>.md`` and ``.json`` atomically; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out / f"{board.suite}.md", out / f"{board.suite}.json"
    _atomic_write(json_path, json.dumps(to_json(board), indent=1, sort_keys=False, default=str) + "\n")
    _atomic_write(md_path, to_markdown(board))
    return md_path, json_path


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is as readable as any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
