"""Stable Diffusion 1.x / 2.x (``StableDiffusionPipeline``): CLIP text encoder, UNet with
cross-attention (``attn2``), KL VAE; epsilon or v-prediction, as its scheduler config says.

Every operation is written exactly as ``StableDiffusionPipeline.__call__`` (diffusers 0.3x,
text-to-image path) does it (same UNet keyword arguments, same casts, same order), so the engine's
explicit loop over this family gives ``__call__``'s pixels byte for byte
(``tests/generation/test_generation_denoise.py``).
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from membench_eval.models.family import AttentionLayer, Conditioning, ModelFamily, Prediction, register_family

if TYPE_CHECKING:
    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline


def use_sdpa(pipe: "StableDiffusionPipeline") -> None:
    """PyTorch's scaled_dot_product_attention in the UNet and VAE (diffusers' AttnProcessor2_0)."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    pipe.unet.set_attn_processor(AttnProcessor2_0())
    if any(True for _ in pipe.vae.attn_processors):
        pipe.vae.set_attn_processor(AttnProcessor2_0())


def _is_cross_attention(processor_key: str) -> bool:
    """SD's text attention layers are the transformer blocks' ``attn2``."""
    return processor_key.split(".")[-2] == "attn2"


@register_family
class StableDiffusionFamily(ModelFamily):
    """SD 1.x / 2.x over a ``StableDiffusionPipeline``."""

    name = "stable-diffusion"
    pipeline_classes = ("StableDiffusionPipeline",)
    offers = frozenset({"cfg", "cross_attention", "clip_bos_token", "prompt_embeddings"})
    text_encoders = ("CLIP ViT-L/14 (SD 1.x) or OpenCLIP ViT-H/14 (SD 2.x)",)
    prediction_types = ("epsilon", "v_prediction")
    model_lines = {"stable-diffusion": ("CompVis/stable-diffusion-v1-4", "stabilityai/stable-diffusion-2",
                                        "stabilityai/stable-diffusion-2-base"),
                   "realistic-vision": ("SG161222/Realistic_Vision_V5.1_noVAE (SD 1.5 fine-tune, external VAE)",)}

    @classmethod
    def from_pretrained(cls, folder: Any, dtype: "torch.dtype", **components: Any) -> "StableDiffusionPipeline":
        """DDIM from the model's own scheduler config, no safety checker, SDPA attention;
        ``components`` replace the folder's (Realistic Vision's external VAE)."""
        from diffusers import DDIMScheduler, StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_pretrained(
            str(folder), torch_dtype=dtype, **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
            # Without accelerate, asking for low-memory loading only prints a notice and falls back.
            low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None,
        )
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        use_sdpa(pipe)
        return pipe

    @property
    def denoiser(self) -> Any:
        return self.pipe.unet

    # --- text -----------------------------------------------------------------------------------

    def encode(self, prompts: Sequence[str], device: "torch.device | None" = None) -> Conditioning:
        embeds = self.pipe.encode_prompt(list(prompts), self.device if device is None else device, 1, False)[0]
        return Conditioning(embeds)

    def encode_for_guidance(self, prompts: Sequence[str], device: "torch.device | None" = None,
                            guidance: bool = True) -> tuple[Conditioning, Conditioning | None]:
        cond, uncond = self.pipe.encode_prompt(list(prompts), self.device if device is None else device, 1, guidance)
        return Conditioning(cond), (None if uncond is None else Conditioning(uncond))

    def token_counts(self, prompts: Sequence[str]) -> list[int]:
        tok = self.pipe.tokenizer
        max_len = tok.model_max_length
        return [len(tok(p, truncation=True, max_length=max_len).input_ids) for p in prompts]

    # --- sampling -------------------------------------------------------------------------------

    def predict(self, latents: "torch.Tensor", t: Any, cond: "Conditioning | torch.Tensor", *,
                timestep_cond: "torch.Tensor | None" = None) -> Prediction:
        embeds = cond.embeds if isinstance(cond, Conditioning) else cond
        sample = self.pipe.unet(
            latents, t, encoder_hidden_states=embeds, timestep_cond=timestep_cond,
            cross_attention_kwargs=None, added_cond_kwargs=None, return_dict=False,
        )[0]
        return Prediction(sample, self.prediction_type)

    @property
    def guidance_embedded(self) -> bool:
        return self.pipe.unet.config.get("time_cond_proj_dim") is not None

    def timestep_condition(self, guidance_scale: float, rows: int, device: "torch.device",
                           dtype: "torch.dtype") -> "torch.Tensor | None":
        """``timestep_cond`` for guidance-distilled UNets (``time_cond_proj_dim``), else None (SD 1.x)."""
        import torch

        if not self.guidance_embedded:
            return None
        scale = torch.tensor(guidance_scale - 1).repeat(rows)
        return self.pipe.get_guidance_scale_embedding(
            scale, embedding_dim=self.pipe.unet.config.time_cond_proj_dim
        ).to(device=device, dtype=dtype)

    def step_kwargs(self, generators: Any, eta: float = 0.0) -> dict[str, Any]:
        return self.pipe.prepare_extra_step_kwargs(generators, eta)

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        scale = self.pipe.vae_scale_factor
        return (self.pipe.unet.config.in_channels, height // scale, width // scale)

    @property
    def vae_scale_factor(self) -> int:
        return int(getattr(self.pipe, "vae_scale_factor", 8))

    @property
    def latent_channels(self) -> int:
        return int(self.pipe.unet.config.in_channels)

    @property
    def native_size(self) -> int:
        return int(self.pipe.unet.config.sample_size) * self.vae_scale_factor

    def initial_latents(self, generators: Sequence["torch.Generator"], height: int, width: int, *,
                        dtype: "torch.dtype", device: "torch.device") -> "torch.Tensor":
        """Drawn exactly as diffusers' ``prepare_latents`` does (before the init-sigma scaling)."""
        from diffusers.utils.torch_utils import randn_tensor

        shape = (len(generators), *self.latent_shape(height, width))
        return randn_tensor(shape, generator=generators, device=device, dtype=dtype)

    def decode(self, latents: "torch.Tensor", generators: Any = None) -> list["np.ndarray"]:
        vae = self.pipe.vae
        image = vae.decode(latents / vae.config.scaling_factor, return_dict=False, generator=generators)[0]
        images = self.pipe.image_processor.postprocess(image, output_type="np", do_denormalize=[True] * image.shape[0])
        return list(images)

    def decode_tensor(self, latents: "torch.Tensor") -> "torch.Tensor":
        """The VAE's decoded images, NCHW in about [-1, 1], unclamped and differentiable (no
        post-processing), in the VAE's dtype."""
        vae = self.pipe.vae
        z = latents / vae.config.scaling_factor + (getattr(vae.config, "shift_factor", None) or 0.0)
        return vae.decode(z.to(vae.dtype), return_dict=False)[0]

    # --- attention ------------------------------------------------------------------------------

    def attention_layers(self) -> list[AttentionLayer]:
        unet = self.pipe.unet
        modules = dict(unet.named_modules())

        def module_at(path: str) -> Any:
            if path in modules:
                return modules[path]
            # A wrapper module around the UNet (a test's, a method's) prefixes the names.
            (found,) = [m for name, m in modules.items() if name.endswith("." + path)]
            return found

        return [AttentionLayer(key, "cross", module_at(key.rsplit(".", 1)[0]))
                for key in unet.attn_processors if _is_cross_attention(key)]

    @contextlib.contextmanager
    def attention_processors(self, make: Callable[[AttentionLayer, Any], Any]) -> Iterator[None]:
        unet = self.pipe.unet
        original = dict(unet.attn_processors)
        layers = {layer.name: layer for layer in self.attention_layers()}
        installed = {}
        for key, proc in original.items():
            new = make(layers[key], proc) if key in layers else None
            installed[key] = proc if new is None else new
        unet.set_attn_processor(installed)
        try:
            yield
        finally:
            unet.set_attn_processor(dict(original))
