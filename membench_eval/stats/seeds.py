"""A mean over independent seeds with its Student's t interval (extraction runs: each seed reruns
a whole attack, so seeds are the independent units, and there are few of them)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from membench_eval.stats.bootstrap import DEFAULT_CONFIDENCE


def seed_interval(values: Sequence[float], confidence: float = DEFAULT_CONFIDENCE) -> dict[str, float | int]:
    """``{"mean", "low", "high", "n"}``: mean and t-interval over seeds, clipped to [0, 1] (the
    values are shares); one seed gives a zero-width interval."""
    from scipy import stats

    v = [float(x) for x in values]
    if not v:
        raise ValueError("no per-seed values")
    mean = sum(v) / len(v)
    if len(v) == 1:
        return {"mean": mean, "low": mean, "high": mean, "n": 1}
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(v) - 1)) * sd / math.sqrt(len(v))
    return {"mean": mean, "low": max(0.0, mean - half), "high": min(1.0, mean + half), "n": len(v)}
