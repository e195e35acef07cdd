"""Stable Diffusion 3 / 3.5 (``StableDiffusion3Pipeline``): MM-DiT joint attention, flow matching,
CLIP-L + CLIP-G (+ optional T5-XXL) text encoders, real classifier-free guidance.

Every operation is ``StableDiffusion3Pipeline.__call__``'s (diffusers 0.42, text-to-image path, no
skip-layer guidance, no IP-adapter): its ``encode_prompt`` (CLIP-L and CLIP-G penultimate states
side by side, zero-padded to the joint width, then T5's tokens, or 256 zero tokens without T5; the
pooled vector is both CLIPs' projected end tokens), its ``prepare_latents`` draw, the transformer
call with ``timestep = t.expand(rows)``, the scheduler's Euler step and the decode
``latents / scaling_factor + shift_factor``. So the engine's loop over this family gives
``__call__``'s pixels (``tests/models/test_transformer_families.py``).

The hooks' embedding tensor is the token sequence with the pooled vector appended as trailing
pseudo-tokens (``models.pooled``); ``Conditioning.pooled`` holds the pooled vector by name.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from membench_eval.models.family import AttentionLayer, Conditioning, ModelFamily, Prediction, register_family

if TYPE_CHECKING:
    import numpy as np
    import torch


@register_family
class StableDiffusion3Family(ModelFamily):
    """SD3 / SD3.5 over a ``StableDiffusion3Pipeline`` (``text_encoder_3`` may be None)."""

    name = "sd3"
    pipeline_classes = ("StableDiffusion3Pipeline",)
    # ``t5`` is added per instance when a T5 encoder is loaded (``offers_here``).
    offers: ClassVar[frozenset[str]] = frozenset(
        {"cfg", "joint_attention", "clip_bos_token", "prompt_embeddings", "pooled_embeddings"})
    text_encoders = ("CLIP ViT-L/14 (tokens + pooled)", "OpenCLIP ViT-bigG/14 (tokens + pooled)", "T5-XXL (optional)")
    prediction_types = ("flow",)
    model_lines = {"sd3": ("stabilityai/stable-diffusion-3-medium-diffusers", "stabilityai/stable-diffusion-3.5-large")}
    # ``__call__``'s default T5 length; the zero block stands in for it without T5.
    max_sequence_length: ClassVar[int] = 256

    def __init__(self, pipe: Any):
        from membench_eval.models.flow import with_harness_scheduler

        super().__init__(pipe)
        with_harness_scheduler(pipe)

    @property
    def offers_here(self) -> frozenset[str]:
        """What this pipeline offers: the class's set, plus ``t5`` when its T5 encoder is loaded."""
        return self.offers | ({"t5"} if self.pipe.text_encoder_3 is not None else frozenset())

    @classmethod
    def from_pretrained(cls, folder: Any, dtype: "torch.dtype") -> Any:
        """The saved pipeline as it is: T5 included when the folder has it; a folder saved without
        it (``text_encoder_3`` null or absent in ``model_index.json``) loads with None there."""
        import json
        from pathlib import Path

        from diffusers import StableDiffusion3Pipeline

        index = Path(folder) / "model_index.json"
        saved = json.loads(index.read_text(encoding="utf-8")) if index.is_file() else {}
        absent = {name: None for name in ("text_encoder_3", "tokenizer_3")
                  if index.is_file() and (saved.get(name) or [None])[0] is None}
        pipe = StableDiffusion3Pipeline.from_pretrained(
            str(folder), torch_dtype=dtype, low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None,
            **absent)
        cls(pipe)  # swaps in the harness's scheduler subclass
        return pipe

    @property
    def denoiser(self) -> Any:
        return self.pipe.transformer

    @property
    def prediction_type(self) -> Any:
        return "flow"

    @property
    def pooled_dim(self) -> int:
        return int(self.pipe.transformer.config.pooled_projection_dim)

    # --- text -----------------------------------------------------------------------------------

    def _conditioning(self, sequence: "torch.Tensor", pooled: "torch.Tensor") -> Conditioning:
        from membench_eval.models.pooled import pack

        return Conditioning(pack(sequence, pooled), pooled=pooled)

    def _as_conditioning(self, cond: "Conditioning | torch.Tensor") -> Conditioning:  # type: ignore[override]
        """A packed tensor (or a Conditioning, whose packed ``embeds`` are the truth) as a Conditioning."""
        from membench_eval.models.pooled import unpack

        embeds = cond.embeds if isinstance(cond, Conditioning) else cond
        return Conditioning(embeds, pooled=unpack(embeds, self.pooled_dim)[1])

    def encode_for_guidance(self, prompts: Sequence[str], device: "torch.device | None" = None,
                            guidance: bool = True) -> tuple[Conditioning, Conditioning | None]:
        seq, neg_seq, pooled, neg_pooled = self.pipe.encode_prompt(
            prompt=list(prompts), prompt_2=None, prompt_3=None, device=self.device if device is None else device,
            num_images_per_prompt=1, do_classifier_free_guidance=guidance,
            max_sequence_length=self.max_sequence_length,
        )
        uncond = self._conditioning(neg_seq, neg_pooled) if guidance else None
        return self._conditioning(seq, pooled), uncond

    def encode(self, prompts: Sequence[str], device: "torch.device | None" = None) -> Conditioning:
        return self.encode_for_guidance(prompts, device, guidance=False)[0]

    def token_counts(self, prompts: Sequence[str]) -> list[int]:
        tok = self.pipe.tokenizer
        return [len(tok(p, truncation=True, max_length=tok.model_max_length).input_ids) for p in prompts]

    @property
    def text_length(self) -> int:
        """Text tokens in the joint sequence: CLIP's 77 plus T5's (or the zero block's) length."""
        return int(self.pipe.tokenizer_max_length) + self.max_sequence_length

    # --- sampling -------------------------------------------------------------------------------

    def predict(self, latents: "torch.Tensor", t: Any, cond: "Conditioning | torch.Tensor", *,
                timestep_cond: "torch.Tensor | None" = None) -> Prediction:
        import torch

        from membench_eval.models.pooled import unpack

        embeds = cond.embeds if isinstance(cond, Conditioning) else cond
        sequence, pooled = unpack(embeds, self.pooled_dim)
        t = torch.as_tensor(t, device=latents.device)
        sample = self.pipe.transformer(
            hidden_states=latents, timestep=t.expand(latents.shape[0]), encoder_hidden_states=sequence,
            pooled_projections=pooled, joint_attention_kwargs=None, return_dict=False,
        )[0]
        return Prediction(sample, "flow")

    def step_kwargs(self, generators: Any, eta: float = 0.0) -> dict[str, Any]:
        return {}  # ``__call__`` steps without a generator (the Euler step is deterministic)

    def set_timesteps(self, scheduler: Any, num_inference_steps: int, device: Any, height: int, width: int) -> None:
        """``__call__``'s schedule: shifted by ``mu`` only where the config asks for dynamic shifting (SD3.5)."""
        from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift, retrieve_timesteps

        kwargs = {}
        if scheduler.config.get("use_dynamic_shifting", None):
            patch = self.pipe.transformer.config.patch_size
            _, h, w = self.latent_shape(height, width)
            c = scheduler.config
            kwargs["mu"] = calculate_shift((h // patch) * (w // patch), c.get("base_image_seq_len", 256),
                                           c.get("max_image_seq_len", 4096), c.get("base_shift", 0.5),
                                           c.get("max_shift", 1.16))
        retrieve_timesteps(scheduler, num_inference_steps, device, **kwargs)

    @property
    def vae_scale_factor(self) -> int:
        return int(self.pipe.vae_scale_factor)

    @property
    def latent_channels(self) -> int:
        return int(self.pipe.transformer.config.in_channels)

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        return (self.latent_channels, int(height) // self.vae_scale_factor, int(width) // self.vae_scale_factor)

    @property
    def native_size(self) -> int:
        return int(self.pipe.transformer.config.sample_size) * self.vae_scale_factor

    def initial_latents(self, generators: Sequence["torch.Generator"], height: int, width: int, *,
                        dtype: "torch.dtype", device: "torch.device") -> "torch.Tensor":
        """``prepare_latents``'s draw (flow matching starts from the unscaled noise)."""
        return self.pipe.prepare_latents(len(generators), self.latent_channels, height, width, dtype, device,
                                         list(generators))

    def decode(self, latents: "torch.Tensor", generators: Any = None) -> list["np.ndarray"]:
        vae = self.pipe.vae
        image = vae.decode(latents / vae.config.scaling_factor + vae.config.shift_factor, return_dict=False)[0]
        return list(self.pipe.image_processor.postprocess(image, output_type="np"))

    def decode_tensor(self, latents: "torch.Tensor") -> "torch.Tensor":
        vae = self.pipe.vae
        z = latents / vae.config.scaling_factor + (vae.config.shift_factor or 0.0)
        return vae.decode(z.to(vae.dtype), return_dict=False)[0]

    # --- attention ------------------------------------------------------------------------------

    def attention_layers(self) -> list[AttentionLayer]:
        """Each joint block's ``attn``: image queries and text queries attend over
        ``[image tokens, text tokens]`` (diffusers' ``JointAttnProcessor2_0`` concatenates in
        that order), so the text is the last ``text_length`` tokens of the joint sequence."""
        modules = dict(self.pipe.transformer.named_modules())
        text = slice(-self.text_length, None)
        return [AttentionLayer(key, "joint", modules[key.rsplit(".", 1)[0]], text_tokens=text)
                for key in self.pipe.transformer.attn_processors
                if key.startswith("transformer_blocks.") and key.split(".")[-2] == "attn"]

    @contextlib.contextmanager
    def attention_processors(self, make: Callable[[AttentionLayer, Any], Any]) -> Iterator[None]:
        with swapped_processors(self.pipe.transformer, self.attention_layers(), make):
            yield


@contextlib.contextmanager
def swapped_processors(denoiser: Any, layers: Sequence[AttentionLayer],
                       make: Callable[[AttentionLayer, Any], Any]) -> Iterator[None]:
    """``make(layer, current)`` installed on ``layers`` of ``denoiser`` (None keeps the current
    processor); all restored on exit."""
    original = dict(denoiser.attn_processors)
    by_name = {layer.name: layer for layer in layers}
    installed = {}
    for key, proc in original.items():
        new = make(by_name[key], proc) if key in by_name else None
        installed[key] = proc if new is None else new
    denoiser.set_attn_processor(installed)
    try:
        yield
    finally:
        denoiser.set_attn_processor(dict(original))
