"""Tiny Stable-Diffusion-architecture pipelines (random weights) for plumbing tests.

Same classes as SD 1.x (AutoencoderKL, UNet2DConditionModel, CLIPTextModel, DDIM) and the real
CLIP tokenizer, only narrow. The trained miniature benchmark model is built by
``benchmark_data/mini/build.py``; this module builds untrained ones in about a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from membench_eval.models.tokenizer import CLIP_CONTEXT_LENGTH, CLIP_VOCAB_SIZE, build_clip_tokenizer

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline

# SD 1.x scheduler settings (scaled_linear betas), as in the model's scheduler/scheduler_config.json.
SD_SCHEDULER_CONFIG = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}


def build_random_tiny_pipeline(seed: int = 0, text_dim: int = 32, sample_size: int = 64) -> "StableDiffusionPipeline":
    """An untrained tiny SD pipeline; images are ``sample_size`` pixels square (latents /4)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32), layers_per_block=1, norm_num_groups=8, sample_size=sample_size,
    )
    unet = UNet2DConditionModel(
        sample_size=sample_size // 4, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=text_dim,
        attention_head_dim=8, norm_num_groups=8,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=CLIP_VOCAB_SIZE, hidden_size=text_dim, intermediate_size=2 * text_dim,
        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=CLIP_CONTEXT_LENGTH,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    ))
    scheduler = DDIMScheduler(**SD_SCHEDULER_CONFIG)
    pipe = StableDiffusionPipeline(
        vae=vae, unet=unet, text_encoder=text_encoder, tokenizer=build_clip_tokenizer(), scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
