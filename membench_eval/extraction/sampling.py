"""Sampling an unconditional diffusers pipeline with DDIM, with a guidance hook.

The pipeline (``models.uncond.load_uncond_pipeline``: any ``DDPMPipeline`` / ``DDIMPipeline``
layout) gives its UNet's prediction and its scheduler config; sampling always
runs DDIM (eta 0) from the scheduler config, so every method samples the same way and one x_T gives
one image. Each image's x_T is drawn from its own generator, seeded from (run seed, image index):
an image does not depend on the batch size or on the other images of its batch.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from membench_eval.errors import ExtractionError
from membench_eval.extraction_method import Guide

if TYPE_CHECKING:
    import torch

    from membench_eval.models.uncond import UncondPipeline

NOISE_SEED_SCHEME = "sha256(seed:index)[:8]"


def initial_noise(shape: tuple[int, int, int], seed: int, start: int, count: int) -> "torch.Tensor":
    """x_T of images ``start .. start+count-1`` of run seed ``seed``, one generator per image."""
    import torch

    rows = []
    for i in range(start, start + count):
        s = int.from_bytes(hashlib.sha256(f"{seed}:{i}".encode()).digest()[:8], "big") & (2**63 - 1)
        rows.append(torch.randn(shape, generator=torch.Generator().manual_seed(s)))
    return torch.stack(rows)


def ddim_sample(pipe: UncondPipeline, n: int, *, seed: int, steps: int, guide: Guide | None = None,
                batch_size: int = 64, start: int = 0, progress: bool = False) -> "torch.Tensor":
    """``n`` images, float32 (n, C, H, W) in [-1, 1] on the CPU. ``guide(x_t, t, eps, rows) -> eps``
    (if given) replaces the noise prediction at every step (classifier guidance's hook; ``rows``
    are the batch's image indices 0..n-1, so a method can aim each image at its own target)."""
    import torch
    from diffusers import DDIMScheduler

    if n < 1 or steps < 1:
        raise ExtractionError(f"sampling needs n >= 1 and steps >= 1, got n={n}, steps={steps}")
    out = []
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="sampling", unit="batch")
    for b in starts:
        count = min(batch_size, n - b)
        scheduler = DDIMScheduler.from_config(pipe.scheduler_config)
        scheduler.set_timesteps(steps)
        x = initial_noise(pipe.sample_shape, seed, start + b, count).to(pipe.device)
        for t in scheduler.timesteps:
            tt = torch.full((count,), int(t), device=pipe.device, dtype=torch.long)
            with torch.no_grad():
                eps = pipe.predict(x, tt)
            if guide is not None:
                eps = guide(x, tt, eps, torch.arange(b, b + count)).detach()
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
        out.append(x.clamp(-1, 1).float().cpu())
    return torch.cat(out)


def to_uint8(images: "torch.Tensor") -> Any:
    """(n, 3, H, W) in [-1, 1] -> uint8 numpy (n, H, W, 3), rounded as a saved PNG would be."""
    import numpy as np
    import torch

    x = ((images.detach().cpu().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())
