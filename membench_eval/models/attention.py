"""Cross-attention maps of a diffusers ``attn2`` module, for methods that read them (Ren's entropy,
the Bright-Ending end-token mask): one place for the attention arithmetic they recompute."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def cross_attention_probs(attn: Any, hidden_states: "torch.Tensor", encoder_hidden_states: "torch.Tensor") -> "torch.Tensor":
    """Softmax attention over text tokens, float32, shape (batch, heads, queries, tokens): the
    probabilities ``AttnProcessor`` multiplies the values with (no attention mask; SD's attn2 has
    none), computed in float32 so bf16 runs give the same maps up to rounding of the inputs."""
    h = hidden_states
    if h.ndim == 4:
        h = h.flatten(2).transpose(1, 2)
    if attn.group_norm is not None:
        h = attn.group_norm(h.transpose(1, 2)).transpose(1, 2)
    enc = attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross else encoder_hidden_states
    q = attn.head_to_batch_dim(attn.to_q(h)).float()
    k = attn.head_to_batch_dim(attn.to_k(enc)).float()
    probs = (q @ k.transpose(1, 2) * attn.scale).softmax(dim=-1)  # (batch * heads, queries, tokens)
    return probs.view(enc.shape[0], attn.heads, *probs.shape[1:])


class EndTokenCapture:
    """An ``attn2`` processor wrapper: appends the end-token attention map of the last
    ``len(eos)`` rows (the conditional half of a CFG batch; mean over heads, (rows, queries),
    float32) to ``sink``, then returns the wrapped processor's output unchanged. ``eos[i]`` is row
    i's end-token position. Used for the Bright-Ending mask (PRSS's option, its detector)."""

    def __init__(self, processor: Any, eos: list[int], sink: list):
        self.processor, self.eos, self.sink = processor, eos, sink

    def __call__(self, attn: Any, hidden_states: "torch.Tensor", encoder_hidden_states: "torch.Tensor | None" = None,
                 attention_mask: Any = None, temb: Any = None, *args: Any, **kwargs: Any) -> "torch.Tensor":
        import torch

        n = len(self.eos)
        probs = cross_attention_probs(attn, hidden_states, encoder_hidden_states).mean(1)[-n:]
        self.sink.append(probs[torch.arange(n), :, torch.tensor(self.eos, device=probs.device)])
        return self.processor(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
