"""Anisotropy-guided prompt-embedding adaptation: lower the anisotropy score before sampling.

Asthana, Belagiannis. "Detecting and Mitigating Memorization in Diffusion Models through Anisotropy
of the Log-Probability". ICLR 2026 (arXiv 2601.20642); the paper adapts memorized prompts by its
detection score. The public code, rohanasthana/memorization-anisotropy @ 97e991b, ships no
embedding adaptation: its ``examples/inference_time_mitigation.ipynb`` runs the ``miti`` branch of
``local_model/pipe.py`` l.510-575, which is SAIL's initial-noise search inherited from
Dongjae0324/sharpness_memorization_diffusion (bundled as ``mitigations/sail.py``). So this file
is built from the paper's description: its score (``detectors/anisotropy.py``, formula and
gamma values from the code) as the loss of Wen et al.'s embedding optimisation (the bundled
``mitigations/wen.py``: AdamW lr 0.05, at most 10 steps, BOS frozen). Per image, on its own x_T::

    A(E)  = gamma_1 || eps(x_T, t_hi, E) - eps(x_T, t_hi, "") ||_2
          + gamma_2 mean_pixels cos_C( eps_u, eps(x_T, t_lo, E) - eps_u )      (t_hi = timesteps[0],
                                                                                t_lo = timesteps[-3])
    E    <- AdamW step on A(E) (tokens 1..76), until A(E) <= ``l`` or 10 steps

and the image is sampled from the adapted E at every step (plain CFG). Why the alignment term
helps beyond Wen's norm: at low noise a memorized prompt's guidance points along the unconditional
score; pushing the cosine down moves the embedding off that direction, not only shrinking it.

Values: gamma_1 1.0 and gamma_2 2.0 (the code's SD 1 pair), lr 0.05 and 10 steps (Wen's, ours
to reuse); ``l`` (ours): the threshold is in the score's own units, which grow with the latent
size like Wen's norm; the default 2.0 and sweep were set on the miniature model (trigger prompts'
scores there, docs/methods-2025.md), smaller is stricter.

Cost in UNet rows per image: 2 (the unconditional rows at t_hi and t_lo, once) + per AdamW step 2
conditional rows forward and backward, + 2 for the final check: at most 2 + 2 x 11 forward rows and
10 backward passes; then sampling at 2 x steps. Per-image independence: one embedding per image,
AdamW's state is per element, a row that reaches ``l`` is frozen where it stopped.

Needs (capabilities): classifier-free guidance, epsilon prediction, a differentiable denoiser,
prompt embeddings (a text encoder whose output the pipeline accepts as ``prompt_embeds``).

Differences: the method itself is ours as described above (no reference code for it). Records per
image: ``aniso_initial_score``, ``aniso_final_score``, ``aniso_iterations``. Padding requests are
kept as encoded.

Families (``needs``: cfg, prompt_embeddings): adapts the prompt embeddings by the anisotropy score:
every family with real CFG and prompt embeddings (the score's weights are the reference code's SD 1
values).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, ClassVar

from membench_eval.errors import MitigationError
from membench_eval.mitigation import BatchContext, Mitigation
from membench_eval.models import family_for

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline


class AnisotropyEmbeddingAdaptation(Mitigation):
    """AdamW on each image's prompt embedding until the anisotropy score is <= l."""

    name = "anisotropy_embed"
    needs = frozenset({"cfg", "prompt_embeddings"})
    paper = ("Asthana & Belagiannis 2026, Detecting and Mitigating Memorization in Diffusion Models through "
             "Anisotropy of the Log-Probability (embedding adaptation, ours from the paper's description)")
    sweep = {"l": [4.0, 2.0, 1.0]}
    strongest = {"l": 1.0}

    LR: ClassVar[float] = 0.05
    MAX_ITERATIONS: ClassVar[int] = 10

    l: float = 2.0
    gamma_1: float = 1.0
    gamma_2: float = 2.0

    def __post_init__(self) -> None:
        if not self.l >= -abs(self.gamma_2):
            raise MitigationError(f"anisotropy_embed: l must be >= -|gamma_2|, got {self.l}")

    def edit_embeddings(
        self,
        pipe: "StableDiffusionPipeline",
        prompt_embeds: "torch.Tensor",
        negative_prompt_embeds: "torch.Tensor | None",
        latents: "torch.Tensor",
        ctx: BatchContext,
    ) -> tuple["torch.Tensor", "torch.Tensor | None"]:
        import torch

        while len(ctx.records) < len(ctx.requests):
            ctx.records.append({})
        rows = [i for i, r in enumerate(ctx.requests) if not r.padding]
        if not rows:
            return prompt_embeds, negative_prompt_embeds
        family = family_for(pipe)
        uncond = negative_prompt_embeds
        if uncond is None:  # guidance off: the score still compares with the empty prompt
            with torch.no_grad():
                uncond = family.encode([""] * len(ctx.requests), latents.device).embeds
        scheduler = copy.deepcopy(pipe.scheduler)
        scheduler.set_timesteps(ctx.num_inference_steps, device=latents.device)
        ts = scheduler.timesteps
        t_hi, t_lo = ts[0], ts[max(0, len(ts) - 3)]
        with torch.inference_mode(False):
            x = latents[rows].clone()
            x_hi, x_lo = scheduler.scale_model_input(x, t_hi), scheduler.scale_model_input(x, t_lo)
            with torch.no_grad():
                u = uncond[rows].clone()
                eps_u_hi = family.predict(x_hi, t_hi, u).sample.float()
                eps_u_lo = family.predict(x_lo, t_lo, u).sample.float()

            def score(e: "torch.Tensor") -> "torch.Tensor":
                d_hi = family.predict(x_hi, t_hi, e.to(family.dtype)).sample.float() - eps_u_hi
                d_lo = family.predict(x_lo, t_lo, e.to(family.dtype)).sample.float() - eps_u_lo
                cos = torch.nn.functional.cosine_similarity(eps_u_lo, d_lo, dim=1).flatten(1).mean(1)
                return self.gamma_1 * d_hi.flatten(1).norm(dim=1) + self.gamma_2 * cos

            bos = prompt_embeds[rows, :1].detach().float().clone()
            words = prompt_embeds[rows, 1:].detach().float().clone().requires_grad_(True)
            optimizer = torch.optim.AdamW([words], lr=self.LR)
            n = len(rows)
            done = torch.zeros(n, dtype=torch.bool)
            frozen = words.detach().clone()
            iterations, first = [self.MAX_ITERATIONS] * n, None
            for step in range(self.MAX_ITERATIONS + 1):
                with torch.enable_grad():
                    loss = score(torch.cat([bos, words], dim=1))
                if first is None:
                    first = loss.detach().cpu()
                newly = (loss.detach().cpu() <= self.l) & ~done
                for j in newly.nonzero().flatten().tolist():
                    frozen[j], iterations[j] = words.detach()[j], step
                done |= newly
                if bool(done.all()) or step == self.MAX_ITERATIONS:
                    break
                optimizer.zero_grad()
                loss.sum().backward()
                optimizer.step()
                with torch.no_grad():
                    words[done] = frozen[done]
            with torch.no_grad():
                final_words = torch.where(done.view(-1, 1, 1).to(words.device), frozen, words.detach())
                edited = torch.cat([bos, final_words], dim=1)
                final = score(edited).cpu()
        out = prompt_embeds.clone()
        out[rows] = edited.to(out.dtype)
        for j, i in enumerate(rows):
            ctx.records[i].update(aniso_initial_score=float(first[j]), aniso_final_score=float(final[j]),
                                  aniso_iterations=iterations[j])
        return out, negative_prompt_embeds
