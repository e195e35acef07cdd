"""Ren et al.: rescale the BOS attention logit and mask padding tokens in cross-attention.

Ren, Li, Xu, Zeng, Xing, Ding, Tang. "Unveiling and Mitigating Memorization in Text-to-Image
Diffusion Models through Cross Attention". ECCV 2024. Evaluated in MemBench (Hong, Oh, Sung 2024).

Memorized prompts make cross-attention concentrate on a few prompt tokens. The mitigation, at every
denoising step and in every cross-attention (``attn2``) layer:

1. multiplies the pre-softmax logit of token 0 (the beginning token, BOS) by ``c`` (the paper
   sweeps c = 1.0..1.3): CLIP's BOS is an attention sink, so a larger logit moves attention away
   from the prompt's words;
2. masks attention to the padding tokens after the prompt's end token (the key positions at or
   after the tokenized prompt length, BOS and EOS included).

Both apply to the conditional half of the classifier-free-guidance batch only. diffusers
concatenates ``[unconditional, conditional]`` along the batch, so with N images the conditional
rows are N..2N-1. The reference indexes ``1::2`` (alternating rows), which is right only for one
image per call; with MemBench's 10 images per call it rescaled half of the unconditional and half
of the conditional rows. That bug is not copied here. The reference also applied the conditional
prompt's padding mask to the unconditional rows; here those rows are left untouched.

Families (``needs``: cross_attention, clip_bos_token): needs cross-attention to a CLIP encoder
whose token 0 is a BOS sink: SD 1.x / 2.x, Realistic Vision, SDXL (both CLIP encoders); IF (T5
only, no BOS) reads n/a.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from membench_eval.errors import MitigationError
from membench_eval.mitigation import BatchContext, Mitigation

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.models.attention_processor import Attention


class BOSRescaleCrossAttnProcessor:
    """A diffusers attention processor for ``attn2``: explicit attention math, with the BOS logit
    of conditional rows multiplied by ``c`` and their keys past ``token_lengths[i]`` masked.

    ``token_lengths`` holds one tokenized prompt length (BOS and EOS included) per image; with
    ``guidance`` (the engine's ``ctx.do_classifier_free_guidance``) the batch is ``[uncond, cond]``
    (2N rows), else ``cond`` alone (N rows).
    """

    def __init__(self, c: float, token_lengths: Sequence[int], guidance: bool = True):
        self.c = float(c)
        self.token_lengths = [int(n) for n in token_lengths]
        self.guidance = bool(guidance)

    def conditional_rows(self, batch_size: int) -> range:
        """Batch rows holding conditional (prompt) embeddings."""
        n = len(self.token_lengths)
        expected = 2 * n if self.guidance else n
        if batch_size != expected:
            raise MitigationError(
                f"ren: cross-attention batch has {batch_size} rows, expected {expected} "
                f"({n} images{', classifier-free guidance' if self.guidance else ''})"
            )
        return range(n, 2 * n) if self.guidance else range(n)

    def logit_scale_and_bias(self, batch_size: int, key_len: int, device: Any) -> tuple["torch.Tensor", "torch.Tensor"]:
        """Per-row multiplier and additive mask on the logits, shape (batch, 1, 1, key_len)."""
        import torch

        scale = torch.ones(batch_size, 1, 1, key_len, device=device)
        bias = torch.zeros(batch_size, 1, 1, key_len, device=device)
        for image, row in enumerate(self.conditional_rows(batch_size)):
            scale[row, ..., 0] = self.c
            bias[row, ..., min(self.token_lengths[image], key_len):] = float("-inf")
        return scale, bias

    def __call__(
        self,
        attn: "Attention",
        hidden_states: "torch.Tensor",
        encoder_hidden_states: "torch.Tensor | None" = None,
        attention_mask: "torch.Tensor | None" = None,
        temb: "torch.Tensor | None" = None,
        *args: Any,
        **kwargs: Any,
    ) -> "torch.Tensor":
        import torch

        if encoder_hidden_states is None:
            raise MitigationError("ren: the processor was installed on a self-attention layer (attn1); it is for attn2 only")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)

        batch_size, key_len, _ = encoder_hidden_states.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, key_len, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)

        # (batch * heads, tokens, head_dim), batch-major: row b*heads + h.
        query = attn.head_to_batch_dim(query)
        key = attn.head_to_batch_dim(key)
        value = attn.head_to_batch_dim(value)

        # scores = q k^T * scale, in fp32 (bf16 logits would blur a 1.0 vs 1.1 rescale).
        scores = torch.bmm(query.float(), key.float().transpose(1, 2)) * attn.scale
        if attention_mask is not None:
            scores = scores + attention_mask.float()
        scores = scores.view(batch_size, attn.heads, scores.shape[1], key_len)
        scale, bias = self.logit_scale_and_bias(batch_size, key_len, scores.device)
        scores = scores * scale + bias
        probs = scores.softmax(dim=-1).view(batch_size * attn.heads, -1, key_len).to(value.dtype)

        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def token_lengths(tokenizer: Any, prompts: Sequence[str]) -> list[int]:
    """Tokenized length of each prompt (BOS and EOS included), truncated as the pipeline does."""
    max_length = tokenizer.model_max_length
    return [len(tokenizer(p, truncation=True, max_length=max_length).input_ids) for p in prompts]


class RenCrossAttention(Mitigation):
    """BOS logit x ``c`` and padding masked, conditional rows of every ``attn2``, all steps."""

    name = "ren"
    needs = frozenset({"cross_attention", "clip_bos_token"})
    paper = "Ren et al. 2024, Unveiling and Mitigating Memorization in T2I Diffusion Models through Cross Attention"
    sweep = {"c": [1.0, 1.1, 1.2, 1.3]}
    strongest = {"c": 1.3}

    c: float = 1.0

    def __post_init__(self) -> None:
        if not self.c > 0:
            raise MitigationError(f"ren: c must be > 0, got {self.c}")

    def cross_attention_processor(self, pipe: "StableDiffusionPipeline", ctx: BatchContext) -> BOSRescaleCrossAttnProcessor:
        lengths = token_lengths(pipe.tokenizer, ctx.prompts)
        return BOSRescaleCrossAttnProcessor(self.c, lengths, guidance=ctx.do_classifier_free_guidance)
