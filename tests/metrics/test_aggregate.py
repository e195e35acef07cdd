"""MemBench's SSCD aggregation against hand-worked matrices."""

from __future__ import annotations

import numpy as np
import pytest

from membench_eval.metrics.aggregate import (
    aggregate_sscd,
    frac_above,
    mean_over_prompts,
    per_image_max,
    score_prompt,
    top1,
    top_k_mean,
)


def test_single_reference_column():
    sim = np.array([[0.2], [0.7], [0.5], [0.9]])
    assert top1(sim) == pytest.approx(0.9)
    assert top_k_mean(sim) == pytest.approx((0.9 + 0.7 + 0.5) / 3)
    # strict "> 0.5": the image at exactly 0.5 does not count
    assert frac_above(sim) == pytest.approx(2 / 4)


def test_ties_count_once_per_image():
    sim = np.array([[0.6, 0.6], [0.6, 0.1], [0.3, 0.3]])
    np.testing.assert_allclose(per_image_max(sim), [0.6, 0.6, 0.3])
    assert top1(sim) == pytest.approx(0.6)
    assert top_k_mean(sim) == pytest.approx(0.5)  # (0.6 + 0.6 + 0.3) / 3, not 0.6 from three 0.6 cells
    assert frac_above(sim) == pytest.approx(2 / 3)


def test_top3_is_over_per_image_maxima_not_cells():
    # the 3 largest cells (0.9, 0.8, 0.7) all sit in image 0; Top-3 uses each image's best once
    sim = np.array([[0.9, 0.8, 0.7], [0.1, 0.2, 0.0], [0.4, 0.1, 0.1], [0.0, 0.3, 0.2]])
    assert top_k_mean(sim) == pytest.approx((0.9 + 0.4 + 0.3) / 3)


def test_fewer_than_three_images_mean_what_exists():
    two = np.array([[0.4, 0.8], [0.9, 0.1]])
    assert top_k_mean(two) == pytest.approx(0.85)
    one = np.array([[0.3, 0.55]])
    assert top_k_mean(one) == pytest.approx(0.55)
    assert frac_above(one) == pytest.approx(1.0)


def test_all_below_threshold():
    sim = np.array([[0.1, 0.45], [0.49, 0.2], [0.0, -0.1]])
    assert frac_above(sim) == 0.0
    assert top1(sim) == pytest.approx(0.49)


def test_top1_any_sees_a_swapped_memorized_image():
    own = np.array([[0.3], [0.2]])
    every = np.array([[0.3, 0.95, 0.1], [0.2, 0.4, 0.1]])  # column 0 = own reference
    p = score_prompt("p", own, every)
    assert p.top1 == pytest.approx(0.3)
    assert p.top1_any == pytest.approx(0.95)
    np.testing.assert_allclose(p.per_image_max_any, [0.95, 0.4])


def test_aggregate_keeps_per_prompt_values_and_excludes_prompts_without_references():
    matrices = {
        "a": (np.array([[0.9], [0.2], [0.6]]), np.array([[0.9, 0.1], [0.2, 0.7], [0.6, 0.0]])),
        "b": np.array([[0.1, 0.3], [0.4, 0.2]]),
        "dead": np.zeros((3, 0)),
    }
    s = aggregate_sscd(matrices)
    assert s.prompt_ids == ("a", "b")
    assert s.excluded == ("dead",)
    np.testing.assert_allclose(s.top1, [0.9, 0.4])
    np.testing.assert_allclose(s.top3, [(0.9 + 0.6 + 0.2) / 3, (0.4 + 0.3) / 2])
    np.testing.assert_allclose(s.frac_above, [2 / 3, 0.0])
    assert s.top1_any[0] == pytest.approx(0.9) and np.isnan(s.top1_any[1])
    means = s.means()
    assert means["top1_sscd"] == pytest.approx(0.65)
    assert means["top3_sscd"] == pytest.approx(((1.7 / 3) + 0.35) / 2)
    assert means["sscd_above_0.5"] == pytest.approx(1 / 3)
    assert means["top1_sscd_any"] == pytest.approx(0.9)  # mean over prompts that have it


def test_bad_matrices_are_rejected_with_the_prompt_named():
    with pytest.raises(ValueError, match="'p1'"):
        score_prompt("p1", np.array([[np.nan, 0.2]]))
    with pytest.raises(ValueError, match="2-D"):
        top1(np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="'p2'.*2 generated.*3"):
        score_prompt("p2", np.ones((2, 1)), np.ones((3, 4)))


def test_mean_over_prompts_weighs_each_prompt_equally():
    m = mean_over_prompts({"a": [1.0, 2.0, 3.0], "b": [10.0]})
    assert m.prompt_ids == ("a", "b")
    np.testing.assert_allclose(m.per_prompt, [2.0, 10.0])
    assert m.mean == pytest.approx(6.0)  # not the pooled 16 / 4
    with pytest.raises(ValueError, match="'c'"):
        mean_over_prompts({"c": []})
