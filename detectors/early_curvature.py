"""Early detection: the curvature (Hessian-difference) score at the first step, and the step dynamics.

"Early Detection of Memorization in Diffusion Models", ICML 2026 (anonymous code). Checked against
randomnameforicml/icml-2026 @ fe315bb: ``src/detect_all_metrics.py`` (every formula below) and
``results/full_500/summary.txt`` (SD 1.5, 500 + 500 prompts: Metric 2 AUC 0.9759, TPR@1%FPR 82.8%;
DSM 1->2 0.9745 / 85.8%; Wen step 1 0.9621 / 79.0%).

Why: a memorized prompt sits in a sharp, narrow basin; the curvature of ``1/2 ||eps||^2`` at pure
noise already differs between the conditional and unconditional models, before any denoising. At
the first sampling timestep t0 on the seeded latent x_T (no ``scale_model_input``: DDIM's is the
identity)::

    g_c    = grad_x 1/2 ||eps(x, t0, p)||^2   (= J_c^T eps_c, "H_c s_c" in the code's comment)
    g_u    = grad_x 1/2 ||eps(x, t0, "")||^2
    score  = || g_c - g_u ||_2^2                                        ("Metric 2", the default)

and the step dynamics (DSM), following two CFG DDIM steps x_T -> x_1 -> x_2 with the run's guidance::

    dsm_01 = || eps(x_1, t1, p) - eps(x_T, t0, p) ||^2,   dsm_12 = || eps(x_2, t2, p) - eps(x_1, t1, p) ||^2

``metric`` picks the score: ``curvature`` (Metric 2, default) or ``dsm12`` (the code's best
TPR@1%FPR). Both, with ``wen_sq_1`` (||eps_c - eps_u||^2 at step 1), are recorded per prompt.

Values: the formulas, t0/t1/t2 = the first three sampling timesteps and the 50-step schedule come
from the code; its guidance 7.5 is the run's ``guidance_scale`` here. Ours: ``seed`` 0 (one latent
shared by every prompt; the code seeds ``gen_seed + i`` per prompt, ``seed = -1`` does that with
each prompt's own seed). A run with fewer than 3 steps is scored on a 3-step schedule (ours).

Cost in UNet rows per prompt: 5 forward (2 at t0, 2 at t1, 1 at t2) and 2 backward rows (the two
gradients at t0); the code computes two more backward rows for its "Jeon metric", skipped here.

Needs (capabilities): classifier-free guidance, epsilon prediction, a differentiable denoiser.

Differences from the reference: (1) float32 (the code: fp16); (2) epsilon prediction only (the
code converts v-prediction to epsilon; not ported, such a model raises); (3) latents from CPU
generators; the code's ``get_epsilon`` and 64x64 latents are replaced by the run's size.

Families (``needs``: cfg, epsilon): gradients of the conditional and unconditional prediction norms:
epsilon models with real CFG; n/a on v- and flow models.
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

METRICS = ("curvature", "dsm12")


class EarlyCurvature(Detector):
    """||grad 1/2||eps_c||^2 - grad 1/2||eps_u||^2||^2 at x_T (or the step-1->2 change of eps_c)."""

    name = "early_curvature"
    needs = frozenset({"cfg", "epsilon"})  # epsilon models only (its own guard says so too)
    paper = "Early Detection of Memorization in Diffusion Models (ICML 2026)"
    sweep = {"metric": list(METRICS)}

    metric: str = "curvature"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise DetectorError(f"early_curvature: metric must be one of {METRICS}, got {self.metric!r}")
        if self.seed < -1:
            raise DetectorError(f"early_curvature: seed must be >= 0, or -1 for each prompt's own seed, got {self.seed}")

    def score(self, pipe: "StableDiffusionPipeline", ctx: DetectionContext) -> list[float]:
        import torch

        kind = pipe.scheduler.config.get("prediction_type", "epsilon")
        if kind != "epsilon":
            raise DetectorError(f"early_curvature: prediction_type {kind!r} is not supported (epsilon only)")
        n = len(ctx.prompts)
        family = family_for(pipe)
        seeds = [self.seed if self.seed >= 0 else r.seed for r in ctx.requests]
        x0 = seeded_latents(pipe, seeds, latent_geometry(pipe, ctx.height, ctx.width))
        scheduler = copy.deepcopy(pipe.scheduler)
        scheduler.set_timesteps(max(3, ctx.num_inference_steps), device=x0.device)
        t0, t1, t2 = scheduler.timesteps[:3]
        g = ctx.guidance_scale
        with torch.inference_mode(False), torch.no_grad():
            cond = encode_prompts(pipe, ctx.prompts).clone()
            uncond = encode_prompts(pipe, [""]).expand(n, -1, -1).clone()
            both = torch.cat([uncond, cond])
            x = x0.clone().requires_grad_(True)
            with torch.enable_grad():
                eps_u0, eps_c0 = family.predict(torch.cat([x, x]), t0, both).pair()
                (g_c,) = torch.autograd.grad(0.5 * eps_c0.float().pow(2).sum(), x, retain_graph=True)
                (g_u,) = torch.autograd.grad(0.5 * eps_u0.float().pow(2).sum(), x)
            curvature = (g_c - g_u).float().flatten(1).pow(2).sum(1)
            eps_u0, eps_c0 = eps_u0.detach(), eps_c0.detach()
            x1 = scheduler.step(eps_u0 + g * (eps_c0 - eps_u0), t0, x0).prev_sample
            eps_u1, eps_c1 = family.predict(torch.cat([x1, x1]), t1, both).pair()
            x2 = scheduler.step(eps_u1 + g * (eps_c1 - eps_u1), t1, x1).prev_sample
            eps_c2 = family.predict(x2, t2, cond).sample
        sq = lambda v: v.float().flatten(1).pow(2).sum(1).double().cpu()  # noqa: E731
        dsm01, dsm12, wen1 = sq(eps_c1 - eps_c0), sq(eps_c2 - eps_c1), sq(eps_c1 - eps_u1)
        curvature = curvature.double().cpu()
        for i in range(n):
            ctx.records[i].update(curvature=float(curvature[i]), dsm_01=float(dsm01[i]), dsm_12=float(dsm12[i]),
                                  wen_sq_1=float(wen1[i]))
        return (curvature if self.metric == "curvature" else dsm12).tolist()
