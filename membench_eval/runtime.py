"""Device and dtype choice, made in one place for generation and every scorer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

Purpose = Literal["generation", "scoring"]


def select_device(device: str | None = None) -> "torch.device":
    """``None`` or ``"auto"`` picks cuda when available, else cpu."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available on this machine")
    return dev


def select_dtype(device: "torch.device", purpose: Purpose = "generation") -> "torch.dtype":
    """fp32 on CPU; on CUDA bf16 for generation, fp16 for CLIP-style scorers (both numerically
    safe there: scores are cosines of L2-normalised embeddings, computed in fp32 at the end)."""
    import torch

    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if purpose == "generation" else torch.float16
