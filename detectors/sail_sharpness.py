"""SAIL's sharpness detector: how fast the text-conditional score difference changes along itself.

Jeon, Kim, No. "Understanding and Mitigating Memorization in Generative Models via Sharpness of
Probability Landscapes". ICML 2025 (arXiv 2412.04140). Checked against the public code,
Dongjae0324/sharpness_memorization_diffusion @ f4ee4b8: ``local_model/pipe.py`` l.597-655 (the
``exp_type == 'det'`` branch of ``__call__``), ``detect_mem.py`` (defaults), ``run_detection.sh``,
``detect_eval.py`` and the README ("gen_num refers to n, and hvp_sampling_num to steps in Table 1").

At sampling step t (first step: t = the schedule's first timestep, 981 for SD's 50 DDIM steps,
951 for the miniature model's 20), per image, with sigma_t = sqrt(1 - alphabar_t) and the model's
score s(x, c) = -eps(x, t, c) / sigma_t (uncond c = the empty prompt)::

    v        = s(x, p) - s(x, "") = -(eps_c - eps_u) / sigma_t     (the score difference)
    H_c v    = d/de s(x + e v, p) |_{e=0},  H_u v likewise           (Jacobian-vector products)
    m_t      = || H_c v - H_u v ||_2
    score(p) = mean over images of mean_{first ``steps`` steps} m_t

(the Jacobian of the score is the Hessian of the log density, hence "sharpness"). Higher = more
memorized: a memorized prompt sits in a sharp peak of the conditional density. (``detect_eval.py``
flips the labels when its AUC is below 0.5, so the code itself does not fix the sign; the paper's
reading, sharper = memorized, is used here.)

The JVP is forward-mode (``torch.func.jvp``), as the reference, with PyTorch's math attention
kernel (the fused kernels have no forward-mode derivative; the reference disables flash and
memory-efficient attention on CUDA for the same reason). x is the UNet input at step t
(``scale_model_input`` of the latent, identity for DDIM), as in the reference.

Defaults: ``images`` 4 (the README's ``--gen_num 4``, the files ``detect_eval.py`` reads;
``detect_mem.py``'s argparse default is 1; ``sweep`` is ``run_detection.sh``'s 1 and 4), ``steps``
1 (``--hvp_sampling_num``); ``seed`` 0: image k of every prompt starts from the latent seeded
``k`` (the reference re-seeds with one ``gen_seed`` before every prompt, "invariant to prompt
ordering", so every prompt sees the same noise); ``seed = -1`` uses ``ctx.requests[i].seed + k``.
Later steps (``steps > 1``) follow plain CFG DDIM sampling with ``ctx.guidance_scale``.

Cost in UNet rows per prompt: 4 x images x steps: each step one CFG forward on [uncond, cond]
(2 rows) and one JVP through both (2 rows, a forward pass with tangents: ~2-3x a forward on GPU,
measured ~7x on CPU). Default: 16 rows. Per-prompt independence: one latent per image row, and
every norm is per row (the reference's norm is per image too, then averaged over its ``gen_num``).

Measured on the miniature model (16 trigger vs 30 general prompts, per-prompt seeds from run seed
0, 20 DDIM steps, g 7.5, 64x64; ``tests/detection/test_detectors.py``): ROC AUC 0.883 (images 4), 0.940
(images 1); 11 s for the 46 prompts on one CPU core with 4 images.

Differences from the reference: (1) epsilon-prediction models only (SD1.x, the miniature model);
the reference's SD2 (v-prediction) branch is not ported and such a model raises an error; (2)
float32 (the reference: bf16 weights, JVP under float32 autocast); (3) latents from CPU generators.
Records per prompt: ``sail_first_step`` (m at the first step, mean over images).

Families (``needs``: cfg, epsilon): JVPs of the score, read from an epsilon prediction: SD 1.x, SD
2 base (512), Realistic Vision, SDXL; SD 2 768-v (v), SD3 / FLUX (flow) read n/a.
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


class SAILSharpness(Detector):
    """||H_c v - H_u v||_2 with v the score difference, by a JVP at the first step (Jeon et al.)."""

    name = "sail_sharpness"
    needs = frozenset({"cfg", "epsilon"})
    paper = ("Jeon et al. 2025, Understanding and Mitigating Memorization in Generative Models via Sharpness "
             "of Probability Landscapes")
    sweep = {"images": [1, 4]}  # run_detection.sh's gen_numbers

    images: int = 4
    steps: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.images < 1 or self.steps < 1:
            raise DetectorError(f"sail_sharpness: images and steps must be >= 1, got {self.images}, {self.steps}")
        if self.seed < -1:
            raise DetectorError(f"sail_sharpness: seed must be >= 0, or -1 for each prompt's own seed, got {self.seed}")

    def score(self, pipe: "StableDiffusionPipeline", ctx: DetectionContext) -> list[float]:
        import torch
        from torch.func import jvp
        from torch.nn.attention import SDPBackend, sdpa_kernel

        kind = pipe.scheduler.config.get("prediction_type", "epsilon")
        if kind != "epsilon":
            raise DetectorError(f"sail_sharpness: prediction_type {kind!r} is not supported (epsilon only)")
        n, k = len(ctx.prompts), self.images
        family = family_for(pipe)
        base = [self.seed if self.seed >= 0 else r.seed for r in ctx.requests]
        x = seeded_latents(pipe, [s + j for s in base for j in range(k)], latent_geometry(pipe, ctx.height, ctx.width))
        scheduler = copy.deepcopy(pipe.scheduler)
        scheduler.set_timesteps(ctx.num_inference_steps, device=x.device)
        timesteps = scheduler.timesteps
        if self.steps > len(timesteps):
            raise DetectorError(f"sail_sharpness: steps ({self.steps}) exceeds the run's {len(timesteps)} sampling steps")
        total = torch.zeros(n * k, dtype=torch.float64)
        first = None
        with torch.inference_mode(False), torch.no_grad():
            cond = encode_prompts(pipe, ctx.prompts).repeat_interleave(k, dim=0).clone()
            embeds = torch.cat([encode_prompts(pipe, [""]).expand(n * k, -1, -1).clone(), cond])
            for s in range(self.steps):
                t = timesteps[s]
                sigma = math.sqrt(1.0 - float(scheduler.alphas_cumprod[int(t)]))
                x_in = scheduler.scale_model_input(x, t).clone()
                eps_u, eps_c = family.predict(torch.cat([x_in, x_in]), t, embeds).pair()
                v = -(eps_c - eps_u) / sigma

                def score_fn(z: "torch.Tensor", t=t, sigma=sigma) -> "torch.Tensor":
                    return -family.predict(torch.cat([z, z]), t, embeds).sample / sigma

                with sdpa_kernel([SDPBackend.MATH]):
                    _, tangent = jvp(score_fn, (x_in,), (v,))
                h_u, h_c = tangent.float().chunk(2)
                m = (h_c - h_u).flatten(1).norm(dim=1).double().cpu()
                total += m
                if first is None:
                    first = m
                if s + 1 < self.steps:
                    x = scheduler.step(eps_u + ctx.guidance_scale * (eps_c - eps_u), t, x).prev_sample
        scores = (total / self.steps).view(n, k).mean(1)
        first = first.view(n, k).mean(1)
        for i in range(n):
            ctx.records[i]["sail_first_step"] = float(first[i])
        return scores.tolist()
