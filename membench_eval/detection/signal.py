"""Wen et al.'s memorization signal: how far the text condition pushes the noise prediction.

A memorized prompt makes ``eps(x_t, prompt) - eps(x_t, "")`` unusually large: the model "knows"
the image and the text drags every sample toward it. Two readings of the same signal:

* ``single_step_scores``: one denoiser call at the last training timestep (999 for SD) on one shared,
  seeded latent, squared L2 norm of the difference. Cheap enough to score hundreds of candidate
  prompts per MCMC step (MemBench's search score, ``get_SD_score`` in the reference).
* ``trajectory_scores``: Wen's detection statistic, the per-step L2 norm of the difference averaged
  over the denoising steps of a full classifier-free-guided DDIM run and over several images.

Every prompt is scored against the same noise (seeded, not drawn from a global RNG), so a score does
not depend on which other prompts share its batch or on their order.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from membench_eval.models.family import family_for

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline


@dataclass(frozen=True)
class LatentGeometry:
    """Latent shape the scores are computed at (pixel size / VAE scale factor)."""

    channels: int
    height: int
    width: int


def latent_geometry(pipe: "StableDiffusionPipeline", height: int | None = None, width: int | None = None) -> LatentGeometry:
    """Latent size for ``height`` x ``width`` pixels; defaults to the model's native image size."""
    family = family_for(pipe)
    scale = family.vae_scale_factor
    native = family.native_size
    h, w = int(height or native), int(width or native)
    if h % scale or w % scale:
        raise ValueError(f"image size {h}x{w} is not a multiple of the VAE scale factor {scale}")
    return LatentGeometry(family.latent_channels, h // scale, w // scale)


def seeded_latents(pipe: "StableDiffusionPipeline", seeds: Sequence[int], geometry: LatentGeometry) -> "torch.Tensor":
    """Initial noise, one latent per seed, drawn on CPU so it is identical on every device."""
    import torch

    rows = [
        torch.randn((1, geometry.channels, geometry.height, geometry.width), generator=torch.Generator("cpu").manual_seed(int(s)))
        for s in seeds
    ]
    latents = torch.cat(rows) * float(getattr(pipe.scheduler, "init_noise_sigma", 1.0))
    family = family_for(pipe)
    return latents.to(device=family.device, dtype=family.dtype)


def encode_prompts(pipe: "StableDiffusionPipeline", prompts: Sequence[str]) -> "torch.Tensor":
    """Text-encoder hidden states for ``prompts`` (no CFG duplication), on the denoiser's device/dtype."""
    family = family_for(pipe)
    return family.encode(prompts, family.device).embeds.to(dtype=family.dtype)


def last_train_timestep(pipe: "StableDiffusionPipeline") -> int:
    """The training schedule's last (noisiest) step: 999 for SD's 1000-step schedule."""
    return int(pipe.scheduler.config.num_train_timesteps) - 1


def single_step_scores(
    pipe: "StableDiffusionPipeline",
    prompts: Sequence[str],
    *,
    seed: int = 0,
    batch_size: int = 50,
    height: int | None = None,
    width: int | None = None,
    timestep: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """MemBench's search score: ``||eps(x_T, p) - eps(x_T, "")||_2^2`` at ``t = T-1`` (999).

    One latent, drawn from ``seed``, is shared by all prompts (the reference shares one latent
    across the 200 candidates of a step). Returns float64 scores, one per prompt.
    """
    import torch
    from tqdm.auto import tqdm

    if not prompts:
        return np.zeros(0, dtype=np.float64)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    geometry = latent_geometry(pipe, height, width)
    t = last_train_timestep(pipe) if timestep is None else int(timestep)
    latent = seeded_latents(pipe, [seed], geometry)
    latent = pipe.scheduler.scale_model_input(latent, t) if hasattr(pipe.scheduler, "scale_model_input") else latent
    out = np.empty(len(prompts), dtype=np.float64)
    family = family_for(pipe)
    with torch.inference_mode():
        uncond = family.predict(latent, t, encode_prompts(pipe, [""])).sample.float()
        for start in tqdm(range(0, len(prompts), batch_size), desc="single-step score", unit="batch", disable=not progress):
            chunk = list(prompts[start : start + batch_size])
            cond_embeds = encode_prompts(pipe, chunk)
            cond = family.predict(latent.expand(len(chunk), -1, -1, -1), t, cond_embeds).sample.float()
            out[start : start + len(chunk)] = ((cond - uncond) ** 2).sum(dim=(1, 2, 3)).double().cpu().numpy()
    return out


def trajectory_scores(
    pipe: "StableDiffusionPipeline",
    prompts: Sequence[str],
    *,
    num_images: int = 4,
    num_inference_steps: int = 50,
    guidance_scale: float = 7.5,
    height: int | None = None,
    width: int | None = None,
    seed: int = 0,
    batch_size: int = 8,
    progress: bool = False,
) -> np.ndarray:
    """Wen et al.'s detection score: mean over steps and images of ``||eps_c - eps_u||_2``.

    Runs the pipeline's scheduler (DDIM for the benchmark models) with classifier-free guidance,
    exactly as generation does, and records the per-image L2 norm at every step. Image ``i`` of
    every prompt starts from the latent seeded ``seed + i``, so prompts are compared on the same
    noise and a score is independent of batching. ``batch_size`` counts prompts per UNet batch.
    """
    import torch
    from tqdm.auto import tqdm

    if not prompts:
        return np.zeros(0, dtype=np.float64)
    if num_images < 1 or num_inference_steps < 1 or batch_size < 1:
        raise ValueError("num_images, num_inference_steps and batch_size must all be >= 1")
    geometry = latent_geometry(pipe, height, width)
    base_latents = seeded_latents(pipe, [seed + i for i in range(num_images)], geometry)
    out = np.empty(len(prompts), dtype=np.float64)
    with torch.inference_mode():
        uncond_embed = encode_prompts(pipe, [""])
        bar = tqdm(total=len(prompts), desc="trajectory score", unit="prompt", disable=not progress)
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start : start + batch_size])
            cond = encode_prompts(pipe, chunk).repeat_interleave(num_images, dim=0)
            latents = base_latents.repeat(len(chunk), 1, 1, 1)
            _, per_image = guided_trajectory(pipe, cond, uncond_embed, latents, num_inference_steps, guidance_scale)
            out[start : start + len(chunk)] = per_image.view(len(chunk), num_images).mean(dim=1).cpu().numpy()
            bar.update(len(chunk))
        bar.close()
    return out


