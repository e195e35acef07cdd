"""SAIL: optimise the initial noise x_T until a sharpness-based loss is below a threshold.

Jeon, Kim, No. "Understanding and Mitigating Memorization in Generative Models via Sharpness of
Probability Landscapes". ICML 2025 (arXiv 2412.04140). Checked against the public code,
Dongjae0324/sharpness_memorization_diffusion @ f4ee4b8: ``local_model/pipe.py`` (the ``miti``
branch of ``__call__``) and ``mitigate_mem.py`` (arguments).

Memorized prompts sit in sharp regions of the conditional density; SAIL picks an initial noise
where the landscape is flat. At t = the first timestep of the sampling schedule, per image::

    D(x)  = eps_c(x) - eps_u(x)                      (uncond = the empty prompt)
    d     = D(x) / ||D(x)||_2                         (a unit step along the guidance difference)
    L(x)  = ||D(x + d)||_2 + 0.05 ||x||_2

x is optimised with Adam (lr 0.05, at most 10 steps per round) and accepted the first time
L(x) <= threshold, tested before each step (so the raw sample is tested first). A round that ends
unaccepted is a failure: the image restarts from a fresh Gaussian draw, and after every 3 failures
its threshold rises by 0.1. For v-prediction models (SD2) D is the score difference
(x - sqrt(a) v)/sqrt(1 - a) of cond minus uncond = -sqrt(a)/sqrt(1 - a) (v_c - v_u), with the
regulariser weight 0.01, as the reference. All values are from ``mitigate_mem.py``: threshold 8.2
(``--miti_thres``, "l_thres" of the paper's Algorithm 2, SD1.4), lr 0.05, 10 steps. The paper's
threshold sweep could not be read (Appendix D); ``sweep`` is 8.2 with values around it (lower is
stricter) and is not the paper's. On SD1.4 ||x|| ~ 128, so 8.2 allows ||D(x + d)|| ~ 1.8 at the
start. On the 64x64 miniature model ||x|| ~ 64 and 8.2 accepts 98% of raw trigger samples at once
(it does almost nothing there); the same strictness is 8.2 x sqrt(4096/16384) = 4.1 (measured
numbers in tests/mitigations/test_mitigations_sail.py).

Cost: each loss evaluation is two UNet calls on [uncond, cond] rows = 4 UNet rows per image
forward, plus one backward through both for every Adam step. An image accepted at once costs 4
rows; a full round 11 evaluations (44 rows) and 10 backwards; at most MAX_ROUNDS (30) rounds,
1320 rows (plain CFG sampling: 2 x steps = 100). The batch runs until its slowest row is done, so
the engine's ``unet_evals`` is the batch's cost; ``sail_unet_rows`` records each image's own.

Differences from the reference, documented: (1) one latent per image, starting from the harness's
own x_T (the reference optimises a pool of 8 latents per prompt, from a global seed, and takes
the first 4 accepted); a failed image restarts from a FRESH draw of its own generator every time
(the reference re-seeds only every 3 failures, so rounds 1-3 re-draw the same latents and can
accept duplicates). (2) The direction d is recomputed at the current x (the reference builds the
UNet input once per round, so d stays that of the round's initial latent); this costs the same.
(3) Every Adam step is tested (11 tests per round; the reference never tests its 10th step).
(4) At most MAX_ROUNDS rounds (the reference has no cap); a capped image keeps its lowest-loss
latent and is recorded as not accepted. (5) Adam in float32 per row (the reference: bf16, one
Adam over the pool); the loss is evaluated at the latent as returned (cast to the latents' dtype).
Records per image: ``sail_steps`` (Adam steps in total), ``sail_rounds``, ``sail_initial_loss``
(the raw x_T), ``sail_final_loss`` (of the returned latent), ``sail_threshold`` (in force at the
end), ``sail_accepted``, ``sail_unet_rows``. Padding requests are kept as drawn, unrecorded.

Families (``needs``: cfg, prompt_embeddings, diffusion_score): searches x_T on the guidance vector (epsilon and v
predictions; n/a on SD3 and FLUX, whose flow velocity its formulas do not cover): SD 1.x / 2.x incl. 768-v,
Realistic Vision, SDXL, IF stage I.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from membench_eval.errors import MitigationError
from membench_eval.mitigation import BatchContext, Mitigation
from membench_eval.models import family_for

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline


class SAIL(Mitigation):
    """Per image: Adam on x_T until the sharpness loss is <= threshold (raised after failures)."""

    name = "sail"
    needs = frozenset({"cfg", "prompt_embeddings", "diffusion_score"})  # epsilon or v: not a flow velocity
    paper = ("Jeon et al. 2025, Understanding and Mitigating Memorization in Generative Models via Sharpness "
             "of Probability Landscapes")
    sweep = {"threshold": [9.0, 8.6, 8.2, 7.8, 7.4]}
    strongest = {"threshold": 7.4}

    # Fixed by the method (reference defaults), so not in the store key.
    LR: ClassVar[float] = 0.05
    MAX_STEPS: ClassVar[int] = 10
    REG_WEIGHT: ClassVar[float] = 0.05
    REG_WEIGHT_V: ClassVar[float] = 0.01  # v-prediction (SD2) in the reference
    THRESHOLD_STEP: ClassVar[float] = 0.1
    FAILURES_PER_STEP: ClassVar[int] = 3
    MAX_ROUNDS: ClassVar[int] = 30
    BETAS: ClassVar[tuple[float, float]] = (0.9, 0.999)  # torch.optim.Adam defaults
    ADAM_EPS: ClassVar[float] = 1e-8

    threshold: float = 8.2

    def __post_init__(self) -> None:
        if not (math.isfinite(self.threshold) and self.threshold >= 0):
            raise MitigationError(f"sail: threshold must be a finite number >= 0, got {self.threshold}")

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
        if uncond is None:  # guidance off: the loss still compares with the empty prompt
            with torch.no_grad():
                uncond = family_for(pipe).encode([""] * len(ctx.requests), latents.device).embeds
        with torch.inference_mode(False), torch.enable_grad():
            out, records = self._search(pipe, latents.clone(), torch.cat([uncond, prompt_embeds]).clone(), rows, ctx)
        for i in rows:
            ctx.records[i].update(records[i])
        return out

    def loss_function(
        self, pipe: "StableDiffusionPipeline", num_inference_steps: int, device: Any, embeds: "torch.Tensor"
    ) -> tuple[Any, float]:
        """L(x) per row, for x (N, C, H, W) and ``embeds`` = cat([uncond, cond]) (2N rows)."""
        import torch

        scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
        scheduler.set_timesteps(num_inference_steps, device=device)
        t = scheduler.timesteps[0]
        kind = scheduler.config.get("prediction_type", "epsilon")
        if kind == "epsilon":
            coef, weight = 1.0, self.REG_WEIGHT
        elif kind == "v_prediction":  # D = score difference, as the reference's SD2 branch
            a = float(scheduler.alphas_cumprod[int(t)])
            coef, weight = -math.sqrt(a) / math.sqrt(1 - a), self.REG_WEIGHT_V
        else:
            raise MitigationError(f"sail: prediction_type {kind!r} is not supported (epsilon or v_prediction)")
        sigma = float(scheduler.init_noise_sigma)
        family = family_for(pipe)
        embeds = embeds.to(family.dtype)

        def difference(z: "torch.Tensor") -> "torch.Tensor":
            model_input = scheduler.scale_model_input(torch.cat([z, z]), t).to(family.dtype)
            u, c = family.predict(model_input, t, embeds).sample.float().chunk(2)
            return coef * (c - u)

        def loss(x: "torch.Tensor") -> "torch.Tensor":
            x = x.float()
            d = difference(x)
            d = d / d.flatten(1).norm(dim=1).clamp_min(1e-20).view(-1, 1, 1, 1)
            return difference(x + d).flatten(1).norm(dim=1) + weight * (x / sigma).flatten(1).norm(dim=1)

        return loss, sigma

    def _search(
        self, pipe: "StableDiffusionPipeline", latents: "torch.Tensor", embeds: "torch.Tensor", rows: list[int],
        ctx: BatchContext,
    ) -> tuple["torch.Tensor", dict[int, dict[str, Any]]]:
        """All rows together, one batched loss per evaluation; a row's path depends on itself only."""
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        loss_fn, sigma = self.loss_function(pipe, ctx.num_inference_steps, latents.device, embeds)
        dtype, n = latents.dtype, latents.shape[0]
        b1, b2 = self.BETAS
        x = latents.float()  # master copy; evaluated (and returned) as x.to(dtype)
        m, v = torch.zeros_like(x), torch.zeros_like(x)
        out = latents.clone()
        best = latents.clone()
        best_loss = [math.inf] * n
        state = {i: dict(steps=0, rounds=1, in_round=0, failures=0, evals=0, initial=None) for i in rows}
        active = set(rows)
        records: dict[int, dict[str, Any]] = {}

        def finish(i: int, value: "torch.Tensor", loss: float, accepted: bool) -> None:
            out[i] = value
            s = state[i]
            records[i] = dict(
                sail_steps=s["steps"], sail_rounds=s["rounds"], sail_initial_loss=s["initial"], sail_final_loss=loss,
                sail_threshold=self._threshold(s["failures"] if accepted else s["failures"] - 1),
                sail_accepted=accepted, sail_unet_rows=4 * s["evals"],
            )
            active.discard(i)

        while active:
            leaf = x.clone().requires_grad_(True)
            current = leaf.to(dtype)
            losses = loss_fn(current)
            values = losses.detach().tolist()
            update = []
            for i in sorted(active):
                s, loss = state[i], values[i]
                if not math.isfinite(loss):
                    raise MitigationError(f"sail: the loss became {loss} (request {i}, round {s['rounds']})")
                s["evals"] += 1
                if s["initial"] is None:
                    s["initial"] = loss
                if loss < best_loss[i]:
                    best_loss[i], best[i] = loss, current[i].detach()
                if loss <= self._threshold(s["failures"]):
                    finish(i, current[i].detach(), loss, True)
                elif s["in_round"] < self.MAX_STEPS:
                    update.append(i)
                else:  # round failed
                    s["failures"] += 1
                    if s["rounds"] >= self.MAX_ROUNDS:
                        finish(i, best[i].clone(), best_loss[i], False)
                        continue
                    s["rounds"] += 1
                    s["in_round"] = 0
                    fresh = randn_tensor((1, *x.shape[1:]), generator=ctx.generators[i], device=x.device, dtype=dtype)
                    x[i] = (fresh * sigma)[0].float()
                    m[i], v[i] = 0, 0
            if update:
                (grad,) = torch.autograd.grad(losses.sum(), [leaf])
                for i in update:  # Adam, as torch.optim.Adam (defaults), with this row's own step count
                    s = state[i]
                    s["in_round"] += 1
                    s["steps"] += 1
                    k = s["in_round"]
                    m[i] = b1 * m[i] + (1 - b1) * grad[i]
                    v[i] = b2 * v[i] + (1 - b2) * grad[i] * grad[i]
                    denom = (v[i].sqrt() / math.sqrt(1 - b2**k)) + self.ADAM_EPS
                    x[i] = x[i] - (self.LR / (1 - b1**k)) * m[i] / denom
        return out.detach(), records

    def _threshold(self, failures: int) -> float:
        """The threshold after ``failures`` failed rounds: +0.1 after every 3."""
        return self.threshold + self.THRESHOLD_STEP * (max(failures, 0) // self.FAILURES_PER_STEP)
