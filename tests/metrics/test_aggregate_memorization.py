"""AMS / UMS (SIDE bands) against a hand-worked matrix."""

from __future__ import annotations

import numpy as np
import pytest

from membench_eval.metrics.memorization import Band, MemorizationBands, ams, memorization_scores, ums

# 5 generated images x 3 references (r0, r1, r2)
SIM = np.array(
    [
        [0.80, 0.10, 0.20],  # nearest r0 at 0.80
        [0.75, 0.72, 0.00],  # nearest r0 at 0.75
        [0.10, 0.50, 0.45],  # nearest r1 at 0.50 (the mid band's lower edge: mid)
        [0.30, 0.05, 0.31],  # nearest r2 at 0.31: low
        [0.00, 0.10, 0.20],  # nearest r2 at 0.20: low
    ]
)


def test_ams_ums_at_default_bands():
    # Bands, not thresholds (behaviour changed from ">= t" levels 0.3/0.5/0.7 to SIDE's bands).
    s = memorization_scores(SIM, reference_ids=["r0", "r1", "r2"])
    assert s.bands == MemorizationBands(0.5, 0.6)
    assert s.n_generated == 5
    # high (> 0.6): images 0, 1; mid [0.5, 0.6]: image 2; low (< 0.5): images 3, 4
    assert s.ams == pytest.approx({"low": 2 / 5, "mid": 1 / 5, "high": 2 / 5})
    assert sum(s.ams.values()) == pytest.approx(1.0)
    # distinct nearest references: low {r2}, mid {r1}, high {r0}
    assert s.ums == pytest.approx({"low": 1 / 5, "mid": 1 / 5, "high": 1 / 5})
    assert s.matched == {"low": ("r2",), "mid": ("r1",), "high": ("r0",)}
    assert s.counts == {"low": 2, "mid": 1, "high": 2}
    np.testing.assert_allclose(s.best, [0.80, 0.75, 0.50, 0.31, 0.20])
    assert s.nearest == ("r0", "r0", "r1", "r2", "r2")
    assert s.as_dict()["ums_mid"] == pytest.approx(0.2)


def test_ums_never_exceeds_ams_and_bands_are_settings():
    rng = np.random.default_rng(3)
    sim = rng.uniform(-0.2, 1.0, size=(40, 7))
    s = memorization_scores(sim, MemorizationBands(mid_low=0.4, mid_high=0.9))
    for level in ("low", "mid", "high"):
        assert s.ums[level] <= s.ams[level]
    best = sim.max(axis=1)
    assert s.ams["low"] == pytest.approx(float((best < 0.4).mean()))
    assert s.ams["mid"] == pytest.approx(float(((best >= 0.4) & (best <= 0.9)).mean()))
    assert s.ams["high"] == pytest.approx(float((best > 0.9).mean()))


def test_nearest_only_counts_each_image_once():
    # image 1 is in the high band against r0 AND r1, but only its nearest (r0) is matched
    high = MemorizationBands().bands()[2]
    assert ums(np.array([0.80, 0.75]), np.array([0, 0]), high) == pytest.approx(1 / 2)
    assert ams(np.array([0.80, 0.75]), high) == pytest.approx(1.0)
    assert ams(np.array([0.80, 0.75]), Band("x", 0.76, 0.9)) == pytest.approx(0.5)


def test_rejects_empty_and_mismatched_input():
    with pytest.raises(ValueError):
        memorization_scores(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="reference ids"):
        memorization_scores(SIM, reference_ids=["r0"])
