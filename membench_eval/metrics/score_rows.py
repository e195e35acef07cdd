"""The per-image score rows of the run store: metric names, and one checked call of a scorer.

The names of today's per-image metrics are also their registry specs' ``store_metric``
(``metrics.registry``); new metrics name theirs there."""

from __future__ import annotations

from typing import Any

import numpy as np

from membench_eval.errors import MembenchError

SSCD_METRIC = "sscd_similarities"  # value: {memorized image id: similarity}
CLIP_METRIC = "clip_score"
AESTHETIC_METRIC = "aesthetic_score"


def score_images(scorer: Any, metric: str, images: list[Any], texts: list[str], *, uses_text: bool) -> list[float]:
    """One value per image (``uses_text``: the scorer also reads each image's prompt, as CLIP does)."""
    values = scorer.score(images, texts) if uses_text else scorer.score(images)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.shape[0] != len(images) or not np.isfinite(values).all():
        raise MembenchError(f"{metric}: scorer returned {values.shape[0]} values for {len(images)} images or non-finite")
    return values.tolist()
