"""The extraction table: per method, N generated, AMS and UMS per band with 95% intervals over seeds.

The interval is Student's t over the per-seed values (each seed reruns the whole attack: its pool,
clusters, classifier and generations), clipped to [0, 1]; one seed gives a zero-width interval
marked ``n=1``. Rows must share N: UMS divides by N, so rows of different N are refused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from membench_eval.errors import ExtractionError
from membench_eval.metrics.memorization import BAND_NAMES
from membench_eval.report.text import md_cell

if TYPE_CHECKING:
    from membench_eval.extraction.run import ExtractionResult

def _cell(est: dict[str, float | int]) -> str:
    return f"{est['mean']:.3f} [{est['low']:.3f}, {est['high']:.3f}]"


def table_rows(results: Sequence["ExtractionResult"]) -> list[dict[str, Any]]:
    if not results:
        raise ExtractionError("no extraction results to tabulate")
    ns = {r.n_generated for r in results}
    if len(ns) != 1:
        raise ExtractionError(f"extraction rows have different numbers of generated images ({sorted(ns)}); "
                              "UMS is only comparable at equal N")
    return [r.summary() for r in results]


def render_markdown(results: Sequence["ExtractionResult"]) -> str:
    rows = table_rows(results)
    first = rows[0]
    seeds = len(first["seeds"])
    head = ["method", "N generated", "seeds"] + [f"AMS {b}" for b in BAND_NAMES] + [f"UMS {b}" for b in BAND_NAMES]
    lines = [f"# Extraction: {first['suite']}", "",
             f"SSCD bands: {first['bands_text']}. Mean [95% t-interval over {seeds} seed(s)]; every row generated "
             f"the same N = {first['n_generated']} images per seed.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["label"], str(r["n_generated"]), str(len(r["seeds"]))]
        cells += [_cell(r["ams"][b]) for b in BAND_NAMES] + [_cell(r["ums"][b]) for b in BAND_NAMES]
        lines.append("| " + " | ".join(md_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(results: Sequence["ExtractionResult"], out: Path, stem: str) -> tuple[Path, Path]:
    """``<out>/<stem>.extract.md`` and ``.extract.json``."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from membench_eval.errors import StoreError

        raise StoreError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
    md, js = out / f"{stem}.extract.md", out / f"{stem}.extract.json"
    md.write_text(render_markdown(results), encoding="utf-8")
    js.write_text(json.dumps({"format": 1, "rows": table_rows(results)}, indent=1) + "\n", encoding="utf-8")
    return md, js
