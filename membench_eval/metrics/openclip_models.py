"""Building open_clip models for the CLIP and aesthetic scorers, with one error for missing weights.

Device and dtype come from :mod:`membench_eval.runtime` (fp16 on CUDA, fp32 on CPU); scores are
computed from fp32 L2-normalised embeddings either way.
"""

from __future__ import annotations

from collections.abc import Iterator

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from membench_eval.errors import MissingWeightsError

if TYPE_CHECKING:
    import torch

_PRECISION = {"torch.float32": "fp32", "torch.float16": "fp16", "torch.bfloat16": "bf16"}


@dataclass
class OpenClipBundle:
    """An open_clip model with the image transform and tokenizer that belong to it."""

    model: Any
    preprocess: Callable[[Any], "torch.Tensor"]
    tokenizer: Any
    name: str
    pretrained: str
    device: "torch.device"
    dtype: "torch.dtype"


def _looks_like_path(pretrained: str) -> bool:
    return os.sep in pretrained or pretrained.endswith((".bin", ".pt", ".pth", ".safetensors"))


def _caused_by_missing_file(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def load_open_clip(
    model_name: str,
    pretrained: str | os.PathLike,
    device: str | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
) -> OpenClipBundle:
    """``open_clip.create_model_and_transforms`` + tokenizer, on the runtime's device and dtype.

    ``pretrained`` is an open_clip tag (downloaded into ``cache_dir`` / the HF cache) or a local
    checkpoint file. When neither is available, MissingWeightsError names the model and tag.
    """
    import open_clip

    from membench_eval.runtime import select_device, select_dtype

    dev = select_device(device)
    dtype = select_dtype(dev, "scoring")
    pretrained = str(pretrained)
    how = (
        "pass a local checkpoint as pretrained=/path/to/open_clip_model.safetensors (or .bin), "
        "or put the download in the Hugging Face cache ($HF_HOME)"
    )
    if model_name == "mini-clip":  # the mini suite's own model: config registered, checksum checked
        from membench_eval.metrics.mini_clip import prepare_mini_clip

        prepare_mini_clip(pretrained)
    if _looks_like_path(pretrained) and not Path(pretrained).expanduser().is_file():
        raise MissingWeightsError(f"open_clip {model_name}: checkpoint file {pretrained} not found; {how}")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name,
            pretrained=str(Path(pretrained).expanduser()) if _looks_like_path(pretrained) else pretrained,
            device=dev,
            precision=_PRECISION[str(dtype)],
            cache_dir=None if cache_dir is None else str(cache_dir),
        )
    except Exception as exc:  # noqa: BLE001 - network/cache failures arrive as RuntimeError chains
        if _caused_by_missing_file(exc):
            raise MissingWeightsError(
                f"open_clip {model_name} / {pretrained}: weights not found locally and could not be "
                f"downloaded ({str(exc).splitlines()[0][:200]}); {how}"
            ) from exc
        raise
    model.eval()
    return OpenClipBundle(model, preprocess, open_clip.get_tokenizer(model_name), model_name, pretrained, dev, dtype)


def bundle_from_model(
    model: Any, preprocess: Callable[[Any], "torch.Tensor"], tokenizer: Any, *, name: str, pretrained: str = ""
) -> OpenClipBundle:
    """Wrap an already built open_clip model (e.g. a tiny random one in tests); device and dtype
    are read from its parameters."""
    param = next(model.parameters())
    model.eval()
    return OpenClipBundle(model, preprocess, tokenizer, name, pretrained, param.device, param.dtype)


def fixed_shape_chunks(items: list, batch_size: int) -> "Iterator[tuple[list, int]]":
    """``(chunk, n_real)``: ``items`` in chunks of exactly ``batch_size``, the last one padded by
    repeating its last item. Why: float rounding in the model's kernels depends on the batch
    shape (measured: 1e-8 on CLIP scores between batches of 4 and 8), so a fixed shape makes an
    image's score independent of how images were grouped into calls (overlapped scoring scores
    each generated batch; the serial path scores all at once)."""
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        yield chunk + [chunk[-1]] * (batch_size - len(chunk)), len(chunk)


def encode_images(bundle: OpenClipBundle, images: list, batch_size: int) -> "Any":
    """fp32 L2-normalised image embeddings (numpy, (n, embed_dim)), in fixed-shape batches."""
    import numpy as np
    import torch

    from membench_eval.metrics.preprocessing import to_rgb_image

    rows = []
    with torch.inference_mode():
        for chunk, n in fixed_shape_chunks(images, batch_size):
            x = torch.stack([bundle.preprocess(to_rgb_image(im)) for im in chunk])
            feats = bundle.model.encode_image(x.to(bundle.device, bundle.dtype)).float()[:n]
            rows.append(torch.nn.functional.normalize(feats, dim=-1).cpu().numpy())
    width = int(getattr(bundle.model, "embed_dim", 0) or 0)
    return np.concatenate(rows) if rows else np.zeros((0, width), np.float32)
