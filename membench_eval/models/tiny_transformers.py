"""Tiny SD3- and FLUX-architecture pipelines (random weights) for plumbing tests.

Same classes as the real models (SD3Transformer2DModel / FluxTransformer2DModel, CLIP with
projection, AutoencoderKL with shift factor, flow-matching Euler), only narrow; the sizes are
diffusers' own pipeline tests'. SD3 runs without T5 (``text_encoder_3=None``, as SD3 allows).
FLUX needs its T5 encoder: a 2-layer T5 with SD's offline CLIP tokenizer standing in for T5's
(no T5 vocabulary is available offline; the pipeline only needs token ids).
"""

from __future__ import annotations

from typing import Any

from membench_eval.models.tokenizer import CLIP_CONTEXT_LENGTH, CLIP_VOCAB_SIZE, build_clip_tokenizer


def _clip(width: int, projection: bool = True) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(CLIPTextConfig(
        vocab_size=CLIP_VOCAB_SIZE, hidden_size=width, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, projection_dim=width, max_position_embeddings=CLIP_CONTEXT_LENGTH,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, hidden_act="gelu"))


def _vae(latent_channels: int) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
                         latent_channels=latent_channels, norm_num_groups=1, use_quant_conv=False,
                         use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)


def build_random_tiny_sd3_pipeline(seed: int = 0) -> Any:
    """An untrained tiny ``StableDiffusion3Pipeline`` (one joint block, two 32-wide CLIPs, no T5)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(sample_size=32, patch_size=1, in_channels=4, num_layers=1, attention_head_dim=8,
                                        num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=32,
                                        pooled_projection_dim=64, out_channels=4)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=_vae(4),
        text_encoder=_clip(32), tokenizer=build_clip_tokenizer(), text_encoder_2=_clip(32),
        tokenizer_2=build_clip_tokenizer(), text_encoder_3=None, tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_random_tiny_flux_pipeline(seed: int = 0, guidance_embeds: bool = True) -> Any:
    """An untrained tiny ``FluxPipeline`` (one double and one single block); dev-like with
    ``guidance_embeds``, schnell-like without."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
                                         guidance_embeds=guidance_embeds)
    t5 = T5EncoderModel(T5Config(vocab_size=CLIP_VOCAB_SIZE, d_model=32, d_ff=37, d_kv=8, num_heads=4, num_layers=2))
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(transformer=transformer, scheduler=scheduler, vae=_vae(1), text_encoder=_clip(32, projection=False),
                        tokenizer=build_clip_tokenizer(), text_encoder_2=t5, tokenizer_2=build_clip_tokenizer())
    pipe.set_progress_bar_config(disable=True)
    return pipe
