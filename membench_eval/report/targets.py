"""Whether a suite's published reference targets are comparable with this run's measurements.

A published number (MemBench's "Reference (image search)" row: Top-1 SSCD 0.088, CLIP 0.310) was
measured with one SSCD model and one CLIP model. A run scored with another backend (e.g. the
offline ``disc_mixup_onnx`` stand-in instead of ``disc_large``) produces numbers on another scale,
so putting the target beside them would invite a comparison that means nothing. The leaderboard
therefore shows a target only when the run measured its column the same way, and otherwise says
why it is withheld.

What the run measured with is read from the leaderboard metadata: ``sscd_backend`` (a backend
name such as ``"disc_large"``) and ``clip_model`` (the CLIP scorer's id, ``key=value`` pairs joined
by ``|`` with ``clip_model=ViT-g-14`` and ``clip_pretrained=laion2b_s12b_b42k`` among them; a
plain ``"ViT-g-14/laion2b_s12b_b42k"``-like string is matched by its parts).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from membench_eval.metrics.registry import metrics
from membench_eval.suites.types import ReferenceTargets

# Per-prompt metrics that come from SSCD similarities (the registry's), and from the CLIP score.
SSCD_METRICS = frozenset(s.name for s in metrics() if s.source == "sscd")
CLIP_METRICS = frozenset({"clip"})


@dataclass(frozen=True)
class TargetCheck:
    """One published target and whether this run can be compared with it."""

    column: str
    value: float
    measured_with: dict[str, str | None]
    reason: str | None = None  # why it is not comparable (None: comparable, shown)

    @property
    def comparable(self) -> bool:
        return self.reason is None

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "measured_with": dict(self.measured_with), "comparable": self.comparable,
                "reason": self.reason}


def parse_clip_id(text: str | None) -> tuple[str | None, str | None]:
    """(model, pretrained) from a CLIP scorer id as recorded in the metadata; (None, None) if absent."""
    if not text:
        return None, None
    pairs = dict(part.split("=", 1) for part in str(text).split("|") if "=" in part)
    if "clip_model" in pairs:
        return pairs["clip_model"], pairs.get("clip_pretrained")
    parts = [p for p in re.split(r"[\s/|,:]+", str(text)) if p]
    return (parts[0] if parts else None), (parts[1] if len(parts) > 1 else None)


def _clip_name(model: str | None, pretrained: str | None) -> str:
    return f"open_clip {model}" + (f" / {pretrained}" if pretrained else "")


def check_targets(targets: ReferenceTargets, metadata: Mapping[str, Any], metric_of: Mapping[str, str]
                  ) -> dict[str, TargetCheck]:
    """Each declared target (column key -> check) against the run's ``metadata``.

    ``metric_of`` maps column keys to their per-prompt metric (which measurement a column uses).
    """
    run_sscd = metadata.get("sscd_backend")
    run_clip_model, run_clip_pretrained = parse_clip_id(metadata.get("clip_model"))
    out: dict[str, TargetCheck] = {}
    for key, value in (("top1_sscd", targets.top1_sscd), ("clip", targets.clip)):
        if value is None:
            continue
        metric = metric_of.get(key, key)
        if metric in SSCD_METRICS:
            want = {"sscd_backend": targets.sscd_backend}
            if targets.sscd_backend is None:
                reason = (f"the published value does not say which SSCD backend measured it; this run scores "
                          f"with {run_sscd or 'an unrecorded backend'}, not comparable")
            elif not run_sscd:
                reason = f"published with {targets.sscd_backend}; this run records no SSCD backend, not comparable"
            elif run_sscd != targets.sscd_backend:
                reason = f"published with {targets.sscd_backend}; this run scores with {run_sscd}, not comparable"
            else:
                reason = None
        elif metric in CLIP_METRICS:
            want = {"clip_model": targets.clip_model, "clip_pretrained": targets.clip_pretrained}
            published = _clip_name(targets.clip_model, targets.clip_pretrained)
            if targets.clip_model is None:
                reason = "the published value does not say which CLIP model measured it; not comparable"
            elif run_clip_model is None:
                reason = f"published with {published}; this run has no CLIP score, not comparable"
            elif run_clip_model != targets.clip_model or (
                    targets.clip_pretrained is not None and run_clip_pretrained != targets.clip_pretrained):
                reason = (f"published with {published}; this run scores with "
                          f"{_clip_name(run_clip_model, run_clip_pretrained)}, not comparable")
            else:
                reason = None
        else:
            want = {}
            reason = "no record of how the published value was measured; not comparable"
        out[key] = TargetCheck(key, float(value), want, reason)
    return out
