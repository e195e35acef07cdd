"""DeepFloyd IF, stage I (``IFPipeline``): T5-XXL text encoder, a pixel-space UNet with added-KV
attention, 64x64 pixels, epsilon with a learned variance, DDPM.

What differs from SD:

- **No VAE.** The "latents" are the 64x64 RGB image itself, in [-1, 1]; ``decode`` is
  ``__call__``'s post-processing (``x / 2 + 0.5``, clamped), ``decode_tensor`` the pixels as they are.
- **Learned variance.** The UNet outputs 6 channels: the noise and a variance weight
  (``learned_range``). ``predict`` splits them as ``IFPipeline.__call__`` does: ``Prediction.sample`` is
  the noise (3 channels: what the guidance hook, the guidance vector and every method see), the
  variance rides in ``Prediction.variance``, and ``step(..., variance=)`` puts back the conditional
  rows' variance before diffusers' DDPM step, as ``__call__``. Samplers that step with the noise
  alone get the posterior variance (``models.learned_variance``).
- **Text enters through added-KV attention.** Each attention layer (``SimpleCrossAttn*`` blocks,
  ``AttnAddedKVProcessor2_0``) projects the T5 tokens with ``add_k_proj`` / ``add_v_proj`` and
  prepends them to the image's own keys and values: one softmax over [77 text tokens, image
  tokens]. ``attention_layers`` returns them with role ``added_kv`` and ``text_tokens`` = the first
  77 keys; a processor installed there is called with the added-KV signature
  (``attn, hidden_states, encoder_hidden_states, attention_mask``), so SD's ``attn2`` processors
  (Ren, NeMo) do not carry over: they need ``cross_attention`` and read n/a here. T5 has no
  prompt-independent BOS token (no ``clip_bos_token``: Ren's rescale has nothing to rescale) and
  there is no pooled text vector as an input (the UNet pools the tokens itself, attention pooling
  in its time embedding).
- **Prompts as given.** ``__call__`` cleans captions by default (lower-case, URLs and some
  punctuation removed) only when bs4 and ftfy are installed, and silently skips it otherwise (the
  model card's install line has neither). The family passes ``clean_caption=False``, so a prompt
  is the suite's exact text whatever is installed (``clean_caption`` below).

Stages II and III (the 256 px and 1024 px super-resolution pipelines) are out of scope: methods act
on stage I and images are scored at stage I's 64 px. MemBench's paper reports IF on the cascade's
upscaled output; here SSCD resizes the 64 px image to its 288 px input (``metrics.preprocessing``),
so IF's SSCD numbers are not directly comparable to the paper's. Loading: ``DeepFloyd/IF-I-XL-v1.0``
(gated on the hub: accept its licence) or a ``save_pretrained`` folder; its ``text_encoder`` is
Google's T5 v1.1 XXL encoder (``T5_ENCODER``), its tokenizer T5's SentencePiece one (the
``deepfloyd`` extra installs sentencepiece).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from membench_eval.models.family import AttentionLayer, Conditioning, ModelFamily, Prediction, register_family

if TYPE_CHECKING:
    import numpy as np
    import torch

IF_MODEL = "DeepFloyd/IF-I-XL-v1.0"
T5_ENCODER = "google/t5-v1_1-xxl"  # the encoder IF's text_encoder/ folder holds (diffusers' scripts/convert_if.py)
TEXT_LENGTH = 77  # IFPipeline.encode_prompt's max_length: T5 as IF was trained


@register_family
class DeepFloydIFFamily(ModelFamily):
    """IF stage I over an ``IFPipeline``."""

    name = "deepfloyd-if"
    pipeline_classes = ("IFPipeline",)
    offers: ClassVar[frozenset[str]] = frozenset({"cfg", "added_kv_attention", "prompt_embeddings", "t5"})
    text_encoders = ("T5-XXL (v1.1 encoder, 77 tokens)",)
    prediction_types = ("epsilon",)
    model_lines = {"deepfloyd-if": ("DeepFloyd/IF-I-XL-v1.0 (stage I)",)}
    clean_caption: ClassVar[bool] = False

    def __init__(self, pipe: Any):
        from membench_eval.models.learned_variance import with_harness_scheduler

        super().__init__(pipe)
        with_harness_scheduler(pipe)
        use_contiguous_attention(pipe.unet)

    @classmethod
    def from_pretrained(cls, folder: Any, dtype: "torch.dtype", **components: Any) -> Any:
        """The saved stage-I pipeline without its safety checker and watermarker (scoring needs the
        raw pixels); the harness's DDPM subclass swapped in."""
        from diffusers import IFPipeline

        from membench_eval.errors import MembenchError

        try:
            pipe = IFPipeline.from_pretrained(
                str(folder), torch_dtype=dtype, **components, safety_checker=None, feature_extractor=None,
                watermarker=None, requires_safety_checker=False,
                low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None)
        except (ImportError, ValueError) as exc:
            if "sentencepiece" not in str(exc).lower() or importlib.util.find_spec("sentencepiece") is not None:
                raise
            raise MembenchError(f"{folder}: IF's T5 tokenizer needs sentencepiece "
                                "(pip install 'membench-eval[deepfloyd]')") from exc
        cls(pipe)
        return pipe

    @property
    def denoiser(self) -> Any:
        return self.pipe.unet

    # --- text -----------------------------------------------------------------------------------

    def encode_for_guidance(self, prompts: Sequence[str], device: "torch.device | None" = None,
                            guidance: bool = True) -> tuple[Conditioning, Conditioning | None]:
        cond, uncond = self.pipe.encode_prompt(
            list(prompts), do_classifier_free_guidance=guidance, num_images_per_prompt=1,
            device=self.device if device is None else device, clean_caption=self.clean_caption)
        return Conditioning(cond), (None if uncond is None else Conditioning(uncond))

    def encode(self, prompts: Sequence[str], device: "torch.device | None" = None) -> Conditioning:
        return self.encode_for_guidance(prompts, device, guidance=False)[0]

    def token_counts(self, prompts: Sequence[str]) -> list[int]:
        tok = self.pipe.tokenizer
        return [len(tok(p, truncation=True, max_length=TEXT_LENGTH).input_ids) for p in prompts]

    # --- sampling -------------------------------------------------------------------------------

    def predict(self, latents: "torch.Tensor", t: Any, cond: "Conditioning | torch.Tensor", *,
                timestep_cond: "torch.Tensor | None" = None) -> Prediction:
        """The UNet's 6 channels split as ``__call__`` splits them: noise, then the variance weight."""
        embeds = cond.embeds if isinstance(cond, Conditioning) else cond
        out = self.pipe.unet(latents, t, encoder_hidden_states=embeds, cross_attention_kwargs=None,
                             return_dict=False)[0]
        if out.shape[1] == 2 * latents.shape[1]:
            noise, variance = out.split(latents.shape[1], dim=1)
            return Prediction(noise, self.prediction_type, variance=variance)
        return Prediction(out, self.prediction_type)

    def step_kwargs(self, generators: Any, eta: float = 0.0) -> dict[str, Any]:
        return self.pipe.prepare_extra_step_kwargs(generators, eta)

    def step(self, scheduler: Any, prediction: "torch.Tensor", t: Any, latents: "torch.Tensor",
             variance: "torch.Tensor | None" = None, **step_kwargs: Any) -> "torch.Tensor":
        """``__call__``'s step: the guided noise with the (conditional rows') variance re-attached."""
        import torch

        if variance is not None and scheduler.config.variance_type in ("learned", "learned_range"):
            prediction = torch.cat([prediction, variance], dim=1)
        return scheduler.step(prediction, t, latents, **step_kwargs, return_dict=False)[0]

    def set_timesteps(self, scheduler: Any, num_inference_steps: int, device: "torch.device", height: int,
                      width: int) -> None:
        scheduler.set_timesteps(num_inference_steps, device=device)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)

    @property
    def vae_scale_factor(self) -> int:
        return 1  # pixel space

    @property
    def latent_channels(self) -> int:
        return int(self.pipe.unet.config.in_channels)

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        return (self.latent_channels, int(height), int(width))

    @property
    def native_size(self) -> int:
        return int(self.pipe.unet.config.sample_size)

    def initial_latents(self, generators: Sequence["torch.Generator"], height: int, width: int, *,
                        dtype: "torch.dtype", device: "torch.device") -> "torch.Tensor":
        """``prepare_intermediate_images``'s draw (before its ``init_noise_sigma`` scaling, 1 for DDPM)."""
        from diffusers.utils.torch_utils import randn_tensor

        shape = (len(generators), *self.latent_shape(height, width))
        return randn_tensor(shape, generator=list(generators), device=device, dtype=dtype)

    def decode(self, latents: "torch.Tensor", generators: Any = None) -> list["np.ndarray"]:
        """``__call__``'s post-processing (``output_type="np"``, no safety checker)."""
        image = (latents / 2 + 0.5).clamp(0, 1)
        return list(image.cpu().permute(0, 2, 3, 1).float().numpy())

    def decode_tensor(self, latents: "torch.Tensor") -> "torch.Tensor":
        """The pixels themselves (NCHW, about [-1, 1], differentiable)."""
        return latents

    # --- attention ------------------------------------------------------------------------------

    def attention_layers(self) -> list[AttentionLayer]:
        """Every UNet attention layer: each is added-KV (text keys and values first, then the image's)."""
        modules = dict(self.pipe.unet.named_modules())
        text = slice(0, TEXT_LENGTH)
        return [AttentionLayer(key, "added_kv", modules[key.rsplit(".", 1)[0]], text_tokens=text)
                for key in self.pipe.unet.attn_processors
                if getattr(modules[key.rsplit(".", 1)[0]], "added_kv_proj_dim", None) is not None]

    @contextlib.contextmanager
    def attention_processors(self, make: Callable[[AttentionLayer, Any], Any]) -> Iterator[None]:
        from membench_eval.models.sd3 import swapped_processors

        with swapped_processors(self.pipe.unet, self.attention_layers(), make):
            yield


