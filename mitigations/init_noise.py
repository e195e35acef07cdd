"""Adjusting the initial noise (Han et al.): move x_T out of the attraction basin, then delay CFG.

Han, Kim, Joo, Hong, Lee. "Adjusting Initial Noise to Mitigate Memorization in Text-to-Image
Diffusion Models". NeurIPS 2025 (arXiv 2510.08625). Checked against the public code,
hygnhan/init_noise_diffusion_memorization @ 3a47d7a: ``local_sd_pipeline.py``
(``adj_init_noise_batch_wise`` l.220-275, ``adj_init_noise_per_sample`` l.277-355, the delayed CFG
in ``__call__`` l.164-173), ``generate_images.py`` (argparse defaults) and the README commands.

Why: guidance applied inside the "attraction basin" drives a memorized prompt to its training
image; some initial noises leave the basin earlier, so CFG can start sooner. At the first sampling
timestep t0 on x_T (uncond = the empty prompt), with D(x) = eps(x, t0, p) - eps(x, t0, "")::

    batch_wise (``adj_iters`` times, all images of the batch at once, each on its own D):
        delta = rho D(x) / ||D(x)||_2
        x    <- x - gamma (D(x + delta) - D(x))          (a sharpness step, no backward pass)
      then sampling uses eps_u alone for steps i <= ``apply_cfg_step`` and CFG after (delayed CFG)
    per_sample (each image alone):
        AdamW(lr) on x minimising ||D(x)||_2, stopped as soon as ||D(x)||_2 <= ``target_loss``
        or after ``max_iterations`` steps; plain CFG from step 0 (the code delays CFG in
        batch_wise only)

Values from the code / README: batch_wise rho 50, gamma 0.7, adj_iters 2, apply_cfg_step 4;
per_sample lr 0.01, target_loss 0.9, max_iterations 1000 (``--optim_iters``; AdamW's default
weight decay 0.01). The code's guidance is 7 (the run's ``guidance_scale`` is used here). These
are SD 1.4 values at 64x64 latents (||x_T|| ~ 128); on the 64x64 miniature model (16x16 latents,
||x_T|| ~ 32) rho 50 is larger than x_T itself and ||D|| is about 4x smaller, so both modes act
more strongly there at the same values (measured in docs/methods-2025.md).

Cost in UNet rows per image: batch_wise 4 x adj_iters (8) forward rows and no backward pass, then
sampling at 2 x steps (the delayed steps still run both rows, as the code does); per_sample one
forward over 2 rows per AdamW step (its loss is also the stopping test) and one backward pass, up
to 2 x 1001 rows and 1000 backward passes. Both: + 4 rows for the recorded before / after norms.
Per-image independence: every norm and update is per row; AdamW's state is per element, so the
batched per_sample optimisation equals each image's own (a row that reaches its target is frozen
there, as the code's loop stops).

Needs (capabilities): classifier-free guidance (an unconditional prediction), epsilon prediction,
a differentiable denoiser (per_sample).

Differences from the reference: (1) per_sample runs all images of a batch together with a
per-row stop (the code: one image at a time; same trajectories, see above); (2) x_T is the
harness's seeded latent per image; (3) float32. Padding requests are kept as drawn. Records per
image: ``init_noise_initial_norm`` and ``init_noise_final_norm`` (||D(x_T)|| before and after),
``init_noise_shift`` (||x_T' - x_T||_2), ``init_noise_iterations`` (per_sample).

Families (``needs``: cfg): adjusts x_T against the guidance vector and delays CFG: every family with real CFG (on flow models the
guidance vector is a velocity difference; the paper's rho and gamma were set on SD 1.4's epsilon).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from membench_eval.errors import MitigationError
from membench_eval.mitigation import BatchContext, Mitigation
from membench_eval.models import family_for

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline

MODES = ("batch_wise", "per_sample")


class InitialNoiseAdjustment(Mitigation):
    """Adjust x_T to shrink the guidance norm (batch-wise sharpness step or per-sample AdamW), delay CFG."""

    name = "init_noise"
    needs = frozenset({"cfg"})
    paper = "Han et al. 2025, Adjusting Initial Noise to Mitigate Memorization in Text-to-Image Diffusion Models"
    sweep = {"mode": list(MODES)}
    strongest = {"mode": "batch_wise"}

    mode: str = "batch_wise"
    rho: float = 50.0
    gamma: float = 0.7
    adj_iters: int = 2
    apply_cfg_step: int = 4
    lr: float = 0.01
    target_loss: float = 0.9
    max_iterations: int = 1000

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise MitigationError(f"init_noise: mode must be one of {MODES}, got {self.mode!r}")
        if self.adj_iters < 0 or self.max_iterations < 0 or self.apply_cfg_step < -1:
            raise MitigationError("init_noise: adj_iters and max_iterations must be >= 0, apply_cfg_step >= -1")
        if not (self.rho > 0 and self.lr > 0 and self.target_loss >= 0):
            raise MitigationError(f"init_noise: rho and lr must be > 0, target_loss >= 0, got {self.rho}, {self.lr}, "
                                  f"{self.target_loss}")

    def edit_latents(
        self,
        pipe: "StableDiffusionPipeline",
        latents: "torch.Tensor",
        prompt_embeds: "torch.Tensor",
        negative_prompt_embeds: "torch.Tensor | None",
        ctx: BatchContext,
    ) -> "torch.Tensor":
        import torch

        while len(ctx.records) < len(ctx.requests):
            ctx.records.append({})
        rows = [i for i, r in enumerate(ctx.requests) if not r.padding]
        if not rows:
            return latents
        uncond = negative_prompt_embeds
        if uncond is None:  # guidance off: D still compares with the empty prompt
            with torch.no_grad():
                uncond = family_for(pipe).encode([""] * len(ctx.requests), latents.device).embeds
        scheduler = copy.deepcopy(pipe.scheduler)
        scheduler.set_timesteps(ctx.num_inference_steps, device=latents.device)
        t0 = scheduler.timesteps[0]
        embeds = torch.cat([uncond[rows], prompt_embeds[rows]])
        x = latents[rows].float().clone()
        with torch.inference_mode(False):
            embeds, x = embeds.clone(), x.clone()
            diff = lambda z: guidance_difference(pipe, scheduler.scale_model_input(z, t0), t0, embeds)  # noqa: E731
            with torch.no_grad():
                first = diff(x).flatten(1).norm(dim=1)
            if self.mode == "batch_wise":
                new, iterations = self._batch_wise(diff, x), [self.adj_iters] * len(rows)
            else:
                new, iterations = self._per_sample(diff, x)
            with torch.no_grad():
                final = diff(new).flatten(1).norm(dim=1)
        out = latents.clone()
        out[rows] = new.to(latents.dtype)
        for j, i in enumerate(rows):
            ctx.records[i].update(init_noise_initial_norm=float(first[j]), init_noise_final_norm=float(final[j]),
                                  init_noise_shift=float((new[j] - x[j]).norm()), init_noise_iterations=iterations[j])
        return out

    def _batch_wise(self, diff, x: "torch.Tensor") -> "torch.Tensor":
        import torch

        with torch.no_grad():
            for _ in range(self.adj_iters):
                d = diff(x)
                delta = self.rho * d / d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
                x = x - self.gamma * (diff(x + delta) - d)
        return x

    def _per_sample(self, diff, x: "torch.Tensor") -> tuple["torch.Tensor", list[int]]:
        import torch

        x = x.clone().requires_grad_(True)
        optimizer = torch.optim.AdamW([x], lr=self.lr)
        done = torch.zeros(x.shape[0], dtype=torch.bool)
        frozen = x.detach().clone()
        iterations = [self.max_iterations] * x.shape[0]
        for step in range(self.max_iterations + 1):
            with torch.enable_grad():
                loss = diff(x).flatten(1).norm(dim=1)
            newly = (loss.detach().cpu() <= self.target_loss) & ~done
            for j in newly.nonzero().flatten().tolist():
                frozen[j], iterations[j] = x.detach()[j], step
            done |= newly
            if bool(done.all()) or step == self.max_iterations:
                break
            optimizer.zero_grad()
            loss.sum().backward()
            optimizer.step()
            with torch.no_grad():  # a row that met its target stays where it stopped
                x[done] = frozen[done]
        with torch.no_grad():
            return torch.where(done.view(-1, 1, 1, 1).to(x.device), frozen, x.detach()), iterations

    def guidance(
        self,
        pipe: "StableDiffusionPipeline",
        step: int,
        timestep: int,
        latents: "torch.Tensor",
        eps_uncond: "torch.Tensor | None",
        eps_cond: "torch.Tensor",
        ctx: BatchContext,
    ) -> "torch.Tensor":
        if eps_uncond is None:
            return eps_cond
        if self.mode == "batch_wise" and step <= self.apply_cfg_step:
            return eps_uncond
        return eps_uncond + ctx.guidance_scale * (eps_cond - eps_uncond)


def guidance_difference(pipe: "StableDiffusionPipeline", x: "torch.Tensor", t, embeds: "torch.Tensor") -> "torch.Tensor":
    """D(x) = eps(x, t, cond) - eps(x, t, uncond) per row, ``embeds`` = cat([uncond, cond])."""
    import torch

    family = family_for(pipe)
    eps_u, eps_c = family.predict(torch.cat([x, x]).to(family.dtype), t, embeds.to(family.dtype)).pair()
    return (eps_c - eps_u).float()
