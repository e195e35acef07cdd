"""CLIP score as MemBench reports it: the raw cosine of L2-normalised open_clip image and text
embeddings (not x100 as in torchmetrics, not clamped at 0), default ``ViT-g-14`` /
``laion2b_s12b_b42k``.

Long prompts: the text tower sees at most ``context_length`` (77) tokens. Truncation is explicit
and the same for every prompt: the start token, the first ``context_length - 2`` BPE tokens of the
prompt, then the end token (open_clip ``SimpleTokenizer``'s truncation). :meth:`ClipScorer.tokenize`
reports which prompts were cut, so a report can say how many were.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np

from membench_eval.metrics.openclip_models import (
    OpenClipBundle, bundle_from_model, encode_images, fixed_shape_chunks, load_open_clip,
)
from membench_eval.metrics.preprocessing import ImageLike, describe_transform

DEFAULT_CLIP_MODEL = "ViT-g-14"
DEFAULT_CLIP_PRETRAINED = "laion2b_s12b_b42k"


class ClipScorer:
    """Text-image agreement of generated images with their prompts."""

    def __init__(
        self,
        model: str = DEFAULT_CLIP_MODEL,
        pretrained: str | os.PathLike = DEFAULT_CLIP_PRETRAINED,
        device: str | None = None,
        *,
        cache_dir: str | os.PathLike | None = None,
        batch_size: int = 16,
        _bundle: OpenClipBundle | None = None,
    ):
        """``pretrained`` is an open_clip tag or a local checkpoint path (offline use)."""
        self.bundle = _bundle or load_open_clip(model, pretrained, device, cache_dir=cache_dir)
        self.batch_size = batch_size

    @classmethod
    def from_open_clip(
        cls,
        model: Any,
        preprocess: Callable[[Any], Any],
        tokenizer: Any,
        *,
        name: str = "custom",
        pretrained: str = "",
        batch_size: int = 16,
    ) -> "ClipScorer":
        """A scorer around an already built open_clip model, its image transform and tokenizer."""
        bundle = bundle_from_model(model, preprocess, tokenizer, name=name, pretrained=pretrained)
        return cls(_bundle=bundle, batch_size=batch_size)

    @property
    def context_length(self) -> int:
        return int(getattr(self.bundle.tokenizer, "context_length", None) or 77)

    def tokenize(self, prompts: Sequence[str]) -> tuple[Any, np.ndarray]:
        """Token ids (n, context_length) and a bool array marking the prompts that were truncated."""
        tok = self.bundle.tokenizer
        if getattr(tok, "reduction_fn", None) is not None:
            raise ValueError(f"{self.bundle.name}: tokenizer uses a reduction strategy; CLIP score pins plain truncation")
        tokens = tok(list(prompts), context_length=self.context_length)
        if hasattr(tok, "encode"):  # SimpleTokenizer: SOT + BPE tokens + EOT must fit
            truncated = np.array([len(tok.encode(p)) + 2 > self.context_length for p in prompts], dtype=bool)
        else:  # HF tokenizers: a full row without padding means it was cut (or fit exactly)
            truncated = (tokens != 0).all(dim=1).cpu().numpy()
        return tokens, truncated

    def embed_images(self, images: Sequence[ImageLike]) -> np.ndarray:
        """fp32 (n, d) L2-normalised image embeddings."""
        return encode_images(self.bundle, list(images), self.batch_size)

    def embed_texts(self, prompts: Sequence[str]) -> np.ndarray:
        """fp32 (n, d) L2-normalised text embeddings (prompts truncated as documented above)."""
        import torch

        prompts = list(prompts)
        rows = []
        with torch.inference_mode():
            for chunk, n in fixed_shape_chunks(prompts, self.batch_size):
                tokens, _ = self.tokenize(chunk)
                feats = self.bundle.model.encode_text(tokens.to(self.bundle.device)).float()[:n]
                rows.append(torch.nn.functional.normalize(feats, dim=-1).cpu().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)

    def score(self, images: Sequence[ImageLike], prompts: Sequence[str] | str) -> np.ndarray:
        """Cosine of image i with prompt i, float32 (n,), in [-1, 1]. A single string is the
        prompt of every image (each unique prompt is encoded once)."""
        images = list(images)
        prompts = [prompts] * len(images) if isinstance(prompts, str) else list(prompts)
        if len(prompts) != len(images):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        if not images:
            return np.zeros(0, np.float32)
        unique = list(dict.fromkeys(prompts))
        text = self.embed_texts(unique)
        index = {p: i for i, p in enumerate(unique)}
        img = self.embed_images(images)
        return np.einsum("nd,nd->n", img, text[[index[p] for p in prompts]]).astype(np.float32)

    def _pretrained_id(self) -> str:
        """The open_clip tag, or for a local checkpoint its file name and content hash (so scores
        do not depend on where the file lies, and a changed file is a different backend)."""
        pretrained = str(self.bundle.pretrained)
        path = Path(pretrained).expanduser()
        if not (os.sep in pretrained and path.is_file()):
            return pretrained
        from membench_eval.fetch.download import file_sha256  # memoised per (path, size, mtime)

        return f"{path.name}@sha256:{file_sha256(path)[:16]}"

    def metadata(self) -> dict[str, Any]:
        """Recorded with every CLIP score."""
        return {
            "clip_model": self.bundle.name,
            "clip_pretrained": self._pretrained_id(),
            "clip_dtype": str(self.bundle.dtype).removeprefix("torch."),
            "clip_preprocessing": describe_transform(self.bundle.preprocess),
            "clip_context_length": self.context_length,
            "clip_truncation": "sot + first (context_length - 2) bpe tokens + eot",
        }
