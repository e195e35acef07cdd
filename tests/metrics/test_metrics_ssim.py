"""membench_eval.metrics.ssim against scikit-image's SSIM (Gaussian window 11 / 1.5, data range 1)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
metrics = pytest.importorskip("skimage.metrics")

from membench_eval.metrics.ssim import similarity, ssim_and_contrast  # noqa: E402


def _skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over channels of skimage's SSIM with the same window, on the valid region."""
    vals = []
    for c in range(a.shape[0]):
        _, full = metrics.structural_similarity(a[c], b[c], gaussian_weights=True, sigma=1.5, win_size=11,
                                                use_sample_covariance=False, data_range=1.0, full=True)
        vals.append(full[5:-5, 5:-5].mean())  # skimage's map covers every pixel; ours the valid windows
    return float(np.mean(vals))


def test_single_scale_matches_scikit_image_and_orders_similarity():
    rng = np.random.default_rng(0)
    a = rng.random((2, 4, 24, 24)).astype(np.float32)
    near = np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    far = rng.random(a.shape).astype(np.float32)
    ours_near = similarity(torch.from_numpy(a), torch.from_numpy(near))
    ours_far = similarity(torch.from_numpy(a), torch.from_numpy(far))
    for i in range(2):
        assert ours_near[i].item() == pytest.approx(_skimage_ssim(a[i], near[i]), abs=1e-4)
        assert ours_far[i].item() == pytest.approx(_skimage_ssim(a[i], far[i]), abs=1e-4)
    assert (ours_near > 0.8).all() and (ours_far.abs() < 0.1).all()
    same, cs = ssim_and_contrast(torch.from_numpy(a), torch.from_numpy(a))
    torch.testing.assert_close(same, torch.ones(2))
    torch.testing.assert_close(cs, torch.ones(2))


def test_maps_smaller_than_the_window_use_the_largest_odd_window_that_fits():
    """8x8 latents (a 64 px SD image): an 11 px window has no valid position; 7 px is used."""
    rng = np.random.default_rng(1)
    a = rng.random((2, 4, 8, 8)).astype(np.float32)
    near = np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    ours = similarity(torch.from_numpy(a), torch.from_numpy(near))
    from scipy.signal import convolve2d

    g = np.exp(-(np.arange(7) - 3.0) ** 2 / (2 * 1.5 ** 2))
    w = np.outer(g, g) / g.sum() ** 2  # skimage truncates its Gaussian at 11 taps whatever win_size says
    for i in range(2):
        per_channel = []
        for x, y in zip(a[i].astype(np.float64), near[i].astype(np.float64)):
            mx, my, xx, yy, xy = (convolve2d(v, w, mode="valid") for v in (x, y, x * x, y * y, x * y))
            vx, vy, cxy = xx - mx ** 2, yy - my ** 2, xy - mx * my
            c1, c2 = 0.01 ** 2, 0.03 ** 2
            per_channel.append(((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))).mean())
        assert ours[i].item() == pytest.approx(float(np.mean(per_channel)), abs=1e-5)
    assert (ours > 0.8).all()


def test_multi_scale_on_large_maps_is_one_for_identical_and_drops_with_noise():
    rng = np.random.default_rng(1)
    a = torch.from_numpy(rng.random((1, 2, 64, 64)).astype(np.float32))
    noisy = (a + 0.2 * torch.from_numpy(rng.standard_normal(a.shape).astype(np.float32))).clamp(0, 1)
    assert similarity(a, a).item() == pytest.approx(1.0, abs=1e-5)
    single = ssim_and_contrast(a, noisy)[0].item()
    multi = similarity(a, noisy).item()
    assert 0 < multi < 1 and multi != pytest.approx(single, abs=1e-3)  # the 3-scale path ran
