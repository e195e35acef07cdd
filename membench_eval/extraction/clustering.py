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
    return _by_size(KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(x))


def cluster_near_copies(embeddings: np.ndarray, threshold: float) -> np.ndarray:
    """int64 labels, one cluster per group of near-copies: average-linkage agglomerative clustering
    on SSCD cosine distance, merged while the mean distance is below ``threshold`` (0.4 = SSCD 0.6,
    the high band's edge). Deterministic (no random init); renumbered by size like k-means'.

    Why besides k-means: a plain-sampling pool is dominated by the most duplicated images, so k-means
    spends most of its k on sub-clusters of those few; grouping by a copy threshold gives each
    reproduced image one pseudo-class, which is what a surrogate condition per training image needs."""
    from sklearn.cluster import AgglomerativeClustering

    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2 or not np.isfinite(x).all():
        raise ExtractionError(f"clustering needs a finite (n >= 2, d) embedding matrix, got shape {x.shape}")
    if not 0.0 < threshold < 2.0:
        raise ExtractionError(f"threshold={threshold}: a cosine distance in (0, 2)")
    raw = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                  distance_threshold=threshold).fit_predict(x)
    return _by_size(raw)


def _by_size(raw: np.ndarray) -> np.ndarray:
    ids = np.unique(raw)
    order = sorted(ids, key=lambda c: (-int((raw == c).sum()), int(np.flatnonzero(raw == c)[0])))
    remap = {int(c): i for i, c in enumerate(order)}
    return np.array([remap[int(c)] for c in raw], dtype=np.int64)
