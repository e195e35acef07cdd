"""Statistics for the leaderboard: cluster bootstrap over memorized images, paired deltas to base."""

from membench_eval.stats.bootstrap import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    ClusterBootstrap,
    Estimate,
)
from membench_eval.stats.clusters import CLUSTER_METHODS, cluster_labels

__all__ = [
    "CLUSTER_METHODS",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "ClusterBootstrap",
    "Estimate",
    "cluster_labels",
]
