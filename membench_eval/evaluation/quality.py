"""The per-image scorers of an evaluation (CLIP, aesthetic, any registered metric), or the reason
each is unavailable.

Which scorers and how each loads is the metric registry's (``metrics.registry``; the open_clip
loaders and their offline rules in ``metrics.quality_loading``). A loader that raises
``MetricUnavailable`` leaves its metric unavailable with the reason; MissingWeightsError propagates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from membench_eval.evaluation.plan import EvalOptions
    from membench_eval.suites.types import Suite


def load_quality_scorers(options: "EvalOptions", suite: "Suite") -> dict[str, Any]:
    """``{"clip": scorer | None, "aesthetic": scorer | None, "<metric>_reason": why not}`` (one
    entry per registered per-image metric) for a run with ``options`` (models, weights, device)
    on ``suite`` (its CLIP model, its leniency)."""
    from membench_eval.metrics.registry import MetricUnavailable, image_metrics

    out: dict[str, Any] = {}
    for spec in image_metrics():
        out[spec.name] = None
        try:
            out[spec.name] = spec.load(options, suite)  # type: ignore[misc]
        except MetricUnavailable as exc:
            out[spec.name + "_reason"] = spec.unavailable_reason(str(exc))
    return out
