"""Stable Diffusion 1.4's architecture with random weights: the real sizes, nothing downloaded.

The component configs are those of CompVis/stable-diffusion-v1-4 (``unet/``, ``vae/`` and
``text_encoder/config.json``). FLOPs, memory, shapes and dtypes do not depend on the weights, so
benchmarks and the real-architecture tests build this instead of loading 4 GB of checkpoints.

Fast init: the modules are built on the meta device and every parameter is then written once, on
its target device and in its target dtype, from one seeded uniform tile (PyTorch's default
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` scale for convolutions and linear layers, ones/zeros for
norms, std 0.02 for embeddings, as CLIP's init). Ordinary init would draw ~1.1e9 random numbers
(seconds to tens of seconds on one CPU thread) and, on CPU, allocate fp32 before any cast. The
weights are a function of the configs and ``seed`` alone (the tile is drawn on CPU, so they are
the same on every device), which is the pipeline's recorded identity: no weight hash is computed.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline

UNET: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

VAE: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "scaling_factor": 0.18215,
}

TEXT_ENCODER: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 1,
    "layer_norm_eps": 1e-05,
}

# Bump when the fill below changes: it is part of the pipeline's identity (store keys).
FILL_VERSION = "tile-uniform-v1"
# Odd length, so the tile's period never lines up with a power-of-two tensor dimension.
_TILE = (1 << 22) + 15


def build_sd14_pipeline(
    dtype: "torch.dtype | None" = None, device: "str | torch.device" = "cpu", *, image_size: int = 512, seed: int = 0,
) -> "StableDiffusionPipeline":
    """SD 1.4's UNet (860M), VAE (84M) and text encoder (123M) with random weights, DDIM, SDPA.

    ``dtype`` (default fp32) and ``device`` are where the weights are written. ``image_size`` is the
    size the pipeline treats as native (UNet ``sample_size`` = image_size / 8): the architecture
    does not depend on it, but methods that probe at the native size (NeMo's detection, the
    single-step gate of wen_gated) do, so reduced-resolution runs set it to their resolution."""
    import torch

    from membench_eval.models.tiny import SD_SCHEDULER_CONFIG

    if image_size < 8 or image_size % 8:
        raise ValueError(f"build_sd14_pipeline: image_size must be a positive multiple of 8, got {image_size}")
    dtype = dtype or torch.float32
    device = torch.device(device)
    unet_cfg = {**UNET, "sample_size": image_size // 8}
    vae_cfg = {**VAE, "sample_size": image_size}
    spec = {"unet": unet_cfg, "vae": vae_cfg, "text_encoder": TEXT_ENCODER, "fill": FILL_VERSION, "seed": seed}
    return assemble_random_sd_pipeline(unet_cfg, vae_cfg, TEXT_ENCODER, SD_SCHEDULER_CONFIG, seed=seed, device=device,
                                       dtype=dtype, spec=spec, tag="sd14-random")


def assemble_random_sd_pipeline(unet_cfg: dict[str, Any], vae_cfg: dict[str, Any], text_cfg: dict[str, Any],
                                scheduler_cfg: dict[str, Any], *, seed: int, device: "torch.device",
                                dtype: "torch.dtype", spec: dict[str, Any], tag: str) -> "StableDiffusionPipeline":
    """A ``StableDiffusionPipeline`` of these configs, built on the meta device and filled with the
    seeded random weights (``_materialise``), DDIM, SDPA; its identity is ``tag`` plus the sha256 of
    ``spec`` (the configs that define it). Shared by the SD 1.4 and SD 2 builders."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from membench_eval.models.identity import IDENTITY_ATTR
    from membench_eval.models.sd import use_sdpa
    from membench_eval.models.tokenizer import build_clip_tokenizer

    with torch.device("meta"):
        unet = UNet2DConditionModel(**unet_cfg)
        vae = AutoencoderKL(**vae_cfg)
        text_encoder = CLIPTextModel(CLIPTextConfig(**text_cfg))
    tile = _Tile(seed, device)
    for module in (text_encoder, unet, vae):
        _materialise(module, tile, device, dtype)
    pipe = StableDiffusionPipeline(
        vae=vae.eval(), unet=unet.eval(), text_encoder=text_encoder.eval(), tokenizer=build_clip_tokenizer(),
        scheduler=DDIMScheduler(**scheduler_cfg), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    use_sdpa(pipe)
    pipe.set_progress_bar_config(disable=True)
    # "in-memory": not a hub model (methods with per-model data, e.g. AMG's oracle, treat it as such).
    revision = f"{tag}:" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    setattr(pipe, IDENTITY_ATTR, {"model": "in-memory", "revision": revision})
    return pipe


class _Tile:
    """A seeded U(-1, 1) tile, read cyclically: parameter after parameter gets the next values."""

    def __init__(self, seed: int, device: "torch.device"):
        import torch

        generator = torch.Generator().manual_seed(seed)
        self.values = (torch.rand(_TILE, generator=generator) * 2 - 1).to(device)
        self.offset = 0

    def fill_(self, out: "torch.Tensor", scale: float) -> "torch.Tensor":
        """Write the next ``out.numel()`` tile values times ``scale`` into ``out`` (cast on copy)."""
        flat = out.view(-1)
        done = 0
        while done < flat.numel():
            start = self.offset % _TILE
            n = min(flat.numel() - done, _TILE - start)
            flat[done : done + n].copy_(self.values[start : start + n])
            done += n
            self.offset += n
        return out.mul_(scale)


def _materialise(module: "torch.nn.Module", tile: _Tile, device: "torch.device", dtype: "torch.dtype") -> None:
    """Replace every meta parameter by a filled one on ``device``; rebuild the known buffers."""
    import torch
    from torch import nn

    for owner_name, owner in module.named_modules():
        for name, param in list(owner.named_parameters(recurse=False)):
            scale = _scale(owner, name, param)
            if scale is None:  # norm layers: weight 1, bias 0
                value = torch.full(param.shape, 1.0 if name == "weight" else 0.0, device=device, dtype=dtype)
            else:
                value = tile.fill_(torch.empty(param.shape, device=device, dtype=dtype), scale)
            setattr(owner, name, nn.Parameter(value, requires_grad=param.requires_grad))
        for name, buf in list(owner.named_buffers(recurse=False)):
            if name != "position_ids":
                raise RuntimeError(f"build_sd14_pipeline: no rule to fill buffer {owner_name}.{name} of "
                                   f"{type(module).__name__} (a library upgrade added it?)")
            positions = torch.arange(buf.shape[-1], device=device, dtype=buf.dtype).expand(buf.shape)
            owner.register_buffer(name, positions, persistent=False)


def _scale(owner: "torch.nn.Module", name: str, param: "torch.Tensor") -> float | None:
    """Half-width of the uniform draw for ``param``, or None for a norm layer's ones/zeros."""
    from torch import nn

    if isinstance(owner, (nn.GroupNorm, nn.LayerNorm)):
        return None
    if isinstance(owner, nn.Embedding):
        return 0.02 * math.sqrt(3.0)  # std 0.02
    if isinstance(owner, (nn.Linear, nn.Conv2d)):
        weight = owner.weight
        fan_in = weight.shape[1] * math.prod(weight.shape[2:])
        return 1.0 / math.sqrt(fan_in)  # nn.Linear / nn.Conv2d default init, weight and bias
    raise RuntimeError(f"build_sd14_pipeline: no fill rule for {type(owner).__name__}.{name} {tuple(param.shape)}")
