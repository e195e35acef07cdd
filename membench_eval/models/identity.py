"""A pipeline's identity as it enters store keys: the model (hub id + commit, a content hash of a
local directory, or a hash of in-memory weights) and its scheduler.

Recorded on the pipeline by ``models.loading.load_pipeline`` (and ``models.sd14``); everything
keyed by a model (image keys, detection keys, per-model caches of methods) reads it from here.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

# Attribute of the pipeline that holds its identity dict.
IDENTITY_ATTR = "_membench_identity"
# Files whose content cannot change the images (documentation, git metadata).
_IGNORED_SUFFIXES = (".md", ".txt", ".gitattributes")


def directory_content_hash(path: str | os.PathLike) -> str:
    """SHA-256 over (relative path, file SHA-256) of every file of a local model directory.

    Per-file hashes are cached by (path, size, mtime) under the user cache, so a multi-GB local SD
    copy is hashed once, not at every run.
    """
    from membench_eval.paths import cache_dir

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
            entry = {"stamp": stamp, "sha256": _file_sha256(file)}
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


def _file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks (multi-GB weights never sit in memory)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_identity(pipe: "DiffusionPipeline") -> dict[str, str]:
    """``{"model", "revision"}`` of a pipeline (plus ``path`` for local directories).

    Pipelines not made by ``load_pipeline`` (built in memory, e.g. in tests) are identified by a
    hash of their weights, computed once and remembered on the pipeline.
    """
    identity = getattr(pipe, IDENTITY_ATTR, None)
    if identity is None:
        identity = {"model": "in-memory", "revision": "sha256:" + _weights_hash(pipe)}
        setattr(pipe, IDENTITY_ATTR, identity)
    return dict(identity)


def is_model(pipe: "DiffusionPipeline", model: str) -> bool:
    """Whether ``pipe`` was loaded from ``model`` (a hub id, or a local folder compared by its
    resolved path). Pipelines built in memory match nothing. For methods whose data belong to one
    model (AMG's oracle images, the mini model's own prompt sets)."""
    ident = model_identity(pipe)
    if ident["model"] == model:
        return True
    path = ident.get("path")
    return bool(path) and Path(path).resolve() == Path(str(model)).expanduser().resolve()


def _weights_hash(pipe: "DiffusionPipeline") -> str:
    import torch

    h = hashlib.sha256()
    # SD's three first, in their old order (its hashes unchanged); transformer families' parts after.
    for comp in ("text_encoder", "unet", "vae", "text_encoder_2", "text_encoder_3", "transformer"):
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


def scheduler_identity(pipe: "DiffusionPipeline") -> dict[str, Any]:
    """The scheduler class and its config (private ``_`` keys dropped), as stored in keys."""
    config = {k: _jsonable(v) for k, v in dict(pipe.scheduler.config).items() if not k.startswith("_")}
    return {"class": type(pipe.scheduler).__name__, "config": config}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
