"""SSIM and MS-SSIM between batches of maps, in torch (neither torchmetrics nor pytorch_msssim is a
dependency). Used by NeMo's memorization check (``mitigations/nemo.py``), which compares the
first-step noise differences of several seeds.

Written to match torchmetrics 1.3's ``multiscale_structural_similarity_index_measure`` with its
defaults: Gaussian window 11 / sigma 1.5, valid windows (no padding), data range 1 (inputs
min-max normalised by the caller), K1 0.01 / K2 0.03, 3 scales with betas 0.33 and relu on each
factor. Maps too small for 3 scales (< 44 px, e.g. 16x16 latents) get single-scale SSIM; maps
smaller than the window itself (8x8 latents of a 64 px SD image) get the largest odd window that
fits, same sigma, rather than no valid position at all (maps of 11 px and more are unaffected).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def ssim_and_contrast(a: "torch.Tensor", b: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
    """Per pair of rows of (N, C, H, W) maps: mean SSIM and mean contrast-structure term."""
    import torch
    import torch.nn.functional as F

    side = min(a.shape[-2:])
    size = min(11, side if side % 2 else side - 1)  # odd, at most the map's side
    x = torch.arange(size, dtype=torch.float32, device=a.device) - size // 2
    g = torch.exp(-x ** 2 / (2 * 1.5 ** 2))
    g = g / g.sum()
    w = (g[:, None] * g[None, :]).expand(a.shape[1], 1, size, size)
    mu_a, mu_b, aa, bb, ab = F.conv2d(torch.cat([a, b, a * a, b * b, a * b]), w, groups=a.shape[1]).split(len(a))
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    cs = (2 * (ab - mu_a * mu_b) + c2) / (aa - mu_a ** 2 + bb - mu_b ** 2 + c2)
    ssim = (2 * mu_a * mu_b + c1) / (mu_a ** 2 + mu_b ** 2 + c1) * cs
    return ssim.flatten(1).mean(1), cs.flatten(1).mean(1)


def similarity(a: "torch.Tensor", b: "torch.Tensor") -> "torch.Tensor":
    """Per pair of rows: MS-SSIM (3 scales, betas 0.33) if the maps are >= 44 px, else SSIM."""
    import torch
    import torch.nn.functional as F

    a, b = a.float(), b.float()
    if min(a.shape[-2:]) // 4 <= 10:  # torchmetrics' size check for 3 scales of an 11 px window
        return ssim_and_contrast(a, b)[0]
    factors = []
    for scale in range(3):
        ssim, cs = ssim_and_contrast(a, b)
        factors.append(torch.relu(ssim if scale == 2 else cs) ** 0.33)
        a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return torch.stack(factors).prod(0)
