"""Pipeline factory: a diffusers StableDiffusionPipeline set up the way MemBench generates.

DDIM (from the model's own scheduler config), no safety checker, PyTorch SDPA attention, bf16 on
CUDA and fp32 on CPU (``membench_eval.runtime``), the pipeline's own progress bar off (the engine
draws one for the whole run). The model's identity (hub id + commit, or a content hash of a local
directory) is recorded on the pipeline because it is part of every run-store key.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from membench_eval.errors import MissingWeightsError

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline

DEFAULT_MODEL = "CompVis/stable-diffusion-v1-4"
_IDENTITY_ATTR = "_membench_identity"
# Files whose content cannot change the images (documentation, git metadata).
_IGNORED_SUFFIXES = (".md", ".txt", ".gitattributes")


def _looks_like_path(model: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else (or anything that exists) is a path."""
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model or Path(model).exists()


def load_pipeline(
    model: str = DEFAULT_MODEL,
    *,
    revision: str | None = None,
    device: "str | torch.device | None" = None,
    dtype: "torch.dtype | None" = None,
    compile: bool = False,
) -> "StableDiffusionPipeline":
    """Load ``model`` (hub id or local directory) ready for generation on ``device``; on CUDA
    with the GPU path's layout and VAE slicing, and ``compile``: the UNet under torch.compile
    (``generation.acceleration``)."""
    import torch  # noqa: F401
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from membench_eval.runtime import select_device, select_dtype

    dev = select_device(None if device is None else str(device))
    dtype = dtype or select_dtype(dev, "generation")
    model = str(model)
    if _looks_like_path(model):
        path = Path(model).expanduser()
        if not (path / "model_index.json").is_file():
            raise MissingWeightsError(
                f"{path}: not a diffusers pipeline directory (no model_index.json); "
                "pass a hub id or a directory written by save_pretrained"
            )
        folder = path
        identity = {"model": "local", "revision": "sha256:" + directory_content_hash(path), "path": str(path.resolve())}
    else:
        folder = _download(model, revision)
        identity = {"model": model, "revision": _snapshot_commit(folder) or revision or "main"}
    with warnings.catch_warnings(), _quiet_loading():  # diffusers 0.42 renames torch_dtype to dtype
        warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
        pipe = StableDiffusionPipeline.from_pretrained(
            str(folder), torch_dtype=dtype, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
            # Without accelerate, asking for low-memory loading only prints a notice and falls back.
            low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None,
        )
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    use_sdpa(pipe)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(dev)
    from membench_eval.generation.acceleration import compile_unet, prepare_for_cuda

    prepare_for_cuda(pipe)
    if compile:
        compile_unet(pipe)
    setattr(pipe, _IDENTITY_ATTR, identity)
    return pipe


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """No per-component loading bars from diffusers/transformers: our own bar is the one that counts."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    modules = [m for m in (diffusers_logging, transformers_logging) if m.is_progress_bar_enabled()]
    for m in modules:
        m.disable_progress_bar()
    try:
        yield
    finally:
        for m in modules:
            m.enable_progress_bar()


def use_sdpa(pipe: "StableDiffusionPipeline") -> None:
    """PyTorch's scaled_dot_product_attention in the UNet and VAE (diffusers' AttnProcessor2_0)."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    pipe.unet.set_attn_processor(AttnProcessor2_0())
    if any(True for _ in pipe.vae.attn_processors):
        pipe.vae.set_attn_processor(AttnProcessor2_0())


def _download(model: str, revision: str | None) -> Path:
    """The hub snapshot folder (from the local HF cache when offline)."""
    from diffusers import DiffusionPipeline

    try:
        return Path(DiffusionPipeline.download(model, revision=revision))
    except Exception as exc:  # network, auth, missing repo: all mean "weights not available here"
        raise MissingWeightsError(
            f"could not get model {model!r} (revision {revision or 'main'}) from the Hugging Face Hub or its cache: "
            f"{type(exc).__name__}: {exc}. Download it once (huggingface-cli download {model}) or pass a local "
            "directory written by save_pretrained"
        ) from exc


def _snapshot_commit(folder: Path) -> str | None:
    """HF cache folders are .../snapshots/<commit>; the commit pins the weights exactly."""
    return folder.name if folder.parent.name == "snapshots" and len(folder.name) == 40 else None


def directory_content_hash(path: str | os.PathLike) -> str:
    """SHA-256 over (relative path, file SHA-256) of every file of a local model directory.

    Per-file hashes are cached by (path, size, mtime) under the user cache, so a multi-GB local SD
    copy is hashed once, not at every run.
    """
    from membench_eval.paths import cache_dir
    from membench_eval.fetch.download import file_sha256

    root = Path(path).resolve()
    cache_file = cache_dir() / "file-sha256.json"
    try:
        cache: dict[str, Any] = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    dirty = False
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = file.relative_to(root).as_posix()
        if any(part.startswith(".") for part in Path(rel).parts) or rel.endswith(_IGNORED_SUFFIXES):
            continue
        st = file.stat()
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
        entry = cache.get(str(file))
        if not entry or entry.get("stamp") != stamp:
            entry = {"stamp": stamp, "sha256": file_sha256(file)}
            cache[str(file)] = entry
            dirty = True
        digest.update(f"{rel}\0{entry['sha256']}\n".encode())
    if dirty:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache))
            os.replace(tmp, cache_file)
        except OSError:
            pass  # a cache is an optimisation; never fail a run over it
    return digest.hexdigest()


def model_identity(pipe: "StableDiffusionPipeline") -> dict[str, str]:
    """``{"model", "revision"}`` of a pipeline (plus ``path`` for local directories).

    Pipelines not made by ``load_pipeline`` (built in memory, e.g. in tests) are identified by a
    hash of their weights, computed once and remembered on the pipeline.
    """
    identity = getattr(pipe, _IDENTITY_ATTR, None)
    if identity is None:
        identity = {"model": "in-memory", "revision": "sha256:" + _weights_hash(pipe)}
        setattr(pipe, _IDENTITY_ATTR, identity)
    return dict(identity)


def is_model(pipe: "StableDiffusionPipeline", model: str) -> bool:
    """Whether ``pipe`` was loaded from ``model`` (a hub id, or a local folder compared by its
    resolved path). Pipelines built in memory match nothing. For methods whose data belong to one
    model (AMG's oracle images, the mini model's own prompt sets)."""
    ident = model_identity(pipe)
    if ident["model"] == model:
        return True
    path = ident.get("path")
    return bool(path) and Path(path).resolve() == Path(str(model)).expanduser().resolve()


def _weights_hash(pipe: "StableDiffusionPipeline") -> str:
    import torch

    h = hashlib.sha256()
    for comp in ("text_encoder", "unet", "vae"):
        module = getattr(pipe, comp, None)
        if module is None:
            continue
        h.update(f"{comp}:{type(module).__name__}\n".encode())
        for name, tensor in sorted(module.state_dict().items()):
            t = tensor.detach().to("cpu").contiguous()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    h.update(str(type(pipe.tokenizer).__name__).encode())
    return h.hexdigest()


def scheduler_identity(pipe: "StableDiffusionPipeline") -> dict[str, Any]:
    """The scheduler class and its config (private ``_`` keys dropped), as stored in keys."""
    config = {k: _jsonable(v) for k, v in dict(pipe.scheduler.config).items() if not k.startswith("_")}
    return {"class": type(pipe.scheduler).__name__, "config": config}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
