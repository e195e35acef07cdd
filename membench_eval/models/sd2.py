"""Stable Diffusion 2's architecture with random weights (768-v or 512-base), nothing downloaded.

The component configs are those of stabilityai/stable-diffusion-2 (``unet/``, ``vae/``,
``text_encoder/config.json`` and ``scheduler/scheduler_config.json``: v-prediction, trained at 768)
and stable-diffusion-2-base (the same UNet and encoders, epsilon, 512). What differs from SD 1.4
(``models.sd14``): the OpenCLIP ViT-H text tower (1024 wide, 23 of its 24 layers: SD 2 conditions
on the penultimate layer, so the saved encoder has 23), cross-attention to 1024-d tokens, head
*dimension* 64 everywhere (5/10/20/20 heads per level, not 8 heads), linear projections in the
transformer blocks, and attention upcast in the 768-v model. The fill is ``models.sd14``'s: the
weights are a function of the configs and the seed alone, which is the pipeline's recorded identity.

The tokenizer is SD 1.x's CLIP BPE (``models.tokenizer``), the same vocabulary as SD 2's OpenCLIP
tokenizer; SD 2 pads with ``!`` (id 0) where SD 1.x pads with the end token, which moves no shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from membench_eval.models.sd14 import FILL_VERSION, UNET as SD14_UNET, VAE as SD14_VAE

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline

UNET: dict[str, Any] = {
    **SD14_UNET,
    "attention_head_dim": [5, 10, 20, 20],
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
    "upcast_attention": True,  # the 768-v model's config; -2-base has False
    "sample_size": 96,
}

VAE: dict[str, Any] = {**SD14_VAE, "sample_size": 768}

TEXT_ENCODER: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "projection_dim": 512,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
    "layer_norm_eps": 1e-05,
}

# ``depth="reduced"``: every width, head count and the 1024-d cross-attention kept, fewer blocks
# (diffusers' layers_per_block: 1 resnet + attention per down level instead of 2, 2 per up level
# instead of 3) and 2 of the text tower's 23 layers.
REDUCED: dict[str, dict[str, Any]] = {"unet": {"layers_per_block": 1}, "text_encoder": {"num_hidden_layers": 2}}

SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
    "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1, "prediction_type": "v_prediction",
}


def build_sd2_pipeline(
    dtype: "torch.dtype | None" = None, device: "str | torch.device" = "cpu", *, image_size: int = 768,
    v_prediction: bool = True, depth: Literal["full", "reduced"] = "full", seed: int = 0,
) -> "StableDiffusionPipeline":
    """SD 2's UNet (866M), VAE (84M) and OpenCLIP-H text encoder (340M) with random weights, DDIM
    (v-prediction for the 768 model, epsilon for -base), SDPA. ``image_size`` as in
    ``build_sd14_pipeline`` (the native size methods probe at). ``depth="reduced"`` (``REDUCED``,
    what CI runs): the same widths, heads and text width with fewer blocks, UNet 1 resnet and 1
    transformer per level where SD 2 has 2 (2 where it has 3 on the way up), text tower 2 layers."""
    import torch

    from membench_eval.models.sd14 import assemble_random_sd_pipeline

    if image_size < 8 or image_size % 8:
        raise ValueError(f"build_sd2_pipeline: image_size must be a positive multiple of 8, got {image_size}")
    dtype = dtype or torch.float32
    device = torch.device(device)
    if depth not in ("full", "reduced"):
        raise ValueError(f"build_sd2_pipeline: depth must be 'full' or 'reduced', got {depth!r}")
    cut = REDUCED if depth == "reduced" else {"unet": {}, "text_encoder": {}}
    unet_cfg = {**UNET, **cut["unet"], "sample_size": image_size // 8, "upcast_attention": v_prediction}
    vae_cfg = {**VAE, "sample_size": image_size}
    text_cfg = {**TEXT_ENCODER, **cut["text_encoder"]}
    sched_cfg = {**SCHEDULER, "prediction_type": "v_prediction" if v_prediction else "epsilon"}
    spec = {"unet": unet_cfg, "vae": vae_cfg, "text_encoder": text_cfg, "scheduler": sched_cfg,
            "fill": FILL_VERSION, "seed": seed}
    return assemble_random_sd_pipeline(unet_cfg, vae_cfg, text_cfg, sched_cfg, seed=seed, device=device,
                                       dtype=dtype, spec=spec, tag="sd2-random")
