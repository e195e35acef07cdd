"""Anisotropy score: the guidance norm at high noise plus its alignment with the unconditional score at low noise.

Asthana, Belagiannis. "Detecting and Mitigating Memorization in Diffusion Models through Anisotropy
of the Log-Probability". ICLR 2026 (arXiv 2601.20642). Checked against the public code (MIT),
rohanasthana/memorization-anisotropy @ 97e991b: ``local_model/pipe.py`` l.590-745 (the
``exp_type == 'det'`` branch, SD 1 / epsilon path), ``run_detection.sh`` (``gen_numbers=(1)``,
``mode=("x,c|x")``, ``normalization=("None")``, ``seeds=(51)``) and ``detect_eval.py`` (gamma_1,
gamma_2 per model).

Why: norm-based scores (Wen) assume an isotropic log-density, which holds at high noise; at low
noise the density is anisotropic and a memorized prompt's guidance vector lines up with the
unconditional score. Both readings are taken on the SAME pure-noise latent x_T (no denoising)::

    t_hi   = the run's first sampling timestep       (981 for SD's 50 DDIM steps)
    t_lo   = its third-to-last sampling timestep      (``timesteps[-3]``, 41 for 50 steps)
    norm   = || eps(x_T, t_hi, p) - eps(x_T, t_hi, "") ||_2                 (L2 over C x H x W)
    cos    = mean over pixels of cos_C( eps_u, eps_c - eps_u ) at (x_T, t_lo)   (cosine over the
             channel axis per latent pixel: ``F.cosine_similarity(..., dim=1)``, then the mean)
    score  = gamma_1 * norm + gamma_2 * cos

Higher = more memorized. Defaults (values from the code): ``gamma_1`` 1.0, ``gamma_2`` 2.0
(``detect_eval.py``'s SD 1 pair; its SD 2 pair is 1.0 / 0.1), one image per prompt. Ours:
``seed`` 0 (one latent shared by every prompt, as ``wen_single``; the reference seeds
``gen_seed`` 51 once per run); ``seed = -1`` uses each prompt's own seed. When a run has fewer
than 3 sampling steps, t_lo is the last timestep (ours; the reference asserts >= 3).

Cost in UNet rows per prompt: 4 x images (one [uncond, cond] pass at t_hi and one at t_lo), no
backward pass: the "two forward passes" of the paper. Per-prompt independence: one latent per
image row and every reduction is per row.

Needs (capabilities): classifier-free guidance (an unconditional prediction), epsilon prediction.

Differences from the reference: (1) epsilon-prediction models only; the reference's v-prediction
branch (SD 2, score = (sqrt(a) v - x) / (1 - a)) is not ported, such a model raises; (2) float32,
latents from CPU generators; (3) the reference also runs the full sampling loop after scoring
(it returns at step ``hvp_sampling_num``), which costs nothing extra here. Records per prompt:
``anisotropy_norm`` and ``anisotropy_cos`` (the two terms, mean over images).

Families (``needs``: cfg, epsilon): two passes on pure noise, conditional and unconditional: epsilon
models with real CFG (SD 1.x, SD 2 base, Realistic Vision, SDXL); n/a on v- and flow models.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from membench_eval.detection.signal import encode_prompts, latent_geometry, seeded_latents
from membench_eval.detector import DetectionContext, Detector
from membench_eval.errors import DetectorError
from membench_eval.models import family_for

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline


class AnisotropyScore(Detector):
    """gamma_1 ||eps_c - eps_u|| at t_hi + gamma_2 cos(eps_u, eps_c - eps_u) at t_lo, both on x_T."""

    name = "anisotropy"
    needs = frozenset({"cfg", "epsilon"})  # the code converts eps to the score: epsilon models only
    paper = ("Asthana & Belagiannis 2026, Detecting and Mitigating Memorization in Diffusion Models through "
             "Anisotropy of the Log-Probability")
    sweep = {"gamma_2": [0.0, 0.1, 2.0]}  # 0: the norm alone (the paper's ablation); 0.1: SD 2's; 2: SD 1's

    gamma_1: float = 1.0
    gamma_2: float = 2.0
    images: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.images < 1:
            raise DetectorError(f"anisotropy: images must be >= 1, got {self.images}")
        if self.seed < -1:
            raise DetectorError(f"anisotropy: seed must be >= 0, or -1 for each prompt's own seed, got {self.seed}")

    def score(self, pipe: "StableDiffusionPipeline", ctx: DetectionContext) -> list[float]:
        import torch

        kind = pipe.scheduler.config.get("prediction_type", "epsilon")
        if kind != "epsilon":
            raise DetectorError(f"anisotropy: prediction_type {kind!r} is not supported (epsilon only)")
        n, k = len(ctx.prompts), self.images
        family = family_for(pipe)
        base = [self.seed if self.seed >= 0 else r.seed for r in ctx.requests]
        x = seeded_latents(pipe, [s + j for s in base for j in range(k)], latent_geometry(pipe, ctx.height, ctx.width))
        scheduler = copy.deepcopy(pipe.scheduler)
        scheduler.set_timesteps(ctx.num_inference_steps, device=x.device)
        timesteps = scheduler.timesteps
        t_hi, t_lo = timesteps[0], timesteps[max(0, len(timesteps) - 3)]
        with torch.no_grad():
            cond = encode_prompts(pipe, ctx.prompts).repeat_interleave(k, dim=0)
            embeds = torch.cat([encode_prompts(pipe, [""]).expand(n * k, -1, -1), cond])
            eps_u, eps_c = family.predict(torch.cat([scheduler.scale_model_input(x, t_hi)] * 2), t_hi, embeds).pair()
            norm = (eps_c - eps_u).float().flatten(1).norm(dim=1)
            eps_u, eps_c = family.predict(torch.cat([scheduler.scale_model_input(x, t_lo)] * 2), t_lo, embeds).pair()
            cos = torch.nn.functional.cosine_similarity(eps_u.float(), (eps_c - eps_u).float(), dim=1).flatten(1).mean(1)
        norm, cos = norm.double().cpu().view(n, k).mean(1), cos.double().cpu().view(n, k).mean(1)
        for i in range(n):
            ctx.records[i].update(anisotropy_norm=float(norm[i]), anisotropy_cos=float(cos[i]))
        return (self.gamma_1 * norm + self.gamma_2 * cos).tolist()
