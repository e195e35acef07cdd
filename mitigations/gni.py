"""GNI: Gaussian noise added to the text embeddings at inference.

Somepalli, Singla, Goldblum, Geiping, Goldstein. "Understanding and Mitigating Copying in Diffusion
Models". NeurIPS 2023. Checked against the public code somepago/DCR (``sd_mitigation.py``, class
``Newpipe``: ``embedding + self.noiselam * torch.randn_like(embedding)``, ``--rand_noise_lam``).

A memorized image is reproduced from one exact text embedding; jittering the embedding moves the
sample off it while keeping the prompt's meaning. Before sampling, every element of the text
embeddings gets independent Gaussian noise of standard deviation ``lam`` (absolute, not relative to
the embedding's scale); the same noisy embeddings are used at every step. As in the reference
(diffusers 0.14's ``_encode_prompt`` returned ``[uncond, cond]`` concatenated), the noise goes on
BOTH halves of the guidance batch (the conditional and the empty-prompt embedding), all tokens
(BOS included) and all channels.

Hyperparameters: ``lam``; 0.1 is the only value in the paper's code and README
(``--rand_noise_lam 0.1``), so it is ``strongest``. The sweep adds 0.2, 0.5 and 1.0 (ours) to show
the dose response: the scale is absolute, so its effect depends on the text encoder's scale (SD
1.x's CLIP hidden states have a per-element std near 1 away from BOS).

Cost: no extra UNet evaluations (2 x steps per image, as base).

Differences from the reference, documented: the noise is drawn per image from a generator seeded
by that image's harness RNG (``ctx.rngs[i]``), not from the global torch RNG, so an image's noise
does not depend on the batch it shares or on the run's order; it is added explicitly to both
embeddings (overriding ``_encode_prompt``, as the reference does, silently does nothing since
diffusers 0.21, which calls ``encode_prompt``). Records: ``gni_noise_std`` (the measured std of the
noise added to the conditional embedding of the image).

Families (``needs``: prompt_embeddings): noise on the family's prompt token embeddings (SDXL: the
concatenated CLIP-L + CLIP-G embeddings; IF: T5's), every family.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from membench_eval.errors import MitigationError
from membench_eval.mitigation import BatchContext, Mitigation

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline


class GaussianNoiseInference(Mitigation):
    """Adds N(0, lam^2) to every element of both text embeddings, per image, before sampling."""

    name = "gni"
    needs = frozenset({"prompt_embeddings"})
    paper = "Somepalli et al. 2023, Understanding and Mitigating Copying in Diffusion Models (GNI)"
    sweep = {"lam": [0.1, 0.2, 0.5, 1.0]}
    strongest = {"lam": 0.1}

    lam: float = 0.1

    def __post_init__(self) -> None:
        if not self.lam >= 0:
            raise MitigationError(f"gni: lam must be >= 0, got {self.lam}")

    def edit_embeddings(
        self,
        pipe: "StableDiffusionPipeline",
        prompt_embeds: "torch.Tensor",
        negative_prompt_embeds: "torch.Tensor | None",
        latents: "torch.Tensor",
        ctx: BatchContext,
    ) -> tuple["torch.Tensor", "torch.Tensor | None"]:
        import torch

        cond, uncond = prompt_embeds.clone(), None if negative_prompt_embeds is None else negative_prompt_embeds.clone()
        for i, rng in enumerate(ctx.rngs):
            generator = torch.Generator().manual_seed(rng.getrandbits(63))
            noise = torch.randn((2, *cond.shape[1:]), generator=generator, dtype=torch.float32)
            cond[i] += (self.lam * noise[0]).to(cond.device, cond.dtype)
            if uncond is not None:
                uncond[i] += (self.lam * noise[1]).to(uncond.device, uncond.dtype)
            ctx.records[i]["gni_noise_std"] = float((cond[i].float() - prompt_embeds[i].float()).std())
        return cond, uncond
