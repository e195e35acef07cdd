"""Detect-then-mitigate: a detector score and a threshold that decide which prompts a method treats.

A gate flags a prompt when its detector score is strictly above a threshold calibrated on prompts
known NOT to be memorized (``calibrate_threshold``: the smallest threshold whose false-positive
rate on those calibration negatives is at most a target FPR). Calibrate on one prompt set, apply to
another: the FPR then carries over to new non-memorized prompts only as far as the two sets are
alike, which is why the calibration set must be disjoint from the prompts being evaluated.

``ScoreGate(score_fn, threshold)`` memoises scores per prompt TEXT, so every image of a prompt gets
the same decision whichever batch it is generated in. For the decision to be independent of the
batch as well (not just of the other images of its prompt), ``score_fn`` must score each prompt
alone: ``wen_single_step_score_fn`` runs the UNet on one prompt per call, so a prompt's score is a
function of its text (float rounding depends on the batch shape; see ``generation.engine``).

``wen_single_step_score_fn`` is Wen et al.'s single-step signal with the defaults of
``detectors/wen_single.py`` (``signal.single_step_scores``: ``||eps(x_T, p) - eps(x_T, "")||_2^2``
at t = T - 1 on one latent seeded 0, at the UNet's native size), so a gate and the detection
leaderboard's ``wen_single`` row read the same number (equal for one prompt per call; otherwise
equal to float rounding, as the detector batches its prompts).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from membench_eval.detection.signal import single_step_scores

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline

ScoreFn = Callable[["StableDiffusionPipeline", Sequence[str]], Sequence[float]]


def calibrate_threshold(negative_scores: Sequence[float], fpr: float) -> float:
    """The smallest threshold ``t`` with ``#{s > t} / n <= fpr`` over the calibration negatives.

    A prompt is flagged when its score is STRICTLY above ``t``. With ``m = floor(fpr * n)`` false
    positives allowed, ``t`` is the (m+1)-th largest negative score: any smaller threshold would
    flag m + 1 negatives. Ties: negatives equal to ``t`` are not flagged, so when tied scores
    straddle the cut the calibration FPR is below ``fpr`` (all negatives equal: 0 for every
    ``fpr < 1``). ``fpr = 0``: the largest negative (nothing of the calibration set is flagged);
    ``fpr = 1``: ``-inf`` (everything is flagged).
    """
    scores = np.asarray(negative_scores, dtype=np.float64).ravel()
    if scores.size == 0:
        raise ValueError("calibrate_threshold: no calibration scores")
    if not np.isfinite(scores).all():
        raise ValueError("calibrate_threshold: calibration scores contain NaN or infinity")
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"calibrate_threshold: fpr must be in [0, 1], got {fpr}")
    allowed = math.floor(fpr * scores.size + 1e-9)  # 1e-9: 0.29 * 100 is 28.999999999999996
    if allowed >= scores.size:
        return -math.inf
    return float(np.sort(scores)[::-1][allowed])


class ScoreGate:
    """Flags prompts whose score is above ``threshold``; scores are memoised per prompt text."""

    def __init__(self, score_fn: ScoreFn, threshold: float):
        if math.isnan(threshold):
            raise ValueError("ScoreGate: threshold is NaN")
        self.score_fn = score_fn
        self.threshold = float(threshold)
        self._scores: dict[str, float] = {}

    def scores(self, pipe: "StableDiffusionPipeline", prompts: Sequence[str]) -> list[float]:
        """The score of each prompt; each distinct uncached text is scored once."""
        todo = list(dict.fromkeys(p for p in prompts if p not in self._scores))
        if todo:
            out = [float(s) for s in self.score_fn(pipe, todo)]
            if len(out) != len(todo):
                raise ValueError(f"ScoreGate: score_fn returned {len(out)} scores for {len(todo)} prompts")
            bad = [p for p, s in zip(todo, out) if not math.isfinite(s)]
            if bad:
                raise ValueError(f"ScoreGate: score_fn returned a non-finite score for {bad[0]!r}")
            self._scores.update(zip(todo, out))
        return [self._scores[p] for p in prompts]

    def flags(self, pipe: "StableDiffusionPipeline", prompts: Sequence[str]) -> list[bool]:
        """Whether each prompt is flagged (score strictly above the threshold)."""
        return [s > self.threshold for s in self.scores(pipe, prompts)]


def wen_single_step_score_fn(seed: int = 0) -> ScoreFn:
    """Wen's single-step score with ``detectors/wen_single.py``'s defaults (seed 0, t = T - 1,
    native size), scoring one prompt per UNet call so a score depends on its prompt only.
    Cost: one UNet row per prompt plus one unconditional row per call."""
    if seed < 0:
        raise ValueError(f"wen_single_step_score_fn: seed must be >= 0, got {seed}")

    def score(pipe: "StableDiffusionPipeline", prompts: Sequence[str]) -> list[float]:
        return [float(s) for s in single_step_scores(pipe, list(prompts), seed=seed, batch_size=1)]

    return score
