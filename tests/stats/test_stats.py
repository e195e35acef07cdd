"""Cluster bootstrap and paired deltas on hand-worked data."""

from __future__ import annotations

import numpy as np
import pytest

from membench_eval.stats import ClusterBootstrap, cluster_labels


def test_components_join_prompts_sharing_any_image() -> None:
    # p1-p2 share A; p2-p3 share B -> one component {p1,p2,p3}; p4 alone on C; p5 general prompt.
    labels = cluster_labels(["p1", "p2", "p3", "p4", "p5"], [["A"], ["A", "B"], ["B"], ["C"], []])
    assert labels[0] == labels[1] == labels[2]
    assert len({labels[0], labels[3], labels[4]}) == 3


def test_first_image_clusters_split_bridging_prompts() -> None:
    labels = cluster_labels(["p1", "p2", "p3"], [["A"], ["A", "B"], ["B"]], method="first")
    assert labels[0] == labels[1] != labels[2]


def test_labels_do_not_depend_on_input_order() -> None:
    ids = ["a", "b", "c", "d"]
    mems = [["X"], ["Y"], ["X"], ["Z"]]
    forward = dict(zip(ids, cluster_labels(ids, mems)))
    backward = dict(zip(ids[::-1], cluster_labels(ids[::-1], mems[::-1])))
    assert forward == backward


def test_unknown_cluster_method_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown cluster method"):
        cluster_labels(["a"], [["X"]], method="nope")  # type: ignore[arg-type]


def test_interval_contains_mean_and_shrinks_with_more_clusters() -> None:
    rng = np.random.default_rng(0)
    small = rng.normal(0.5, 0.1, size=20)
    large = rng.normal(0.5, 0.1, size=2000)
    e_small = ClusterBootstrap(np.arange(20), seed=1).estimate(small)
    e_large = ClusterBootstrap(np.arange(2000), seed=1).estimate(large)
    assert e_small.low < e_small.mean < e_small.high
    assert e_small.mean == pytest.approx(small.mean())
    assert (e_large.high - e_large.low) < 0.5 * (e_small.high - e_small.low)
    # Naive standard error of the mean for 2000 draws is 0.1/sqrt(2000) = 0.00224: 95% width ~ 0.0088.
    assert 0.0088 * 0.8 < e_large.high - e_large.low < 0.0088 * 1.2


def test_cluster_bootstrap_wider_than_naive_when_prompts_share_images() -> None:
    # 10 memorized images with 10 prompts each; prompts of one image score alike (strong dependence).
    rng = np.random.default_rng(3)
    image_effect = rng.normal(0.5, 0.2, size=10)
    values = np.repeat(image_effect, 10) + rng.normal(0, 0.01, size=100)
    clusters = np.repeat(np.arange(10), 10)
    clustered = ClusterBootstrap(clusters, seed=0).estimate(values)
    naive = ClusterBootstrap(np.arange(100), seed=0).estimate(values)
    assert clustered.mean == naive.mean
    assert clustered.n_clusters == 10 and naive.n_clusters == 100
    assert (clustered.high - clustered.low) > 2.5 * (naive.high - naive.low)


def test_paired_delta_of_identical_methods_is_exactly_zero() -> None:
    values = np.linspace(0.1, 0.9, 30)
    boot = ClusterBootstrap(np.arange(30) // 3, seed=5)
    d = boot.paired_delta(values, values.copy())
    assert (d.mean, d.low, d.high) == (0.0, 0.0, 0.0)


def test_paired_delta_of_constant_shift_is_the_shift() -> None:
    base = np.random.default_rng(2).uniform(0, 1, 40)
    d = ClusterBootstrap(np.arange(40) // 4, seed=5).paired_delta(base - 0.1, base)
    assert d.mean == pytest.approx(-0.1) and d.low == pytest.approx(-0.1) and d.high == pytest.approx(-0.1)


def test_paired_interval_narrower_than_difference_of_unpaired_intervals() -> None:
    rng = np.random.default_rng(4)
    base = rng.uniform(0.2, 0.9, 60)
    method = base - 0.05 + rng.normal(0, 0.01, 60)
    boot = ClusterBootstrap(np.arange(60) // 2, seed=0)
    d = boot.paired_delta(method, base)
    e = boot.estimate(base)
    assert d.high < 0  # a real, consistent improvement is resolved
    assert (d.high - d.low) < 0.2 * (e.high - e.low)


def test_fixed_seed_reproducible_and_seed_matters() -> None:
    values = np.random.default_rng(0).uniform(size=50)
    clusters = np.arange(50) // 5
    a = ClusterBootstrap(clusters, seed=7).estimate(values)
    b = ClusterBootstrap(clusters, seed=7).estimate(values)
    c = ClusterBootstrap(clusters, seed=8).estimate(values)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)


def test_replicate_mean_weights_prompts_not_clusters() -> None:
    # With one resample that picks every cluster once, the replicate equals the plain prompt mean.
    boot = ClusterBootstrap([0, 0, 0, 1], n_resamples=1, seed=0)
    boot._counts[:] = 1.0  # exercise the weighting formula directly
    boot._denominators = boot._counts @ np.array([3.0, 1.0])
    assert boot.replicates([1.0, 1.0, 1.0, 0.0])[0] == pytest.approx(0.75)


def test_nan_values_are_rejected() -> None:
    with pytest.raises(ValueError, match="NaN"):
        ClusterBootstrap([0, 1]).estimate([0.1, float("nan")])
    with pytest.raises(ValueError, match="expected 2"):
        ClusterBootstrap([0, 1]).estimate([0.1])
