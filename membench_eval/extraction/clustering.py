"""Pseudo-classes for SIDE: k-means on SSCD embeddings of the model's own generations.

Why SSCD: it is the similarity the attack is scored with, so two generations in one cluster are
two near-copies of one image; k-means (scikit-learn, k-means++ init, fixed ``random_state``) on the
L2-normalised rows is spherical k-means up to the centroid norm. Labels are renumbered by cluster
size (largest first, ties by the smallest member index), so equal inputs give equal labels whatever
k-means' internal numbering.
"""

from __future__ import annotations

import numpy as np

from membench_eval.errors import ExtractionError


def cluster_embeddings(embeddings: np.ndarray, k: int, *, seed: int, n_init: int = 4) -> np.ndarray:
    """int64 labels 0..k-1 of the rows of ``embeddings`` (n, d), renumbered by size."""
    from sklearn.cluster import KMeans

    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise ExtractionError(f"clustering needs a finite (n, d) embedding matrix, got shape {x.shape}")
    if not 1 <= k <= len(x):
        raise ExtractionError(f"clusters={k}: needs 1 <= clusters <= pool size ({len(x)})")
    raw = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(x)
    order = sorted(range(k), key=lambda c: (-int((raw == c).sum()), int(np.flatnonzero(raw == c)[0])
                                            if (raw == c).any() else len(x)))
    remap = np.empty(k, dtype=np.int64)
    remap[order] = np.arange(k)
    return remap[raw]
