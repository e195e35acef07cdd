"""Leaderboard as JSON (everything, for tools) and the files a run writes.

File names say what the run was, so a partial or failed run never overwrites a full one:
``<suite>.md`` / ``.json`` for a full run, ``<suite>.limit-2``, ``<suite>.subset-stratified`` or
``<suite>.limit-2.subset-stratified`` for a ``--limit`` / ``--subset`` run, and ``<stem>.failed``
when the run had failing items.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from membench_eval.report.leaderboard import Leaderboard
from membench_eval.report.render import to_markdown
from membench_eval.store.atomic import write_atomic

# 2: reference comparability, row completeness, few_clusters, delta_reason. Added since, without a
# version bump (additive, older readers ignore them): "memorization" (AMS/UMS bands), "paper" (the
# paper beside ours, null on suites without published numbers), per_prompt[].per_image,
# rows[].unet_evals_per_image (measured cost).
JSON_SCHEMA_VERSION = 2


def to_json(board: Leaderboard) -> dict[str, Any]:
    """Every number of the table plus every per-prompt value and the run's metadata."""
    return {**_head(board), "per_prompt": [r.to_dict() for r in board.results]}


def _head(board: Leaderboard) -> dict[str, Any]:
    """``to_json`` but ``per_prompt``: the table, the bands, the metadata."""
    from membench_eval.report.bands import band_section
    from membench_eval.report.paper import paper_comparison

    evals = _unet_evals_by_label(board)
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "suite": board.suite,
        "metadata": board.metadata,
        "bootstrap": board.bootstrap,
        "columns": [{"key": c.key, "title": c.title, "prompt_set": c.role, "metric": c.metric} for c in board.columns],
        "unavailable": board.unavailable,
        "reference": board.reference,
        "expected_prompts": board.expected,
        "rows": [
            {"label": r.label, "kind": r.kind, "method": r.method, "params": r.params, "n_prompts": r.n_prompts,
             "complete": r.complete, "prompt_coverage": r.prompt_coverage, "oracle": r.oracle,
             "method_path": board.metadata.get("methods", {}).get(r.label, {}).get("path"),
             "method_sha256": board.metadata.get("methods", {}).get(r.label, {}).get("sha256"),
             "unet_evals_per_image": evals.get(r.label),
             "metrics": {k: c.to_dict() for k, c in r.cells.items()}}
            for r in board.rows
        ],
        "memorization": band_section(board).to_dict(),
        "paper": paper_comparison(board),
    }


def unet_evals_per_image(board: Leaderboard, label: str) -> float | None:
    """Mean UNet forward rows per generated image of a row (all its prompts; plain CFG sampling
    is 2 x steps), measured by the engine; None when its images carry no count (references, or
    images stored by an older engine)."""
    return _unet_evals_by_label(board).get(label)


def _unet_evals_by_label(board: Leaderboard) -> dict[str, float | None]:
    """``unet_evals_per_image`` of every row, in one pass over the results (not one per row)."""
    counts: dict[str, list[Any]] = {}
    n_images: dict[str, int] = {}
    for r in board.results:
        counts.setdefault(r.label, []).extend(r.per_image.get("unet_evals", []))
        n_images[r.label] = n_images.get(r.label, 0) + r.n_images
    return {label: round(sum(c) / len(c), 2) if c and len(c) == n_images[label] else None
            for label, c in counts.items()}


def json_text(board: Leaderboard) -> str:
    """The JSON file's text (``json_pieces`` joined)."""
    return "".join(json_pieces(board))


def json_pieces(board: Leaderboard) -> Iterator[str]:
    """The JSON file's text (``to_json``), in pieces: indented, except one compact line per
    ``per_prompt`` entry. Why: the indented encoder is pure Python and put every per-image value on
    its own line (5 million lines for a 23-config sweep of 805,000 images); the compact lines go
    through the C encoder, from the results' own values (``PromptResult.to_dict`` copies them), and
    are written as made (``write_atomic`` takes the pieces), never held together: that text is ~190 MB
    at 805,000 images. The same JSON value either way (``json.loads`` of both is equal)."""
    text = json.dumps(_head(board), indent=1, sort_keys=False, default=str)
    dumps = json.JSONEncoder(default=str).encode
    yield text[:-2] + ",\n" + ' "per_prompt": ['  # an indented dict's text ends with "\n}"
    for i, r in enumerate(board.results):
        yield ("\n  " if i == 0 else ",\n  ") + dumps({
            "label": r.label, "method": r.method, "role": r.role, "prompt_id": r.prompt_id, "n_images": r.n_images,
            "metrics": r.metrics, "params": r.params, "memorized_ids": r.memorized_ids, "per_image": r.per_image})
    yield "\n ]\n}\n" if board.results else "]\n}\n"


def leaderboard_stem(suite: str, limit: int | None = None, subset: str | None = None) -> str:
    """File stem of a leaderboard: ``sd1``, ``sd1.limit-2``, ``sd1.subset-stratified``,
    ``sd1.limit-2.subset-stratified``."""
    stem = suite
    if limit is not None:
        stem += f".limit-{int(limit)}"
    if subset:
        stem += f".subset-{subset}"
    return stem


def write_leaderboard(board: Leaderboard, out_dir: str | os.PathLike, *, failed: bool = False) -> tuple[Path, Path]:
    """Write ``<out_dir>/<stem>.md`` and ``.json`` atomically; returns both paths.

    The stem is :func:`leaderboard_stem` of the suite and the metadata's ``limit`` / ``subset``;
    ``failed`` (the run had failing items) appends ``.failed`` so a good leaderboard is never
    overwritten by a broken one.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = leaderboard_stem(board.suite, board.metadata.get("limit"), board.metadata.get("subset"))
    if failed:
        stem += ".failed"
    md_path, json_path = out / f"{stem}.md", out / f"{stem}.json"
    write_atomic(json_path, json_pieces(board))
    write_atomic(md_path, to_markdown(board, failed=failed))
    return md_path, json_path
