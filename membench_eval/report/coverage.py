"""The "coverage" line of a leaderboard: how much of the suite this run actually ran.

A ``--limit`` / ``--subset`` run covers a fraction of the suite; the suite's own coverage
(reference images available, trigger prompts scorable) says nothing about that. The line says
both, e.g. ``2 of 18 trigger prompts run (limit 2), covering 2 of 6 memorized images; 2 of 5
general prompts run (limit 2); suite: reference images 6/6 available (100.0%); ...``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any


def selection_text(limit: int | None, subset: str | None) -> str:
    """``" (subset stratified, limit 2)"``, or ``""`` for a full run."""
    parts = ([f"subset {subset}"] if subset else []) + ([f"limit {limit}"] if limit is not None else [])
    return f" ({', '.join(parts)})" if parts else ""


def run_coverage(
    prompts: Mapping[str, Sequence[Any]],
    *,
    trigger_total: int | None = None,
    trigger_scorable: int | None = None,
    images_total: int | None = None,
    images_available: Collection[str] | None = None,
    general_total: int | None = None,
    limit: int | None = None,
    subset: str | None = None,
    suite_summary: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """(line, detail) for the prompts of a plan (role -> ``Prompt`` objects with ``memorized_ids``).

    ``trigger_scorable``: trigger prompts with an available reference image (what a full run would
    run); ``images_available``: ids of memorized images with a reference image.
    """
    sel = selection_text(limit, subset)
    parts: list[str] = []
    detail: dict[str, Any] = {"limit": limit, "subset": subset}
    if "trigger" in prompts:
        run = prompts["trigger"]
        scorable = trigger_scorable if trigger_scorable is not None else len(run)
        avail = set(images_available) if images_available is not None else None
        covered = {m for p in run for m in p.memorized_ids if avail is None or m in avail}
        n_avail = len(avail) if avail is not None else len(covered)
        scorable_word = "scorable " if trigger_total is not None and scorable != trigger_total else ""
        avail_word = "available " if images_total is not None and n_avail != images_total else ""
        parts.append(f"{len(run)} of {scorable} {scorable_word}trigger prompts run{sel}, covering "
                     f"{len(covered)} of {n_avail} {avail_word}memorized images")
        detail.update(trigger_prompts_run=len(run), trigger_prompts_scorable=scorable,
                      trigger_prompts_total=trigger_total, memorized_images_covered=len(covered),
                      memorized_images_available=n_avail, memorized_images_total=images_total)
    if "general" in prompts:
        run = prompts["general"]
        total = general_total if general_total is not None else len(run)
        parts.append(f"{len(run)} of {total} general prompts run{selection_text(limit, None)}")  # subset: trigger only
        detail.update(general_prompts_run=len(run), general_prompts_total=total)
    if suite_summary:
        parts.append(f"suite: {suite_summary}")
    return "; ".join(parts), detail
