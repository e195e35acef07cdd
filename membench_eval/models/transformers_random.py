"""SD3-medium's and FLUX.1-dev's architectures with random weights: true widths, nothing downloaded.

The component configs are those of stabilityai/stable-diffusion-3-medium-diffusers and
black-forest-labs/FLUX.1-dev (``transformer/``, ``vae/``, ``text_encoder*/config.json``,
``scheduler/``). Depth is a parameter: the full models (SD3's 24 joint blocks, 2.0B; FLUX's 19
double + 38 single blocks, 11.9B; T5-XXL's 24 layers, 4.7B) do not fit a CPU test, so tests keep
every width and head count and fewer blocks, and ``bench/gpu_check.py`` builds the full depth.
SD3 runs without T5 (``text_encoder_3=None``, which SD3 supports); FLUX needs its T5, built at
T5-XXL's widths with fewer layers, SD's CLIP tokenizer standing in for T5's (no T5 vocabulary
offline; the embedding table has CLIP's 49408 rows instead of T5's 32128).

Weights are written as ``models/sd14.py`` writes them (meta device, then one seeded tile), so a
pipeline's identity is its configs and seed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

SD3_TRANSFORMER: dict[str, Any] = {
    "attention_head_dim": 64, "caption_projection_dim": 1536, "in_channels": 16, "joint_attention_dim": 4096,
    "num_attention_heads": 24, "num_layers": 24, "out_channels": 16, "patch_size": 2,
    "pooled_projection_dim": 2048, "pos_embed_max_size": 192, "sample_size": 128,
}
FLUX_TRANSFORMER: dict[str, Any] = {
    "attention_head_dim": 128, "guidance_embeds": True, "in_channels": 64, "joint_attention_dim": 4096,
    "num_attention_heads": 24, "num_layers": 19, "num_single_layers": 38, "patch_size": 1,
    "pooled_projection_dim": 768, "axes_dims_rope": [16, 56, 56],
}
_VAE16: dict[str, Any] = {
    "act_fn": "silu", "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "in_channels": 3, "out_channels": 3, "latent_channels": 16,
    "layers_per_block": 2, "norm_num_groups": 32, "sample_size": 1024, "use_quant_conv": False,
    "use_post_quant_conv": False,
}
SD3_VAE = {**_VAE16, "scaling_factor": 1.5305, "shift_factor": 0.0609}
FLUX_VAE = {**_VAE16, "scaling_factor": 0.3611, "shift_factor": 0.1159}
CLIP_L: dict[str, Any] = {
    "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "projection_dim": 768,
    "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "layer_norm_eps": 1e-05,
}
CLIP_G: dict[str, Any] = {
    **CLIP_L, "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 20,
    "hidden_act": "gelu", "projection_dim": 1280,
}
T5_XXL: dict[str, Any] = {
    "vocab_size": 49408, "d_model": 4096, "d_ff": 10240, "d_kv": 64, "num_heads": 64, "num_layers": 24,
    "feed_forward_proj": "gated-gelu", "relative_attention_num_buckets": 32, "layer_norm_epsilon": 1e-06,
}
SD3_SCHEDULER: dict[str, Any] = {"num_train_timesteps": 1000, "shift": 3.0}
FLUX_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15,
    "base_image_seq_len": 256, "max_image_seq_len": 4096,
}
FILL_VERSION = "tile-uniform-v1"


def build_sd3_pipeline(dtype: Any = None, device: Any = "cpu", *, image_size: int = 1024, num_layers: int = 24,
                       clip_g_layers: int = 32, seed: int = 0) -> Any:
    """SD3-medium (``num_layers`` of its 24 joint blocks; the last one is always the
    context-pre-only block), CLIP-L at full size, CLIP-G at full width with ``clip_g_layers`` of
    its 32 layers, no T5."""
    import torch
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from diffusers import FlowMatchEulerDiscreteScheduler

    from membench_eval.models.tokenizer import build_clip_tokenizer

    clip_g = {**CLIP_G, "num_hidden_layers": clip_g_layers}
    configs = {"transformer": {**SD3_TRANSFORMER, "num_layers": num_layers, "sample_size": image_size // 8},
               "vae": {**SD3_VAE, "sample_size": image_size}, "text_encoder": CLIP_L, "text_encoder_2": clip_g}
    with torch.device("meta"):
        parts = {"transformer": SD3Transformer2DModel(**configs["transformer"]),
                 "vae": _autoencoder(configs["vae"]),
                 "text_encoder": CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_L)),
                 "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig(**clip_g))}
    _fill(parts, seed, device, dtype or torch.float32)
    pipe = StableDiffusion3Pipeline(
        **parts, tokenizer=build_clip_tokenizer(), tokenizer_2=build_clip_tokenizer(), text_encoder_3=None,
        tokenizer_3=None, scheduler=FlowMatchEulerDiscreteScheduler(**SD3_SCHEDULER))
    return _finish(pipe, "sd3-medium-random", configs, seed)


def build_flux_pipeline(dtype: Any = None, device: Any = "cpu", *, image_size: int = 1024, num_layers: int = 19,
                        num_single_layers: int = 38, t5_layers: int = 24, seed: int = 0) -> Any:
    """FLUX.1-dev (``num_layers`` double- and ``num_single_layers`` single-stream blocks), CLIP-L
    at full size, T5-XXL at full width with ``t5_layers`` layers."""
    import torch
    from diffusers import FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from diffusers import FlowMatchEulerDiscreteScheduler

    from membench_eval.models.tokenizer import build_clip_tokenizer

    t5 = {**T5_XXL, "num_layers": t5_layers}
    configs = {"transformer": {**FLUX_TRANSFORMER, "num_layers": num_layers, "num_single_layers": num_single_layers},
               "vae": {**FLUX_VAE, "sample_size": image_size}, "text_encoder": CLIP_L, "text_encoder_2": t5}
    with torch.device("meta"):
        parts = {"transformer": FluxTransformer2DModel(**configs["transformer"]), "vae": _autoencoder(configs["vae"]),
                 "text_encoder": CLIPTextModel(CLIPTextConfig(**CLIP_L)),
                 "text_encoder_2": T5EncoderModel(T5Config(**t5))}
    _fill(parts, seed, device, dtype or torch.float32)
    pipe = FluxPipeline(**parts, tokenizer=build_clip_tokenizer(), tokenizer_2=build_clip_tokenizer(),
                        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER))
    pipe.default_sample_size = image_size // 8  # the native size methods probe at
    return _finish(pipe, "flux-dev-random", configs, seed)


def _autoencoder(config: dict[str, Any]) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(**config)


def _finish(pipe: Any, kind: str, configs: dict[str, Any], seed: int) -> Any:
    from membench_eval.models.family import family_for
    from membench_eval.models.identity import IDENTITY_ATTR

    family_for(pipe)  # the family swaps in the harness's flow scheduler (models/flow.py)
    pipe.set_progress_bar_config(disable=True)
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        getattr(pipe, name).eval()
    spec = json.dumps({**configs, "fill": FILL_VERSION, "seed": seed}, sort_keys=True)
    setattr(pipe, IDENTITY_ATTR, {"model": "in-memory", "revision": f"{kind}:" + hashlib.sha256(spec.encode()).hexdigest()})
    return pipe


def _fill(parts: dict[str, Any], seed: int, device: Any, dtype: Any) -> None:
    """Every meta parameter written from sd14's seeded tile (norms: ones / zeros, RMS norms: ones);
    buffers recomputed (CLIP's position ids, SD3's sin-cos position table)."""
    import torch
    from torch import nn

    from membench_eval.models.sd14 import _scale, _Tile

    device = torch.device(device)
    tile = _Tile(seed, device)
    for part in parts.values():
        for owner_name, owner in part.named_modules():
            for name, param in list(owner.named_parameters(recurse=False)):
                norm = "RMSNorm" in type(owner).__name__ or "LayerNorm" in type(owner).__name__
                scale = None if norm else _scale(owner, name, param)
                if scale is None:
                    value = torch.full(param.shape, 1.0 if name == "weight" else 0.0, device=device, dtype=dtype)
                else:
                    value = tile.fill_(torch.empty(param.shape, device=device, dtype=dtype), scale)
                setattr(owner, name, nn.Parameter(value, requires_grad=param.requires_grad))
            for name, buf in list(owner.named_buffers(recurse=False)):
                owner.register_buffer(name, _buffer(owner_name, owner, name, buf, device), persistent=False)


def _buffer(owner_name: str, owner: Any, name: str, buf: Any, device: Any) -> Any:
    import torch

    if name == "position_ids":
        return torch.arange(buf.shape[-1], device=device, dtype=buf.dtype).expand(buf.shape)
    if name == "pos_embed":  # diffusers' PatchEmbed, as its __init__ computes it
        from diffusers.models.embeddings import get_2d_sincos_pos_embed

        grid = owner.pos_embed_max_size or int(buf.shape[1] ** 0.5)
        table = get_2d_sincos_pos_embed(buf.shape[-1], grid, base_size=owner.base_size,
                                        interpolation_scale=owner.interpolation_scale, output_type="pt")
        return table.float().unsqueeze(0).to(device)
    raise RuntimeError(f"transformers_random: no rule to fill buffer {owner_name}.{name} of {type(owner).__name__}")
