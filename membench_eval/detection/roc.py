"""How well a score separates memorized from non-memorized prompts: ROC AUC and TPR at low FPR."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class DetectionMetrics:
    """ROC summary of scores for memorized (positive) vs non-memorized (negative) prompts."""

    auc: float
    tpr_at_fpr: float
    fpr: float
    n_memorized: int
    n_nonmemorized: int
    mean_memorized: float
    mean_nonmemorized: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"ROC AUC {self.auc:.4f}  TPR@{self.fpr:.0%}FPR {self.tpr_at_fpr:.4f}  "
            f"(memorized n={self.n_memorized}, mean {self.mean_memorized:.4g}; "
            f"non-memorized n={self.n_nonmemorized}, mean {self.mean_nonmemorized:.4g})"
        )


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float = 0.01) -> float:
    """Largest true-positive rate reachable with a false-positive rate of at most ``fpr``."""
    from sklearn.metrics import roc_curve

    fprs, tprs, _ = roc_curve(labels, scores)
    ok = fprs <= fpr + 1e-12
    return float(tprs[ok].max()) if ok.any() else 0.0


def detection_metrics(memorized: Sequence[float], nonmemorized: Sequence[float], *, fpr: float = 0.01) -> DetectionMetrics:
    """AUC and TPR@``fpr`` (scikit-learn), higher score = more likely memorized."""
    from sklearn.metrics import roc_auc_score

    pos = np.asarray(memorized, dtype=np.float64)
    neg = np.asarray(nonmemorized, dtype=np.float64)
    if pos.size == 0 or neg.size == 0:
        raise ValueError(f"need scores on both sides (memorized: {pos.size}, non-memorized: {neg.size})")
    if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
        raise ValueError("scores contain NaN or infinity")
    labels = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    scores = np.concatenate([pos, neg])
    return DetectionMetrics(
        auc=float(roc_auc_score(labels, scores)),
        tpr_at_fpr=tpr_at_fpr(labels, scores, fpr),
        fpr=fpr,
        n_memorized=int(pos.size),
        n_nonmemorized=int(neg.size),
        mean_memorized=float(pos.mean()),
        mean_nonmemorized=float(neg.mean()),
    )
