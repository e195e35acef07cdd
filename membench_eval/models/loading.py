"""Pipeline factory: a diffusers pipeline of a registered model family, set up the way MemBench generates.

The family is chosen by the ``_class_name`` of the model's ``model_index.json``
(``models.family``); for SD 1.x / 2.x: DDIM (from the model's own scheduler config), no safety
checker, PyTorch SDPA attention. bf16 on CUDA and fp32 on CPU (``membench_eval.runtime``), the
pipeline's own progress bar off (the engine draws one for the whole run). The model's identity
(hub id + commit, or a content hash of a local directory) is recorded on the pipeline because it is
part of every run-store key (``models.identity``).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from membench_eval.errors import MissingWeightsError
from membench_eval.models.identity import IDENTITY_ATTR, directory_content_hash

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline

DEFAULT_MODEL = "CompVis/stable-diffusion-v1-4"


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
) -> "DiffusionPipeline":
    """Load ``model`` (hub id or local directory) into its family's pipeline, ready for generation
    on ``device``; on CUDA with the GPU path's layout and VAE slicing, and ``compile``: the
    denoiser under torch.compile (``models.cuda``)."""
    import torch  # noqa: F401

    from membench_eval.models.cuda import compile_unet, prepare_for_cuda
    from membench_eval.runtime import select_device, select_dtype, use_generation_cpu_threads

    dev = select_device(None if device is None else str(device))
    if dev.type == "cpu":
        use_generation_cpu_threads()  # one count for serial, xdist and Ray: the same pixels
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
    family = family_class_for_folder(folder)
    with warnings.catch_warnings(), _quiet_loading():  # diffusers 0.42 renames torch_dtype to dtype
        warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
        components = {}
        external = None if _looks_like_path(model) else _external_vae(model)
        if external is not None:  # Realistic Vision: the hub folder runs with another repository's VAE
            from membench_eval.models.realistic_vision import load_external_vae

            components["vae"], identity["vae"] = load_external_vae(*external, dtype)
            identity["revision"] += "+vae:" + identity["vae"]  # store keys hash model and revision
        pipe = family.from_pretrained(folder, dtype, **components)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(dev)
    prepare_for_cuda(pipe)
    if compile:
        compile_unet(pipe)
    setattr(pipe, IDENTITY_ATTR, identity)
    return pipe


def _external_vae(model: str) -> tuple[str, str | None] | None:
    from membench_eval.models.realistic_vision import external_vae_for

    return external_vae_for(model)


def family_class_for_folder(folder: str | Path) -> type:
    """The registered ``ModelFamily`` class of the pipeline in ``folder``, by its
    ``model_index.json`` ``_class_name``; a clear error for a class no family handles."""
    from membench_eval.models.family import family_class

    index = Path(folder) / "model_index.json"
    try:
        class_name = json.loads(index.read_text()).get("_class_name")
    except (OSError, ValueError) as exc:
        raise MissingWeightsError(f"{index}: cannot read the pipeline's model_index.json ({exc})") from None
    return family_class(str(class_name), source=str(index))


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


