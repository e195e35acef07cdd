"""AMS / UMS against a hand-worked matrix."""

from __future__ import annotations

import numpy as np
import pytest

from membench_eval.metrics.memorization import MemorizationThresholds, ams, memorization_scores, ums

# 5 generated images x 3 references (r0, r1, r2)
SIM = np.array(
    [
        [0.80, 0.10, 0.20],  # nearest r0 at 0.80
        [0.75, 0.72, 0.00],  # nearest r0 at 0.75
        [0.10, 0.50, 0.45],  # nearest r1 at 0.50 (exactly mid: counts, ">= t")
        [0.30, 0.05, 0.31],  # nearest r2 at 0.31
        [0.00, 0.10, 0.20],  # nearest r2 at 0.20: below every level
    ]
)


def test_ams_ums_at_default_levels():
    s = memorization_scores(SIM, reference_ids=["r0", "r1", "r2"])
    assert s.thresholds == MemorizationThresholds(0.3, 0.5, 0.7)
    assert s.n_generated == 5
    assert s.ams == pytest.approx({"low": 4 / 5, "mid": 3 / 5, "high": 2 / 5})
    # distinct nearest references: low {r0, r1, r2}, mid {r0, r1}, high {r0}
    assert s.ums == pytest.approx({"low": 3 / 5, "mid": 2 / 5, "high": 1 / 5})
    assert s.matched == {"low": ("r0", "r1", "r2"), "mid": ("r0", "r1"), "high": ("r0",)}
    np.testing.assert_allclose(s.best, [0.80, 0.75, 0.50, 0.31, 0.20])
    np.testing.assert_array_equal(s.nearest, [0, 0, 1, 2, 2])
    assert s.as_dict()["ums_mid"] == pytest.approx(0.4)


def test_ums_never_exceeds_ams_and_thresholds_are_settings():
    rng = np.random.default_rng(3)
    sim = rng.uniform(-0.2, 1.0, size=(40, 7))
    s = memorization_scores(sim, MemorizationThresholds(low=0.1, mid=0.4, high=0.9))
    for level in ("low", "mid", "high"):
        assert s.ums[level] <= s.ams[level]
    assert s.ams["low"] == pytest.approx(float((sim.max(axis=1) >= 0.1).mean()))


def test_nearest_only_counts_each_image_once():
    # image 1 is above 0.7 against r0 AND r1, but only its nearest (r0) is matched
    assert ums(np.array([0.80, 0.75]), np.array([0, 0]), 0.7) == pytest.approx(1 / 2)
    assert ams(np.array([0.80, 0.75]), 0.7) == pytest.approx(1.0)


def test_rejects_empty_and_mismatched_input():
    with pytest.raises(ValueError):
        memorization_scores(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="reference ids"):
        memorization_scores(SIM, reference_ids=["r0"])