def use_contiguous_attention(unet: Any) -> None:
    """Diffusers' default added-KV processors replaced by ``contiguous_added_kv()``'s (same numbers)."""
    from diffusers.models.attention_processor import AttnAddedKVProcessor2_0

    current = unet.attn_processors
    if any(type(proc) is AttnAddedKVProcessor2_0 for proc in current.values()):
        cls = contiguous_added_kv()
        unet.set_attn_processor({key: cls() if type(proc) is AttnAddedKVProcessor2_0 else proc
                                 for key, proc in current.items()})


@functools.cache
def contiguous_added_kv() -> type:
    """The processor class (made on first use: diffusers' attention module is heavy to import)."""
    from diffusers.models.attention_processor import AttnAddedKVProcessor2_0

    class ContiguousAddedKV(AttnAddedKVProcessor2_0):
        """diffusers' ``AttnAddedKVProcessor2_0`` with a contiguous output. Why: under forward-mode
        autodiff (``torch.func.jvp``: SAIL's sharpness detector) the output's tangent keeps the
        transposed layout, and the next ResNet's ``group_norm`` rejects it (PyTorch 2.13: "view size
        is not compatible"). The values are the processor's own."""

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return super().__call__(*args, **kwargs).contiguous()

    return ContiguousAddedKV
