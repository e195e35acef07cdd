"""SIDE's AMS / UMS as bands (Chen et al. 2024), against a hand-computed example."""

from __future__ import annotations

import math

import numpy as np
import pytest

from membench_eval.metrics.memorization import (
    Band,
    MemorizationBands,
    ams,
    matched_references,
    memorization_scores,
    scores_from_nearest,
    ums,
)

REFS = ["r0", "r1", "r2", "r3"]
# 8 generated images x 4 references. Best match (nearest reference) of each image, by hand:
SIM = np.array([
    [0.91, 0.20, 0.10, 0.00],  # 0: r0 0.91 -> high
    [0.65, 0.62, 0.10, 0.00],  # 1: r0 0.65 -> high (r1 is also > 0.6 but not its nearest)
    [0.10, 0.60, 0.59, 0.00],  # 2: r1 0.60 -> mid (0.6 is the mid band's upper edge: mid)
    [0.10, 0.20, 0.50, 0.00],  # 3: r2 0.50 -> mid (0.5, the lower edge: mid)
    [0.10, 0.20, 0.55, 0.30],  # 4: r2 0.55 -> mid
    [0.45, 0.10, 0.20, 0.49],  # 5: r3 0.49 -> low
    [0.30, 0.30, 0.10, 0.00],  # 6: tie r0 / r1 at 0.30 -> the first, r0 -> low
    [0.10, 0.20, 0.30, 0.6000001],  # 7: r3 just above 0.6 -> high
])


def test_hand_computed_bands() -> None:
    s = memorization_scores(SIM, reference_ids=REFS)
    assert s.nearest == ("r0", "r0", "r1", "r2", "r2", "r3", "r0", "r3")
    # images per band: high {0, 1, 7}, mid {2, 3, 4}, low {5, 6}; N_G = 8
    assert s.counts == {"low": 2, "mid": 3, "high": 3}
    assert s.ams == pytest.approx({"low": 2 / 8, "mid": 3 / 8, "high": 3 / 8})
    # distinct nearest references per band: high {r0, r3}, mid {r1, r2}, low {r3, r0}
    assert s.matched == {"low": ("r0", "r3"), "mid": ("r1", "r2"), "high": ("r0", "r3")}
    assert s.ums == pytest.approx({"low": 2 / 8, "mid": 2 / 8, "high": 2 / 8})
    assert s.n_generated == 8
    assert sum(s.ams.values()) == pytest.approx(1.0)  # bands partition the images


def test_bands_are_not_thresholds() -> None:
    """A ">= 0.5" threshold would count the high images in mid as well; a band does not."""
    best = SIM.max(axis=1)
    mid = MemorizationBands().bands()[1]
    assert ams(best, mid) == pytest.approx(3 / 8)
    assert float((best >= 0.5).mean()) == pytest.approx(6 / 8)


def test_band_edges_and_description() -> None:
    low, mid, high = MemorizationBands().bands()
    assert low.contains([0.4999, 0.5]).tolist() == [True, False]
    assert mid.contains([0.5, 0.6, 0.6001, 0.4999]).tolist() == [True, True, False, False]
    assert high.contains([0.6, 0.6001]).tolist() == [False, True]
    assert (low.describe(), mid.describe(), high.describe()) == ("γ < 0.5", "0.5 ≤ γ ≤ 0.6", "γ > 0.6")
    assert MemorizationBands().describe() == "low < 0.5, mid 0.5-0.6, high > 0.6"
    assert math.isinf(low.low) and math.isinf(high.high)


def test_bands_are_settings() -> None:
    b = MemorizationBands.parse("0.3, 0.7")
    assert b == MemorizationBands(0.3, 0.7) and MemorizationBands.from_dict(b.to_dict()) == b
    assert MemorizationBands.from_dict(None) == MemorizationBands()
    s = memorization_scores(SIM, b, REFS)
    assert s.counts == {"low": 0, "mid": 7, "high": 1}  # only 0.91 is above 0.7; the 0.30 tie is mid (>= 0.3)
    with pytest.raises(ValueError, match="ordered"):
        MemorizationBands(0.7, 0.3)
    with pytest.raises(ValueError, match="two edges"):
        MemorizationBands.parse("0.5")


def test_ums_counts_nearest_references_and_depends_on_n_g() -> None:
    high = Band("high", 0.6, math.inf, include_low=False)
    # image 1 of SIM is above 0.6 against r0 AND r1; only its nearest, r0, is matched
    assert matched_references([0.91, 0.65], ["r0", "r0"], high) == ("r0",)
    assert ums([0.91, 0.65], ["r0", "r0"], high) == pytest.approx(1 / 2)
    # the same copies among twice as many images: AMS halves, and so does UMS (compare at equal N_G only)
    more = scores_from_nearest([0.91, 0.65, 0.1, 0.1], ["r0", "r0", "r1", "r1"])
    assert more.ams["high"] == pytest.approx(2 / 4) and more.ums["high"] == pytest.approx(1 / 4)
    for band in ("low", "mid", "high"):
        assert more.ums[band] <= more.ams[band]


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="zero generated images"):
        scores_from_nearest([], [])
    with pytest.raises(ValueError, match="nearest references"):
        scores_from_nearest([0.5, 0.6], ["r0"])
    with pytest.raises(ValueError, match="NaN"):
        scores_from_nearest([0.5, float("nan")], ["r0", "r1"])
