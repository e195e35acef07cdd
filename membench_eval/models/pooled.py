"""The token-embedding tensor of families with a pooled text vector (SD3, FLUX).

Why: the hooks (``edit_embeddings``, ``edit_latents``, ``on_step_end``) and the detection toolkit
(``detection.signal``: Wen's signal) pass conditioning around as ONE tensor of shape
(rows, tokens, dim), and cat / expand / repeat_interleave / index it. SD3 and FLUX condition on a
pooled vector as well, which cannot be recomputed from the token sequence. These families
therefore append the pooled vector to the sequence as ``k = ceil(pooled_dim / dim)`` trailing
pseudo-tokens (zero-padded): every tensor operation keeps a row's pooled vector with its tokens,
an edit of the tensor edits both (as a method acting on "the prompt's conditioning" should), and
``unpack`` recovers both exactly (slicing; no arithmetic). ``Conditioning.pooled`` holds the same
vector for code that wants it by name. The attention layers never see the pseudo-tokens.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def pooled_tokens(pooled_dim: int, dim: int) -> int:
    """How many trailing pseudo-tokens hold a ``pooled_dim`` vector in a ``dim``-wide sequence."""
    return math.ceil(pooled_dim / dim)


def pack(sequence: "torch.Tensor", pooled: "torch.Tensor") -> "torch.Tensor":
    """(rows, L, D) tokens + (rows, P) pooled -> (rows, L + k, D)."""
    import torch

    rows, _, dim = sequence.shape
    k = pooled_tokens(pooled.shape[-1], dim)
    tail = torch.nn.functional.pad(pooled.to(sequence.dtype), (0, k * dim - pooled.shape[-1]))
    return torch.cat([sequence, tail.view(rows, k, dim)], dim=1)


def unpack(packed: "torch.Tensor", pooled_dim: int) -> tuple["torch.Tensor", "torch.Tensor"]:
    """The (tokens, pooled) halves of ``pack``'s output."""
    k = pooled_tokens(pooled_dim, packed.shape[-1])
    if packed.ndim != 3 or packed.shape[1] <= k:
        raise ValueError(f"expected packed text embeddings (rows, tokens + {k}, dim), got {tuple(packed.shape)}")
    return packed[:, :-k], packed[:, -k:].flatten(1)[:, :pooled_dim]
