"""Fail fast: before any generation, check that the run can write what it will write.

Why: a read-only store with one image missing, or an unwritable ``--out`` folder, used to let the
whole evaluation run (an hour on a GPU) and then end in a raw PermissionError. These checks write
and remove a probe file (``os.access`` is not enough: it says yes to root on a read-only mount),
and raise ``StoreError`` (exit status 3) naming the folder.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from membench_eval.errors import StoreError


def check_writable(folder: str | os.PathLike, what: str) -> Path:
    """Create ``folder`` if needed and prove a file can be written there; returns the path."""
    path = Path(folder).expanduser()
    probe = path / f".membench-write-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as fh:
            fh.write(b"probe")
        probe.unlink()
    except OSError as exc:
        raise StoreError(f"{path}: the {what} is not writable ({exc.strerror or exc}); "
                         "nothing was generated") from None
    return path


def check_scorer_weights(options: Any, suite: Any) -> None:
    """Before any generation: every scorer weight file the run needs is on disk (fetched now if it
    can be). Why: the scorers load lazily, so an offline run on a user's suite failed with exit 3
    only after generating every image. Raises MissingWeightsError (exit 3) naming the file and, for
    CLIP/aesthetic, the suite option that reports them as n/a instead."""
    from membench_eval.errors import MissingWeightsError

    if (options.sscd_backend or suite.sscd_backend) == "disc_large":
        from membench_eval.metrics.sscd import SSCD_DISC_LARGE
        from membench_eval.metrics.weights import resolve_weights

        resolve_weights(SSCD_DISC_LARGE)
    if suite.allow_missing_quality_weights:
        return  # a missing CLIP/aesthetic checkpoint is reported as n/a on this suite
    for metric, model, pretrained in _quality_weights(options, suite):
        why = _open_clip_weights_missing(model, pretrained)
        if why is not None:
            raise MissingWeightsError(
                f"{metric} score weights {model} / {pretrained} unavailable ({why}); nothing was generated. "
                "Pass a local checkpoint (--clip-pretrained / --aesthetic-pretrained PATH), or set "
                "allow_missing_quality_weights = true under [scoring] in the suite file to report the column as n/a")


def _quality_weights(options: Any, suite: Any) -> list[tuple[str, str, str]]:
    """(metric, open_clip model, pretrained tag or file) of the CLIP and aesthetic scorers, as
    ``metrics.quality_loading`` will load them."""
    from membench_eval.metrics.aesthetic import DEFAULT_AESTHETIC_CLIP, DEFAULT_AESTHETIC_PRETRAINED
    from membench_eval.metrics.clip_score import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED

    model, pretrained = suite.clip_backend or (DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED)
    if options.clip_model and options.clip_model != model:
        model, pretrained = options.clip_model, DEFAULT_CLIP_PRETRAINED
    return [("clip", model, options.clip_pretrained or pretrained),
            ("aesthetic", DEFAULT_AESTHETIC_CLIP, options.aesthetic_pretrained or DEFAULT_AESTHETIC_PRETRAINED)]


def _open_clip_weights_missing(model: str, pretrained: str) -> str | None:
    """None when the weights are on disk (or could be fetched now); else why not."""
    from membench_eval.metrics.quality_loading import _looks_like_file, open_clip_weights_cached

    if _looks_like_file(pretrained):
        return None if Path(pretrained).expanduser().is_file() else f"{pretrained} does not exist"
    if open_clip_weights_cached(model, pretrained):
        return None
    if _hub_offline():
        return "not in the local cache, and HF_HUB_OFFLINE is set: nothing is fetched"
    try:
        from open_clip.pretrained import download_pretrained, get_pretrained_cfg

        cfg = get_pretrained_cfg(model, pretrained)
        if not cfg:
            return f"open_clip has no pretrained tag {pretrained!r} for {model}"
        download_pretrained(cfg)
    except Exception as exc:  # noqa: BLE001 - any failure to fetch is "unavailable", said in one line
        return f"not in the local cache and not downloadable here: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    return None


def _hub_offline() -> bool:
    """Whether the Hugging Face Hub is switched off for this process. Read from the environment now,
    not only huggingface_hub's import-time constant: a job script (or a test) that sets
    HF_HUB_OFFLINE after the library was imported would otherwise wait out a connection timeout."""
    import os

    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "")
    return bool(constants.HF_HUB_OFFLINE) or value.strip().upper() in {"1", "ON", "YES", "TRUE"}
