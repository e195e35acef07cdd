"""The mini-sd3 networks: two small CLIP text encoders with projection and a tiny MMDiT.

Why this shape: SD3 conditions its joint-attention transformer on two CLIP encoders (their
penultimate hidden states concatenated channel-wise, zero-padded to the joint width, followed by
T5's tokens) plus a pooled vector (both encoders' projected EOS embeddings) that drives the
adaLN modulation. T5 is left out, as SD3 allows: ``StableDiffusion3Pipeline`` then appends
``max_sequence_length`` (256) all-zero tokens. The build trains on exactly what the pipeline
feeds (``encode``), zero tokens included, so generation sees no train/test mismatch.

Sizes: 64-wide encoders (as the mini's; SD's 49408-row token table dominates them) and a
4-block, 128-wide transformer with patch size 2 on the mini VAE's 16x16x16 latents (64 image
tokens), sized so the build's training fits about an hour on one CPU thread.
"""

from __future__ import annotations

TEXT_DIM = 64  # each CLIP encoder's width; the joint width is their concatenation
PROJECTION_DIM = 64  # each encoder's pooled projection; pooled_projection_dim = 2 x this
TOKEN_INIT_STD = 0.15  # as the mini: a random token id draws a vector as large as a trained word's
T5_TOKENS = 256  # StableDiffusion3Pipeline's default max_sequence_length (zero tokens without T5)


def build_text_encoder(layers: int = 3):
    """CLIPTextModelWithProjection on SD's vocabulary and context length (narrow)."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from membench_eval.models.tokenizer import CLIP_CONTEXT_LENGTH, CLIP_VOCAB_SIZE

    model = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=CLIP_VOCAB_SIZE, hidden_size=TEXT_DIM, intermediate_size=4 * TEXT_DIM,
        num_hidden_layers=layers, num_attention_heads=4, max_position_embeddings=CLIP_CONTEXT_LENGTH,
        projection_dim=PROJECTION_DIM, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    ))
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_(0.0, TOKEN_INIT_STD)
    return model


def build_transformer(layers: int = 4, heads: int = 4, head_dim: int = 32):
    """SD3Transformer2DModel, tiny: ``layers`` joint blocks of width heads x head_dim."""
    from diffusers import SD3Transformer2DModel

    width = heads * head_dim
    return SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=16, out_channels=16, num_layers=layers,
        attention_head_dim=head_dim, num_attention_heads=heads, joint_attention_dim=2 * TEXT_DIM,
        caption_projection_dim=width, pooled_projection_dim=2 * PROJECTION_DIM, pos_embed_max_size=8,
    )


def build_scheduler(shift: float = 3.0):
    """SD3's flow-matching Euler scheduler (SD3 medium ships shift 3.0)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)


def tokenize(tokenizer, captions: list[str]):
    return tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def encode(text_encoders, ids, t5_tokens: int = T5_TOKENS):
    """(prompt_embeds, pooled) exactly as StableDiffusion3Pipeline.encode_prompt builds them
    without T5 (clip_skip None: penultimate hidden state), differentiable for training."""
    import torch

    hidden, pooled = [], []
    for enc in text_encoders:
        out = enc(ids, output_hidden_states=True)
        hidden.append(out.hidden_states[-2])
        pooled.append(out.text_embeds)
    clip = torch.cat(hidden, dim=-1)  # (B, 77, 2 x TEXT_DIM) == joint_attention_dim: no padding needed
    zeros = clip.new_zeros(clip.shape[0], t5_tokens, clip.shape[-1])
    return torch.cat([clip, zeros], dim=1), torch.cat(pooled, dim=-1)
