"""FLUX.1 dev / schnell (``FluxPipeline``): MM-DiT (double- then single-stream blocks), flow
matching on an image-size-shifted schedule, CLIP-L (pooled vector only) + T5-XXL (token sequence).

dev is guidance-distilled: the guidance scale is a denoiser input (``timestep_condition``), there
is no unconditional batch, and classifier-free guidance exists only as ``__call__``'s "true CFG"
(a second pass on a negative prompt; ``guidance_vector`` makes that pass). schnell is
timestep-distilled: no guidance input, no unconditional batch either.

Engine-visible latents are NCHW (as every other family's); the 2x2 patch packing and the
``img_ids`` / ``txt_ids`` positions stay inside ``predict`` (diffusers' own ``_pack_latents`` /
``_unpack_latents`` / ``_prepare_latent_image_ids``: reshapes only, so the Euler step, elementwise,
gives ``__call__``'s numbers). The hooks' embedding tensor is T5's sequence with the pooled CLIP
vector as a trailing pseudo-token (``models.pooled``).
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
class FluxFamily(ModelFamily):
    """FLUX.1 over a ``FluxPipeline``."""

    name = "flux"
    pipeline_classes = ("FluxPipeline",)
    # dev; schnell (no guidance input) offers the same minus ``true_cfg`` being distillation-aware.
    offers: ClassVar[frozenset[str]] = frozenset(
        {"true_cfg", "joint_attention", "prompt_embeddings", "pooled_embeddings", "t5"})
    text_encoders = ("CLIP ViT-L/14 (pooled only)", "T5-XXL (tokens)")
    prediction_types = ("flow",)
    model_lines = {"flux": ("black-forest-labs/FLUX.1-dev", "black-forest-labs/FLUX.1-schnell")}
    # ``FluxPipeline.__call__``'s defaults: the guidance input without an explicit one, T5 length.
    default_guidance: ClassVar[float] = 3.5
    max_sequence_length: ClassVar[int] = 512

    def __init__(self, pipe: Any):
        from membench_eval.models.flow import with_harness_scheduler

        super().__init__(pipe)
        with_harness_scheduler(pipe)

    @classmethod
    def from_pretrained(cls, folder: Any, dtype: "torch.dtype") -> Any:
        from diffusers import FluxPipeline

        pipe = FluxPipeline.from_pretrained(
            str(folder), torch_dtype=dtype, low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None)
        cls(pipe)
        return pipe

    @property
    def denoiser(self) -> Any:
        return self.pipe.transformer

    @property
    def prediction_type(self) -> Any:
        return "flow"

    @property
    def tokenizer(self) -> Any:
        return self.pipe.tokenizer_2  # T5: the tokens the sequence is made of

    @property
    def pooled_dim(self) -> int:
        return int(self.pipe.transformer.config.pooled_projection_dim)

    @property
    def guidance_embedded(self) -> bool:
        """True for dev and schnell alike: ``__call__`` never runs an unconditional batch (dev
        takes the scale as an input, schnell samples without guidance)."""
        return True

    # --- text -----------------------------------------------------------------------------------

    def encode(self, prompts: Sequence[str], device: "torch.device | None" = None) -> Conditioning:
        from membench_eval.models.pooled import pack

        seq, pooled, _ = self.pipe.encode_prompt(
            prompt=list(prompts), prompt_2=None, device=self.device if device is None else device,
            num_images_per_prompt=1, max_sequence_length=self.max_sequence_length)
        return Conditioning(pack(seq, pooled), pooled=pooled)

    def encode_for_guidance(self, prompts: Sequence[str], device: "torch.device | None" = None,
                            guidance: bool = True) -> tuple[Conditioning, Conditioning | None]:
        """The negative (empty) prompt's conditioning only with ``guidance`` (true CFG)."""
        cond = self.encode(prompts, device)
        return cond, (self.encode([""] * len(prompts), device) if guidance else None)

    def _as_conditioning(self, cond: "Conditioning | torch.Tensor") -> Conditioning:  # type: ignore[override]
        from membench_eval.models.pooled import unpack

        embeds = cond.embeds if isinstance(cond, Conditioning) else cond
        return Conditioning(embeds, pooled=unpack(embeds, self.pooled_dim)[1])

    def token_counts(self, prompts: Sequence[str]) -> list[int]:
        """T5 tokens including the end token (T5 has no start token)."""
        tok = self.pipe.tokenizer_2
        return [len(tok(p, truncation=True, max_length=self.max_sequence_length).input_ids) for p in prompts]

    # --- sampling -------------------------------------------------------------------------------

    def timestep_condition(self, guidance_scale: float, rows: int, device: "torch.device",
                           dtype: "torch.dtype") -> "torch.Tensor | None":
        """dev's guidance input (float32, as ``__call__``), None for schnell."""
        import torch

        if not self.pipe.transformer.config.guidance_embeds:
            return None
        return torch.full([1], guidance_scale, device=device, dtype=torch.float32).expand(rows)

    def predict(self, latents: "torch.Tensor", t: Any, cond: "Conditioning | torch.Tensor", *,
                timestep_cond: "torch.Tensor | None" = None) -> Prediction:
        """One transformer call on NCHW ``latents`` (packed and unpacked here)."""
        import torch

        from membench_eval.models.pooled import unpack

        pipe = self.pipe
        embeds = cond.embeds if isinstance(cond, Conditioning) else cond
        sequence, pooled = unpack(embeds, self.pooled_dim)
        rows, channels, h, w = latents.shape
        packed = pipe._pack_latents(latents, rows, channels, h, w)
        img_ids = pipe._prepare_latent_image_ids(rows, h // 2, w // 2, latents.device, latents.dtype)
        txt_ids = torch.zeros(sequence.shape[1], 3, device=latents.device, dtype=sequence.dtype)
        guidance = None
        if pipe.transformer.config.guidance_embeds:
            if timestep_cond is None:
                timestep_cond = self.timestep_condition(self.default_guidance, rows, latents.device, latents.dtype)
            guidance = timestep_cond[:1].expand(rows)
        timestep = torch.as_tensor(t, device=latents.device).expand(rows).to(latents.dtype)
        out = pipe.transformer(
            hidden_states=packed, timestep=timestep / 1000, guidance=guidance, pooled_projections=pooled,
            encoder_hidden_states=sequence, txt_ids=txt_ids, img_ids=img_ids, joint_attention_kwargs=None,
            return_dict=False,
        )[0]
        scale = self.vae_scale_factor
        return Prediction(pipe._unpack_latents(out, h * scale, w * scale, scale), "flow")

    def step_kwargs(self, generators: Any, eta: float = 0.0) -> dict[str, Any]:
        return {}

    def set_timesteps(self, scheduler: Any, num_inference_steps: int, device: Any, height: int, width: int) -> None:
        """``__call__``'s schedule: sigmas 1 .. 1/n shifted by ``mu`` of the packed sequence length."""
        import numpy as np
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps

        c = scheduler.config
        sigmas = None if c.get("use_flow_sigmas", False) else np.linspace(1.0, 1 / num_inference_steps,
                                                                          num_inference_steps)
        _, h, w = self.latent_shape(height, width)
        mu = calculate_shift((h // 2) * (w // 2), c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096),
                             c.get("base_shift", 0.5), c.get("max_shift", 1.15))
        retrieve_timesteps(scheduler, num_inference_steps, device, sigmas=sigmas, mu=mu)
        scheduler.set_begin_index(0)

    @property
    def vae_scale_factor(self) -> int:
        return int(self.pipe.vae_scale_factor)

    @property
    def latent_channels(self) -> int:
        return int(self.pipe.transformer.config.in_channels) // 4

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """As ``prepare_latents``: a multiple of 2 latent pixels (the 2x2 patches)."""
        scale = self.vae_scale_factor * 2
        return (self.latent_channels, 2 * (int(height) // scale), 2 * (int(width) // scale))

    @property
    def native_size(self) -> int:
        return int(self.pipe.default_sample_size) * self.vae_scale_factor

    def initial_latents(self, generators: Sequence["torch.Generator"], height: int, width: int, *,
                        dtype: "torch.dtype", device: "torch.device") -> "torch.Tensor":
        """``prepare_latents``'s draw, unpacked to NCHW."""
        packed, _ = self.pipe.prepare_latents(len(generators), self.latent_channels, height, width, dtype, device,
                                              list(generators))
        return self.pipe._unpack_latents(packed, height, width, self.vae_scale_factor)

    def decode(self, latents: "torch.Tensor", generators: Any = None) -> list["np.ndarray"]:
        image = self.decode_tensor(latents)
        return list(self.pipe.image_processor.postprocess(image, output_type="np"))

    def decode_tensor(self, latents: "torch.Tensor") -> "torch.Tensor":
        vae = self.pipe.vae
        z = latents / vae.config.scaling_factor + vae.config.shift_factor
        return vae.decode(z.to(vae.dtype), return_dict=False)[0]

    # --- attention ------------------------------------------------------------------------------

    @property
    def text_length(self) -> int:
        return self.max_sequence_length

    def attention_layers(self) -> list[AttentionLayer]:
        """Every block's ``attn`` (double-stream: image and text projected apart; single-stream:
        one projection): both attend over ``[text tokens, image tokens]`` (diffusers'
        ``FluxAttnProcessor`` puts the text first), so the text is the first ``text_length``."""
        modules = dict(self.pipe.transformer.named_modules())
        text = slice(0, self.text_length)
        return [AttentionLayer(key, "joint", modules[key.rsplit(".", 1)[0]], text_tokens=text)
                for key in self.pipe.transformer.attn_processors if key.split(".")[-2] == "attn"]

    @contextlib.contextmanager
    def attention_processors(self, make: Callable[[AttentionLayer, Any], Any]) -> Iterator[None]:
        from membench_eval.models.sd3 import swapped_processors

        with swapped_processors(self.pipe.transformer, self.attention_layers(), make):
            yield
