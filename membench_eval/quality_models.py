"""The per-image scorers of an evaluation (CLIP, aesthetic, any registered metric), or the reason
each is unavailable.

Which scorers and how each loads is the metric registry's (``metrics.registry``; the open_clip
loaders and their offline rules in ``metrics.quality_loading``). A loader that raises
``MetricUnavailable`` leaves its metric unavailable with the reason; MissingWeightsError propagates.
"""

from __future__ import annotations

from typing import Any


def load_quality_scorers(ev: Any) -> dict[str, Any]:
    """``{"clip": scorer | None, "aesthetic": scorer | None, "<metric>_reason": why not}`` (one
    entry per registered per-image metric) for ``ev`` (an ``Evaluation``: its options and suite)."""
    from membench_eval.metrics.registry import MetricUnavailable, image_metrics

    out: dict[str, Any] = {}
    for spec in image_metrics():
        out[spec.name] = None
        try:
            out[spec.name] = spec.load(ev.options, ev.suite)  # type: ignore[misc]
        except MetricUnavailable as exc:
            out[spec.name + "_reason"] = spec.unavailable_reason(str(exc))
    return out
