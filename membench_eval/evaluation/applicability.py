"""Which planned methods the model's family cannot run (their rows read n/a, nothing is generated).

Why here: the runner plans methods before a model is loaded; whether a method applies is known only
from the loaded pipeline's family (``models.capabilities``: the method's ``needs`` against the
family's ``offers``; SD 2's v-prediction shares SD's family but not ``epsilon``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def not_applicable_reason(method: Any, pipe: Any) -> str | None:
    """``n/a: <method> needs <what>; <family> has none`` for a ``MethodSpec`` whose plugin the
    pipeline's family cannot run, else None (without a plugin, or one that needs nothing)."""
    plugin = getattr(method, "mitigation", None)
    if plugin is None or not getattr(plugin, "needs", None):
        return None
    from membench_eval.models import family_for
    from membench_eval.models.capabilities import not_applicable

    return not_applicable(plugin, family_for(pipe))


def not_applicable_rows(methods: Iterable[Any], load_pipe: Any) -> dict[str, str]:
    """Row label -> reason for every method of ``methods`` the family cannot run (the pipeline is
    loaded by ``load_pipe()`` only when some method declares needs)."""
    needy = [m for m in methods if getattr(getattr(m, "mitigation", None), "needs", None)]
    if not needy:
        return {}
    pipe = load_pipe()
    return {m.label: why for m in needy if (why := not_applicable_reason(m, pipe)) is not None}


def family_metadata(plan: Any, pipe: Any) -> dict[str, Any]:
    """The leaderboard metadata of model-family applicability and prompt types: ``not_applicable``
    (row label -> reason; with a loaded ``pipe`` only: a report from the store loads no model) and
    ``memorization_types`` (trigger prompt id -> the suite's type label, where it has them)."""
    out: dict[str, Any] = {}
    types = {p.prompt_id: p.memorization_type for p in plan.prompts.get("trigger", []) if p.memorization_type}
    if types:
        out["memorization_types"] = types
    # Only when some row is n/a: a run that loads the model and one that reuses every image from the
    # store (the xdist controller, a rerun) must write the same leaderboard JSON.
    na = not_applicable_rows(plan.methods, lambda: pipe) if pipe is not None else {}
    if na:
        out["not_applicable"] = na
    return out


def no_reference_error(suite: Any, coverage: Any) -> Exception:
    """The error of a trigger scenario with no reference image: a text-only list (Realistic
    Vision's: none were published, SSCD cannot be computed) says so; otherwise fetch them."""
    from membench_eval.errors import DataError

    if suite.trigger is not None and not any(p.memorized_ids for p in suite.trigger.prompts):
        return DataError(f"suite {suite.name}", "n/a: its trigger prompts are text only (no reference images were "
                         "published), so SSCD cannot be computed; score the prompts with `membench detect --suite "
                         f"{suite.cli_name}`, or run the general scenario alone")
    return DataError(f"suite {suite.name}", f"no memorized reference image is available: {coverage.summary()}; "
                     f"fetch them with `membench data fetch-references --suite {suite.cli_name}`")
