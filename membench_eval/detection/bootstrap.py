"""Bootstrap intervals for ROC AUC and TPR at low FPR, resampling prompts the honest way.

Memorized prompts are not independent (many point at the same memorized image), so they are
resampled by cluster (``DetectionSet.clusters``: prompts sharing a memorized image); non-memorized
prompts are resampled one by one. The two classes are resampled separately (stratified), so every
resample has both and an AUC. The resamples are drawn once per prompt set from a fixed seed and
applied to every detector: the difference of two detectors' AUCs is paired (same prompts, same
resamples; a detector against itself gives exactly 0 with a zero-width interval).

A resample is a weight per prompt (how often it was drawn), so nothing is materialised: the AUC of
a resample is ``sum_ij w_i w_j [s_i > s_j] (+ 1/2 on ties) / (sum_i w_i * sum_j w_j)`` over
memorized i and non-memorized j, and TPR at FPR <= f is read off the weighted ROC. With unit
weights both equal scikit-learn's ``roc_auc_score`` and ``roc.tpr_at_fpr`` (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from membench_eval.stats import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, DEFAULT_SEED, Estimate


def _counts(rng: np.random.Generator, n_resamples: int, n_units: int) -> np.ndarray:
    """(n_resamples, n_units): how often each unit is drawn in each resample of n_units draws."""
    draws = rng.integers(0, n_units, size=(n_resamples, n_units))
    counts = np.zeros((n_resamples, n_units), dtype=np.float64)
    np.add.at(counts, (np.repeat(np.arange(n_resamples), n_units), draws.ravel()), 1.0)
    return counts


class RocBootstrap:
    """Stratified resamples of one labelled prompt set, drawn once, for any detector's scores."""

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        clusters: Sequence[int] | np.ndarray,
        *,
        n_resamples: int = DEFAULT_RESAMPLES,
        seed: int = DEFAULT_SEED,
        confidence: float = DEFAULT_CONFIDENCE,
    ) -> None:
        y = np.asarray(labels).astype(bool)
        c = np.asarray(clusters)
        if y.ndim != 1 or c.shape != y.shape:
            raise ValueError(f"labels {y.shape} and clusters {c.shape} must be aligned 1-d arrays")
        if not y.any() or y.all():
            raise ValueError("needs memorized and non-memorized prompts")
        if not 0 < confidence < 1 or n_resamples < 1:
            raise ValueError("confidence must be in (0, 1) and n_resamples >= 1")
        self.labels, self.n_resamples, self.seed, self.confidence = y, n_resamples, seed, confidence
        self.pos, self.neg = np.flatnonzero(y), np.flatnonzero(~y)
        uniq, inverse = np.unique(c[self.pos], return_inverse=True)
        self.n_pos_clusters = int(uniq.size)
        rng = np.random.default_rng(seed)
        # weights[b, i]: how often prompt i is in resample b (a memorized prompt: its cluster's count).
        self.pos_w = _counts(rng, n_resamples, self.n_pos_clusters)[:, inverse]
        self.neg_w = _counts(rng, n_resamples, self.neg.size)

    @property
    def n_prompts(self) -> int:
        return int(self.labels.size)

    @property
    def n_clusters(self) -> int:
        return self.n_pos_clusters + int(self.neg.size)

    def _split(self, scores: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = np.asarray(scores, dtype=np.float64)
        if s.shape != self.labels.shape:
            raise ValueError(f"expected {self.labels.size} scores, got shape {s.shape}")
        if not np.isfinite(s).all():
            raise ValueError("scores contain NaN or infinity")
        return s[self.pos], s[self.neg]

    def auc_replicates(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        """The resampled ROC AUCs (n_resamples,)."""
        sp, sn = self._split(scores)
        wins = (sp[:, None] > sn[None, :]).astype(np.float64) + 0.5 * (sp[:, None] == sn[None, :])
        num = np.einsum("bj,bj->b", self.pos_w @ wins, self.neg_w)
        return num / (self.pos_w.sum(axis=1) * self.neg_w.sum(axis=1))

    def tpr_replicates(self, scores: Sequence[float] | np.ndarray, fpr: float) -> np.ndarray:
        """The resampled largest TPR reachable at FPR <= ``fpr`` (n_resamples,)."""
        sp, sn = self._split(scores)
        s = np.concatenate([sp, sn])
        is_pos = np.concatenate([np.ones(sp.size, bool), np.zeros(sn.size, bool)])
        w = np.concatenate([self.pos_w, self.neg_w], axis=1)
        order = np.argsort(-s, kind="stable")
        s, is_pos, w = s[order], is_pos[order], w[:, order]
        tp = np.cumsum(w * is_pos, axis=1)
        fp = np.cumsum(w * ~is_pos, axis=1)
        ends = np.flatnonzero(np.append(s[1:] != s[:-1], True))  # one ROC point per distinct threshold
        tpr = tp[:, ends] / tp[:, -1:]
        fprs = fp[:, ends] / fp[:, -1:]
        return np.where(fprs <= fpr + 1e-12, tpr, 0.0).max(axis=1)

    def interval(self, point: float, replicates: np.ndarray) -> Estimate:
        """``point`` (the full-sample value) with the percentile interval of ``replicates``."""
        tail = (1.0 - self.confidence) / 2.0
        low, high = np.quantile(replicates, [tail, 1.0 - tail])
        return Estimate(float(point), float(low), float(high), self.n_prompts, self.n_clusters)
