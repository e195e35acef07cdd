"""LAION aesthetic score (improved-aesthetic-predictor, ``sac+logos+ava1-l14-linearMSE.pth``):
an MLP on the L2-normalised OpenAI CLIP ViT-L/14 image embedding, as MemBench reports it.

The head is LAION's ``MLP``: Linear(768, 1024), Dropout(0.2), Linear(1024, 128), Dropout(0.2),
Linear(128, 64), Dropout(0.1), Linear(64, 16), Linear(16, 1) -- no activations (LAION's are
commented out), hence state-dict keys ``layers.{0,2,4,6,7}``. It runs in fp32; only the CLIP
tower follows the runtime dtype.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from membench_eval.errors import MissingWeightsError
from membench_eval.metrics.openclip_models import (
    OpenClipBundle, bundle_from_model, encode_images, fixed_shape_chunks, load_open_clip,
)
from membench_eval.metrics.preprocessing import ImageLike, describe_transform
from membench_eval.metrics.weights import AESTHETIC_HEAD, resolve_weights

if TYPE_CHECKING:
    import torch

DEFAULT_AESTHETIC_CLIP = "ViT-L-14"
DEFAULT_AESTHETIC_PRETRAINED = "openai"
HEAD_INPUT_DIM = 768


def build_aesthetic_head() -> "torch.nn.Module":
    """LAION's MLP layout (randomly initialised); load weights with :func:`load_aesthetic_head`."""
    from torch import nn

    class AestheticHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.Sequential(
                nn.Linear(HEAD_INPUT_DIM, 1024),
                nn.Dropout(0.2),
                nn.Linear(1024, 128),
                nn.Dropout(0.2),
                nn.Linear(128, 64),
                nn.Dropout(0.1),
                nn.Linear(64, 16),
                nn.Linear(16, 1),
            )

        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            return self.layers(x)

    return AestheticHead()


def load_aesthetic_head(path: str | os.PathLike, device: "torch.device | str" = "cpu") -> "torch.nn.Module":
    """The LAION head from its state dict, read with ``weights_only=True`` (no pickled code)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"aesthetic head {path} not found (download {AESTHETIC_HEAD.url})")
    state = torch.load(path, map_location="cpu", weights_only=True)
    head = build_aesthetic_head()
    try:
        head.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise MissingWeightsError(f"{path}: not the LAION aesthetic MLP state dict ({str(exc).splitlines()[0]})") from exc
    return head.to(device=device, dtype=torch.float32).eval()


class AestheticScorer:
    """Aesthetic score (about 1..10) of each image."""

    def __init__(
        self,
        clip_model: str = DEFAULT_AESTHETIC_CLIP,
        pretrained: str | os.PathLike = DEFAULT_AESTHETIC_PRETRAINED,
        head: str | os.PathLike | None = None,
        device: str | None = None,
        *,
        cache_dir: str | os.PathLike | None = None,
        batch_size: int = 16,
        _bundle: OpenClipBundle | None = None,
    ):
        """``head`` is the LAION .pth (default: the manifest / user cache); ``pretrained`` an
        open_clip tag or a local checkpoint path."""
        self.head_path = resolve_weights(AESTHETIC_HEAD, head)  # check the small file before the big one
        self.bundle = _bundle or load_open_clip(clip_model, pretrained, device, cache_dir=cache_dir)
        self.head = load_aesthetic_head(self.head_path, self.bundle.device)
        self.batch_size = batch_size

    @classmethod
    def from_open_clip(
        cls,
        model: Any,
        preprocess: Callable[[Any], Any],
        *,
        head: str | os.PathLike | None = None,
        name: str = "custom",
        pretrained: str = "",
        batch_size: int = 16,
    ) -> "AestheticScorer":
        """A scorer around an already built open_clip model whose image embedding is 768-d."""
        bundle = bundle_from_model(model, preprocess, None, name=name, pretrained=pretrained)
        return cls(head=head, batch_size=batch_size, _bundle=bundle)

    def embed_images(self, images: Sequence[ImageLike]) -> np.ndarray:
        """fp32 (n, 768) L2-normalised CLIP image embeddings."""
        return encode_images(self.bundle, list(images), self.batch_size)

    def score_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """The head on already normalised embeddings: float32 (n,), in fixed-shape batches (as the
        CLIP encoder: a matmul's rounding depends on its row count, so scoring a generation batch
        of 4 and scoring the same images among 8 stored ones must run the same shapes)."""
        import torch

        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[1] != HEAD_INPUT_DIM:
            raise ValueError(f"aesthetic head expects (n, {HEAD_INPUT_DIM}) embeddings, got {emb.shape}")
        rows = []
        with torch.inference_mode():
            for chunk, n in fixed_shape_chunks(list(emb), self.batch_size):
                out = self.head(torch.from_numpy(np.stack(chunk)).to(self.bundle.device))
                rows.append(out[:n, 0].float().cpu().numpy())
        return np.concatenate(rows) if rows else np.zeros(0, np.float32)

    def score(self, images: Sequence[ImageLike]) -> np.ndarray:
        """Aesthetic score of each image, float32 (n,)."""
        images = list(images)
        if not images:
            return np.zeros(0, np.float32)
        return self.score_embeddings(self.embed_images(images))

    def metadata(self) -> dict[str, Any]:
        """Recorded with every aesthetic score."""
        return {
            "aesthetic_clip_model": self.bundle.name,
            "aesthetic_clip_pretrained": self.bundle.pretrained,
            "aesthetic_head": str(self.head_path),
            "aesthetic_preprocessing": describe_transform(self.bundle.preprocess),
        }
