"""Stable Diffusion XL (``StableDiffusionXLPipeline``): two CLIP text encoders, pooled embeddings
and size/crop ids as extra UNet conditioning; otherwise SD's UNet with cross-attention (``attn2``).

Why it subclasses the SD family: latents, scheduler step, decode and the attention layers are the
same; what differs is the conditioning. SDXL's UNet takes, besides the token embeddings (CLIP-L's
and OpenCLIP-bigG's penultimate layers, concatenated: 77 x 2048), ``text_embeds`` (bigG's pooled,
projected embedding, 1280) and ``time_ids`` (original size, crop top-left, target size: six
numbers; here the image's own size and crop (0, 0), as ``__call__``'s defaults).

The hook API hands methods the token embeddings as one tensor (``edit_embeddings``, the engine's
``predict`` calls), so the pooled embedding travels inside it: the conditioning tensor is the 77
token rows plus one row holding the pooled vector (zero-padded to 2048). ``predict`` splits it
again, so a method that edits the embeddings (Wen, GNI, PRSS) edits the pooled one with them, and
cross-attention (Ren, NeMo, the attention detectors) sees exactly the 77 tokens. ``time_ids`` follow
from the latents' size in ``predict`` (or ``Conditioning.extra["time_ids"]`` when given).
The unconditional rows are SDXL's own: zeros (``force_zeros_for_empty_prompt``), as ``__call__``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from membench_eval.models.family import Conditioning, Prediction, register_family
from membench_eval.models.sd import StableDiffusionFamily, use_sdpa

if TYPE_CHECKING:
    import torch

TOKENS = 77  # CLIP's context: the rows before the packed pooled row


def pack(embeds: "torch.Tensor", pooled: "torch.Tensor") -> "torch.Tensor":
    """(rows, 77, D) token embeddings + (rows, P) pooled -> (rows, 78, D), P <= D zero-padded."""
    import torch

    row = torch.zeros(embeds.shape[0], 1, embeds.shape[2], dtype=embeds.dtype, device=embeds.device)
    row[:, 0, : pooled.shape[1]] = pooled.to(embeds.dtype)
    return torch.cat([embeds, row], dim=1)


@register_family
class StableDiffusionXLFamily(StableDiffusionFamily):
    """SDXL base over a ``StableDiffusionXLPipeline``."""

    name = "stable-diffusion-xl"
    pipeline_classes = ("StableDiffusionXLPipeline",)
    offers = frozenset({"cfg", "cross_attention", "clip_bos_token", "prompt_embeddings", "pooled_embeddings"})
    text_encoders = ("CLIP ViT-L/14", "OpenCLIP ViT-bigG/14 (tokens + pooled)")
    prediction_types = ("epsilon",)
    model_lines = {"stable-diffusion-xl": ("stabilityai/stable-diffusion-xl-base-1.0",)}

    @classmethod
    def from_pretrained(cls, folder: Any, dtype: "torch.dtype", **components: Any) -> Any:
        """DDIM from the model's own scheduler config, no watermarker, SDPA attention."""
        from diffusers import DDIMScheduler, StableDiffusionXLPipeline

        pipe = StableDiffusionXLPipeline.from_pretrained(
            str(folder), torch_dtype=dtype, **components, add_watermarker=False,
            low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None,
        )
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        use_sdpa(pipe)
        return pipe

    @property
    def pooled_dim(self) -> int:
        return int(self.pipe.text_encoder_2.config.projection_dim)

    def encode(self, prompts: Sequence[str], device: "torch.device | None" = None) -> Conditioning:
        dev = self.device if device is None else device
        embeds, _, pooled, _ = self.pipe.encode_prompt(list(prompts), device=dev, num_images_per_prompt=1,
                                                       do_classifier_free_guidance=False)
        return Conditioning(pack(embeds, pooled), pooled=pooled)

    def encode_for_guidance(self, prompts: Sequence[str], device: "torch.device | None" = None,
                            guidance: bool = True) -> tuple[Conditioning, Conditioning | None]:
        dev = self.device if device is None else device
        embeds, neg, pooled, neg_pooled = self.pipe.encode_prompt(
            list(prompts), device=dev, num_images_per_prompt=1, do_classifier_free_guidance=guidance)
        cond = Conditioning(pack(embeds, pooled), pooled=pooled)
        return cond, (Conditioning(pack(neg, neg_pooled), pooled=neg_pooled) if guidance else None)

    def time_ids(self, latents: "torch.Tensor") -> "torch.Tensor":
        """(original size, crop (0, 0), target size) of the latents' image, one row per latent."""
        import torch

        h, w = (int(s) * self.vae_scale_factor for s in latents.shape[-2:])
        ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=latents.dtype, device=latents.device)
        return ids.repeat(latents.shape[0], 1)

    def predict(self, latents: "torch.Tensor", t: Any, cond: "Conditioning | torch.Tensor", *,
                timestep_cond: "torch.Tensor | None" = None) -> Prediction:
        packed = cond.embeds if isinstance(cond, Conditioning) else cond
        if packed.shape[1] != TOKENS + 1:
            raise ValueError(f"SDXL conditioning has {packed.shape[1]} rows; expected {TOKENS} tokens + 1 pooled "
                             "(use the family's encode)")
        time_ids = cond.extra.get("time_ids") if isinstance(cond, Conditioning) else None
        added = {"text_embeds": packed[:, TOKENS, : self.pooled_dim],
                 "time_ids": self.time_ids(latents) if time_ids is None else time_ids}
        sample = self.pipe.unet(
            latents, t, encoder_hidden_states=packed[:, :TOKENS], timestep_cond=timestep_cond,
            cross_attention_kwargs=None, added_cond_kwargs=added, return_dict=False,
        )[0]
        return Prediction(sample, self.prediction_type)
