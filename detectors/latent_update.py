"""Latent-update norm: how far each scheduler step moves the latent ("Broken Memories").

Chen, Li, Hong, Zhang, Yang, You, Huang. "Broken Memories: Detecting and Mitigating Memorization in
Diffusion Models with Degraded Generations". KDD 2026 (arXiv 2605.22050). No public code was found;
this file is built from the paper's abstract and summaries (the full text was not available here):
memorization shows as numerical instability, read from the norm of each latent update during
generation against an "empirical stability region"; reported AUC > 0.999 on SD 1.4 at about 0.01 s
of overhead per image (the update norm is free during generation).

What we decided (all ours, not the paper's): the run's own CFG DDIM sampling from the seeded
latent, and per step t the update norm per latent element::

    u_t    = || x_{t-1} - x_t ||_2 / sqrt(C x H x W)       (x_{t-1} = scheduler.step(eps_cfg, t, x_t))
    score  = max over the first ``steps`` sampling steps of u_t,  mean over ``images``

The paper's stability region is a per-step threshold calibrated on non-memorized generations; the
maximum over steps ranks prompts without that calibration (a prompt leaving a per-step region by
more at some step scores higher whenever the region's width is similar across steps). ``steps`` 1
(ours, set on the miniature model, 16 trigger vs 30 general prompts, shared latent seed 0): the
per-step AUC of u_t there is 0.97 at the first step and below 0.5 from the second on (a memorized
trajectory snaps to its image at once and then moves LESS than a general one), so the maximum over
10 steps reaches only 0.806; ``sweep`` {1, 5, 10, 0 = every step} shows this. ``images`` 1,
``seed`` 0 (one latent shared by every prompt; -1: each prompt's own seed).

Cost in UNet rows per prompt: 2 x steps x images (the generation's own CFG rows; no extra pass):
2 at the default.
Per-prompt independence: one latent per image row, norms per row.

Needs (capabilities): a scheduler step (any family); classifier-free guidance as the run uses it.

Records per prompt: ``update_norms`` (u_t for every step taken, mean over images) and
``peak_step`` (the index of the largest).

Families (``needs``: cfg): the norm of the first CFG sampling steps' latent updates: every family with real CFG.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

from membench_eval.detection.signal import encode_prompts, latent_geometry, seeded_latents
from membench_eval.detector import DetectionContext, Detector
from membench_eval.errors import DetectorError
from membench_eval.models import family_for

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline


class LatentUpdateNorm(Detector):
    """max_t ||x_{t-1} - x_t|| / sqrt(d) over the first steps of the run's CFG sampling."""

    name = "latent_update"
    needs = frozenset({"cfg"})
    paper = ("Chen et al. 2026, Broken Memories: Detecting and Mitigating Memorization in Diffusion Models "
             "with Degraded Generations")
    sweep = {"steps": [1, 5, 10, 0]}

    steps: int = 1
    images: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.images < 1:
            raise DetectorError(f"latent_update: steps must be >= 0 and images >= 1, got {self.steps}, {self.images}")
        if self.seed < -1:
            raise DetectorError(f"latent_update: seed must be >= 0, or -1 for each prompt's own seed, got {self.seed}")

    def score(self, pipe: "StableDiffusionPipeline", ctx: DetectionContext) -> list[float]:
        import torch

        n, k = len(ctx.prompts), self.images
        family = family_for(pipe)
        base = [self.seed if self.seed >= 0 else r.seed for r in ctx.requests]
        x = seeded_latents(pipe, [s + j for s in base for j in range(k)], latent_geometry(pipe, ctx.height, ctx.width))
        scheduler = copy.deepcopy(pipe.scheduler)
        scheduler.set_timesteps(ctx.num_inference_steps, device=x.device)
        timesteps = scheduler.timesteps if self.steps == 0 else scheduler.timesteps[: self.steps]
        scale = math.sqrt(x[0].numel())
        norms = []
        with torch.no_grad():
            cond = encode_prompts(pipe, ctx.prompts).repeat_interleave(k, dim=0)
            embeds = torch.cat([encode_prompts(pipe, [""]).expand(n * k, -1, -1), cond])
            for t in timesteps:
                eps_u, eps_c = family.predict(scheduler.scale_model_input(torch.cat([x, x]), t), t, embeds).pair()
                x_next = scheduler.step(eps_u + ctx.guidance_scale * (eps_c - eps_u), t, x).prev_sample
                norms.append(((x_next - x).float().flatten(1).norm(dim=1) / scale).double().cpu())
                x = x_next
        per_step = torch.stack(norms, dim=1).view(n, k, -1).mean(1)  # (prompts, steps)
        for i in range(n):
            ctx.records[i].update(update_norms=[round(float(v), 6) for v in per_step[i]],
                                  peak_step=int(per_step[i].argmax()))
        return per_step.max(dim=1).values.tolist()
