"""SDXL base 1.0's architecture with random weights (``models.sd14``'s fill), nothing downloaded.

Configs: stabilityai/stable-diffusion-xl-base-1.0 (``unet/``, ``vae/``, ``text_encoder/``,
``text_encoder_2/config.json``). ``depth="full"`` is the true model (UNet 2.57B, bigG 695M);
``depth="reduced"`` keeps every width, head count, the 2048-d cross-attention, the pooled path
and the time-id embedding, with fewer blocks: 1 resnet per level instead of 2, one transformer
block per attention instead of 1/2/10, and 2 of bigG's 32 layers (CI runs it; ``bench/gpu_check.py``
runs the full one).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Literal

from membench_eval.models.sd14 import FILL_VERSION, TEXT_ENCODER as CLIP_L, VAE as SD_VAE

if TYPE_CHECKING:
    import torch

UNET: dict[str, Any] = {
    "act_fn": "silu", "addition_embed_type": "text_time", "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20], "block_out_channels": [320, 640, 1280],
    "center_input_sample": False, "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816, "sample_size": 128, "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "use_linear_projection": True,
}
VAE: dict[str, Any] = {**SD_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}
TEXT_ENCODER_2: dict[str, Any] = {
    "vocab_size": 49408, "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
    "num_attention_heads": 20, "max_position_embeddings": 77, "hidden_act": "gelu", "projection_dim": 1280,
    "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "layer_norm_eps": 1e-05,
}
REDUCED = {"unet": {"layers_per_block": 1, "transformer_layers_per_block": [1, 1, 1]},
           "text_encoder_2": {"num_hidden_layers": 2}}


def build_sdxl_pipeline(dtype: "torch.dtype | None" = None, device: "str | torch.device" = "cpu", *,
                        image_size: int = 1024, depth: Literal["full", "reduced"] = "full", seed: int = 0) -> Any:
    """A ``StableDiffusionXLPipeline`` of random weights, DDIM (SDXL's betas), SDPA."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from membench_eval.models.identity import IDENTITY_ATTR
    from membench_eval.models.sd import use_sdpa
    from membench_eval.models.sd14 import _materialise, _Tile
    from membench_eval.models.tiny import SD_SCHEDULER_CONFIG
    from membench_eval.models.tokenizer import build_clip_tokenizer

    if image_size < 8 or image_size % 8:
        raise ValueError(f"build_sdxl_pipeline: image_size must be a positive multiple of 8, got {image_size}")
    dtype, device = dtype or torch.float32, torch.device(device)
    cut = REDUCED if depth == "reduced" else {"unet": {}, "text_encoder_2": {}}
    unet_cfg = {**UNET, **cut["unet"], "sample_size": image_size // 8}
    vae_cfg = {**VAE, "sample_size": image_size}
    te2_cfg = {**TEXT_ENCODER_2, **cut["text_encoder_2"]}
    with torch.device("meta"):
        unet = UNet2DConditionModel(**unet_cfg)
        vae = AutoencoderKL(**vae_cfg)
        text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_L))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**te2_cfg))
    tile = _Tile(seed, device)
    for module in (text_encoder, text_encoder_2, unet, vae):
        _materialise(module, tile, device, dtype)
    pipe = StableDiffusionXLPipeline(
        vae=vae.eval(), text_encoder=text_encoder.eval(), text_encoder_2=text_encoder_2.eval(),
        tokenizer=build_clip_tokenizer(), tokenizer_2=build_clip_tokenizer(), unet=unet.eval(),
        scheduler=DDIMScheduler(**SD_SCHEDULER_CONFIG), add_watermarker=False,
    )
    use_sdpa(pipe)
    pipe.set_progress_bar_config(disable=True)
    spec = json.dumps({"unet": unet_cfg, "vae": vae_cfg, "text_encoder": CLIP_L, "text_encoder_2": te2_cfg,
                       "fill": FILL_VERSION, "seed": seed}, sort_keys=True)
    setattr(pipe, IDENTITY_ATTR, {"model": "in-memory", "revision": "sdxl-random:" + hashlib.sha256(spec.encode()).hexdigest()})
    return pipe
