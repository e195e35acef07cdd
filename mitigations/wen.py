"""Wen et al.: optimise the prompt embedding until the text-conditional noise is small.

Wen, Liu, Chen, Lyu. "Detecting, Explaining, and Mitigating Memorization in Diffusion Models".
ICLR 2024. Evaluated in MemBench (Hong, Oh, Sung 2024).

Memorized prompts give an unusually large text-conditional noise ``eps_cond - eps_uncond``. At the
first denoising step, the conditional prompt embedding is optimised with AdamW (lr 0.05, at most 10
iterations) until ``||eps_cond - eps_uncond||_2 <= l`` (the paper sweeps l = 7..2; smaller is
stronger); the image is then generated from the optimised embedding at every step. Token 0 (BOS)
is kept fixed.

How ``l`` is measured, and why: the reference optimises ONE embedding per prompt and takes ONE
plain L2 norm over all of that prompt's images together (10 in MemBench, 4 in Wen's code). This
class does the same (``batch_by_prompt``: the engine keeps a prompt's images in one batch), with no
rescaling: ``l`` bounds ``||eps_cond - eps_uncond||_2`` over the k images of the prompt, so for a
general (COCO) prompt with 1 image the bound is on that image's norm alone, while for a trigger
prompt with 10 images the same l is a bound on a joint norm about sqrt(10) times larger per
image: a given l is stricter on trigger prompts, as in the reference. (An earlier version rescaled
by sqrt(10/k); on COCO prompts that thresholded every prompt at 3.16x the paper's l.) Padding
requests the engine adds to fill a batch are skipped.

The norm also grows with the latent size (sqrt of its element count). ``l`` is used as given on
every model; on the 64x64 miniature model (16x16 latents) the measured norms are reported in
tests/mitigations/test_mitigations_mini.py and the README.

Differences from the reference, documented: the reference zeroes token 0's gradient but AdamW's
weight decay still shrinks it a little; here token 0 is not a parameter at all. The reference never
evaluates the embedding produced by its last (10th) step; here the loss of the returned embedding
is always measured (one extra UNet call when the cap is hit) and recorded per image as
``wen_final_loss``, with ``wen_iterations`` (optimizer steps taken, 0..10) and ``wen_initial_loss``.
The loss does not involve the guidance scale (as in the paper and the reference).

Families (``needs``: cfg, prompt_embeddings): optimises the prompt embeddings against the guidance
vector: every family with real CFG (SDXL: the token embeddings; IF: stage I's T5 embeddings).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

from membench_eval.errors import MitigationError
from membench_eval.mitigation import BatchContext, Mitigation
from membench_eval.models import family_for

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline


class WenEmbeddingOptimization(Mitigation):
    """Per prompt: AdamW on the conditional embedding at the first step until the norm is <= l."""

    name = "wen"
    needs = frozenset({"cfg", "prompt_embeddings"})
    paper = "Wen et al. 2024, Detecting, Explaining, and Mitigating Memorization in Diffusion Models"
    sweep = {"l": [7.0, 6.0, 5.0, 4.0, 3.0, 2.0]}
    strongest = {"l": 2.0}
    batch_by_prompt = True

    # The paper's optimiser settings (fixed by the method, so not in the store key).
    LR: ClassVar[float] = 0.05
    MAX_ITERATIONS: ClassVar[int] = 10

    l: float = 7.0

    def __post_init__(self) -> None:
        if not self.l >= 0:
            raise MitigationError(f"wen: l must be >= 0, got {self.l}")

    def edit_embeddings(
        self,
        pipe: "StableDiffusionPipeline",
        prompt_embeds: "torch.Tensor",
        negative_prompt_embeds: "torch.Tensor",
        latents: "torch.Tensor",
        ctx: BatchContext,
    ) -> tuple["torch.Tensor", "torch.Tensor"]:
        import torch

        while len(ctx.records) < len(ctx.requests):
            ctx.records.append({})
        groups: dict[str, list[int]] = {}
        for i, request in enumerate(ctx.requests):
            if not request.padding:
                groups.setdefault(request.prompt_id, []).append(i)

        scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
        scheduler.set_timesteps(ctx.num_inference_steps, device=latents.device)
        timestep = scheduler.timesteps[0]

        uncond = negative_prompt_embeds
        if uncond is None:  # guidance off: the loss still compares with the empty prompt
            with torch.no_grad():
                uncond = family_for(pipe).encode([""] * len(ctx.requests), latents.device).embeds
        # The engine may run inside inference_mode; autograd needs ordinary tensors.
        with torch.inference_mode(False), torch.enable_grad():
            edited = prompt_embeds.clone()
            for rows in groups.values():
                embedding, first, final, steps = self._optimise(
                    pipe, prompt_embeds[rows[0]].clone(), uncond[rows].clone(),
                    scheduler.scale_model_input(latents[rows].clone(), timestep), timestep,
                )
                edited[rows] = embedding.to(edited.dtype).expand(len(rows), -1, -1)
                for i in rows:
                    ctx.records[i].update(wen_iterations=steps, wen_initial_loss=first, wen_final_loss=final)
        return edited, negative_prompt_embeds

    def _optimise(
        self,
        pipe: "StableDiffusionPipeline",
        cond: "torch.Tensor",
        uncond: "torch.Tensor",
        latents: "torch.Tensor",
        timestep: "torch.Tensor",
    ) -> tuple["torch.Tensor", float, float, int]:
        """One prompt: returns (embedding (1, tokens, dim), initial loss, final loss, steps taken)."""
        import torch

        family = family_for(pipe)
        k = latents.shape[0]
        with torch.no_grad():
            eps_uncond = family.predict(latents, timestep, uncond.to(family.dtype)).sample.float()
        bos = cond[:1].detach().float()
        words = cond[1:].detach().float().clone().requires_grad_(True)
        optimizer = torch.optim.AdamW([words], lr=self.LR)

        first = final = math.nan
        steps = 0
        for steps in range(self.MAX_ITERATIONS + 1):
            embedding = torch.cat([bos, words])[None]
            eps_cond = family.predict(latents, timestep, embedding.to(family.dtype).expand(k, -1, -1)).sample
            loss = torch.linalg.vector_norm(eps_cond.float() - eps_uncond)
            final = loss.item()
            if steps == 0:
                first = final
            if not math.isfinite(final):
                raise MitigationError(f"wen: the noise norm became {final} after {steps} AdamW steps")
            if final <= self.l or steps == self.MAX_ITERATIONS:
                break
            (words.grad,) = torch.autograd.grad(loss, [words])
            optimizer.step()
        return torch.cat([bos, words.detach()])[None], first, final, steps
