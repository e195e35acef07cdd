"""DeepFloyd IF-I-XL's architecture with random weights (``models.sd14``'s fill), nothing downloaded.

The UNet config is IF-I-XL-v1.0's ``unet/config.json`` (as saved from ``DeepFloyd/IF-I-XL-v1.0``:
model channels 704 x (1, 2, 3, 4), 3 resnets per level, added-KV attention at 32/16/8 px with
64-d heads, T5's 4096-d tokens projected to 2816 (``encoder_hid_proj``), attention pooling with 64
heads in the time embedding, 6 output channels; it matches the original ``config.yml``
``model_channels: 704, encoder_channels: 2816, att_pool_heads: 64``). Built here it has
4.305B parameters, the model card's 4.3B. Keys the saved file leaves at diffusers' defaults
(``flip_sin_to_cos``, ``freq_shift``, norm groups and eps, ``upcast_attention``) are not repeated.
The scheduler is the one diffusers' ``scripts/convert_if.py`` writes for stage I (DDPM,
``squaredcos_cap_v2``, learned-range variance, dynamic thresholding 0.95 at 1.5). The text encoder
is T5 v1.1 XXL's encoder (``transformers_random.T5_XXL``: 4096 wide, 64 heads, 24 layers).

``depth="full"`` is the true model (UNet 4.3B + T5 4.7B: GPU only, ``bench/gpu_families.py``).
``depth="reduced"`` (CPU tests) keeps the text path at full width (T5's 4096-d tokens projected to
2816, the attention pooling, every added-KV layer's 2816-d text keys and values, 64-d heads), the
learned variance and the first two levels at their true widths (704 / 1408 channels; 22 heads in
the 1408-wide added-KV attention), with fewer blocks: 1 resnet per level instead of 3 and no third
(2112) or fourth (2816) level: a third level at one resnet makes a 1.20B UNet whose every method,
backward passes included, cost ~300 CPU-seconds here, more than the CI budget holds; two keep every
kind of layer IF has (pixel-space resnets, added-KV attention down, mid and up) in a UNet of
0.50B with 4 of the 22 added-KV attention layers; and 1 of T5's 24 layers. No T5 vocabulary is
available offline: SD's CLIP tokenizer stands in (as for FLUX's builder), so the embedding table has
CLIP's 49408 rows instead of T5's 32128.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import TYPE_CHECKING, Any, Literal

from membench_eval.models.sd14 import FILL_VERSION
from membench_eval.models.transformers_random import T5_XXL

if TYPE_CHECKING:
    import torch

UNET: dict[str, Any] = {
    "act_fn": "gelu", "addition_embed_type": "text", "addition_embed_type_num_heads": 64, "attention_head_dim": 64,
    "block_out_channels": [704, 1408, 2112, 2816], "cross_attention_dim": 2816, "cross_attention_norm": "group_norm",
    "down_block_types": ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D",
                         "SimpleCrossAttnDownBlock2D"],
    "encoder_hid_dim": 4096, "encoder_hid_dim_type": "text_proj", "in_channels": 3, "layers_per_block": 3,
    "mid_block_type": "UNetMidBlock2DSimpleCrossAttn", "out_channels": 6, "resnet_time_scale_shift": "scale_shift",
    "sample_size": 64,
    "up_block_types": ["SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D",
                       "ResnetUpsampleBlock2D"],
}
SCHEDULER: dict[str, Any] = {
    "variance_type": "learned_range", "beta_schedule": "squaredcos_cap_v2", "prediction_type": "epsilon",
    "thresholding": True, "dynamic_thresholding_ratio": 0.95, "sample_max_value": 1.5,
}
# CPU tests: the first two levels (704 / 1408 wide; 22 heads at 1408) with 1 resnet each.
REDUCED: dict[str, dict[str, Any]] = {
    "unet": {"block_out_channels": UNET["block_out_channels"][:2], "down_block_types": UNET["down_block_types"][:2],
             "up_block_types": UNET["up_block_types"][2:], "layers_per_block": 1},
    "text_encoder": {"num_layers": 1},
}


def build_if_pipeline(dtype: "torch.dtype | None" = None, device: "str | torch.device" = "cpu", *,
                      image_size: int = 64, depth: Literal["full", "reduced"] = "reduced", seed: int = 0) -> Any:
    """An ``IFPipeline`` (stage I) of IF-I-XL's configs with seeded random weights, no safety
    checker or watermarker. ``image_size`` is the size treated as native (UNet ``sample_size``; a
    multiple of 8: three downsamplings)."""
    if image_size < 8 or image_size % 8:
        raise ValueError(f"build_if_pipeline: image_size must be a positive multiple of 8, got {image_size}")
    cut = REDUCED if depth == "reduced" else {"unet": {}, "text_encoder": {}}
    return _assemble({**UNET, **cut["unet"], "sample_size": image_size}, {**T5_XXL, **cut["text_encoder"]}, seed=seed,
                     device=device, dtype=dtype, tag="if-i-xl-random")


def _assemble(unet_cfg: dict[str, Any], t5_cfg: dict[str, Any], *, seed: int, device: Any, dtype: Any, tag: str) -> Any:
    """The pipeline of these configs, filled from the seeded tile; identity ``tag`` + sha256 of the configs."""
    import torch
    from diffusers import IFPipeline, UNet2DConditionModel
    from transformers import T5Config, T5EncoderModel

    from membench_eval.models.family import family_for
    from membench_eval.models.identity import IDENTITY_ATTR
    from membench_eval.models.learned_variance import DDPMScheduler
    from membench_eval.models.sd14 import _Tile
    from membench_eval.models.tokenizer import build_clip_tokenizer

    dtype, device = dtype or torch.float32, torch.device(device)
    with torch.device("meta"):
        unet = UNet2DConditionModel(**unet_cfg)
        text_encoder = T5EncoderModel(T5Config(**t5_cfg))
    tile = _Tile(seed, device)
    for module in (text_encoder, unet):
        _materialise(module, tile, device, dtype)
    pipe = IFPipeline(tokenizer=build_clip_tokenizer(), text_encoder=text_encoder.eval(), unet=unet.eval(),
                      scheduler=DDPMScheduler(**SCHEDULER), safety_checker=None, feature_extractor=None,
                      watermarker=None, requires_safety_checker=False)
    family_for(pipe)  # the family swaps in the harness's DDPM subclass under diffusers' name
    pipe.set_progress_bar_config(disable=True)
    spec = json.dumps({"unet": unet_cfg, "text_encoder": t5_cfg, "scheduler": SCHEDULER, "fill": FILL_VERSION,
                       "seed": seed}, sort_keys=True)
    revision = f"{tag}:" + hashlib.sha256(spec.encode()).hexdigest()
    setattr(pipe, IDENTITY_ATTR, {"model": "in-memory", "revision": revision})
    return pipe


# Narrow widths for plumbing tests (diffusers' own IF pipeline tests' sizes): the same classes and
# paths (T5 -> text projection -> added-KV attention, attention pooling, 6 output channels).
TINY_UNET: dict[str, Any] = {
    **UNET, "block_out_channels": [32, 64], "layers_per_block": 1, "attention_head_dim": 8, "cross_attention_dim": 32,
    "encoder_hid_dim": 32, "addition_embed_type_num_heads": 2, "sample_size": 32,
    "down_block_types": ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"],
    "up_block_types": ["SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
}
TINY_T5: dict[str, Any] = {**T5_XXL, "d_model": 32, "d_ff": 37, "d_kv": 8, "num_heads": 4, "num_layers": 2}


def build_tiny_if_pipeline(seed: int = 0) -> Any:
    """An IF stage-I pipeline of narrow widths (UNet 32 / 64 channels, 8-d heads, a 2-layer 32-wide
    T5), IF-I-XL's scheduler, the same seeded fill: cheap enough to run every bundled method."""
    return _assemble(TINY_UNET, TINY_T5, seed=seed, device="cpu", dtype=None, tag="if-tiny-random")