def guided_trajectory(
    pipe: "StableDiffusionPipeline",
    cond_embeds: "torch.Tensor",
    uncond_embed: "torch.Tensor",
    latents: "torch.Tensor",
    num_inference_steps: int,
    guidance_scale: float,
    *,
    per_step: bool = False,
) -> tuple["torch.Tensor", "torch.Tensor"]:
    """The pipeline's CFG denoising loop (same scheduler, same update), recording the signal.

    Returns the final latents (identical to the pipeline's for the same initial latents) and, per
    image, the mean over steps of ``||eps_c - eps_u||_2``; with ``per_step``, every step's norms
    instead, shape (steps, images): which steps separate two prompt sets.
    """
    import torch

    family = family_for(pipe)
    scheduler = copy.deepcopy(pipe.scheduler)  # set_timesteps mutates; leave the pipeline's alone
    scheduler.set_timesteps(num_inference_steps, device=latents.device)
    n = latents.shape[0]
    embeds = torch.cat([uncond_embed.expand(n, -1, -1), cond_embeds])
    norms = torch.zeros(n, dtype=torch.float64, device=latents.device)
    steps = []
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(torch.cat([latents, latents]), t)
        eps_u, eps_c = family.predict(model_in, t, embeds).pair()
        step_norms = (eps_c - eps_u).float().flatten(1).norm(dim=1).double()
        norms += step_norms
        if per_step:
            steps.append(step_norms)
        latents = scheduler.step(eps_u + guidance_scale * (eps_c - eps_u), t, latents).prev_sample
    return latents, torch.stack(steps) if per_step else norms / len(scheduler.timesteps)