def _materialise(module: "torch.nn.Module", tile: Any, device: "torch.device", dtype: "torch.dtype") -> None:
    """``models.sd14``'s fill, plus T5's RMS norms (ones) and the attention pooling's positional
    embedding (std 1/sqrt(width), as diffusers' init draws it). Tied parameters (T5's input
    embedding, ``shared`` and ``encoder.embed_tokens``) stay one tensor. No parameter requires a
    gradient: methods differentiate through the model, never for its weights, and weight
    gradients would double the memory of a CPU test."""
    import torch
    from torch import nn

    from membench_eval.models.sd14 import _scale

    done: dict[int, nn.Parameter] = {}
    for owner_name, owner in module.named_modules():
        for name, param in list(owner.named_parameters(recurse=False)):
            if id(param) in done:
                setattr(owner, name, done[id(param)])
                continue
            if "LayerNorm" in type(owner).__name__:
                scale = None
            elif name == "positional_embedding":
                scale = math.sqrt(3.0 / param.shape[-1])
            else:
                scale = _scale(owner, name, param)
            if scale is None:
                value = torch.full(param.shape, 1.0 if name == "weight" else 0.0, device=device, dtype=dtype)
            else:
                value = tile.fill_(torch.empty(param.shape, device=device, dtype=dtype), scale)
            done[id(param)] = nn.Parameter(value, requires_grad=False)
            setattr(owner, name, done[id(param)])
        for name, _ in owner.named_buffers(recurse=False):
            raise RuntimeError(f"build_if_pipeline: no rule to fill buffer {owner_name}.{name} "
                               f"of {type(owner).__name__}")
