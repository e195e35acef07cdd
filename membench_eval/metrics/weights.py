"""Where scorer weights come from: an explicit path, the suite manifest, or the user cache.

One resolver for every metric so that the error for a missing file always says the same three
things: which file, where it is downloaded from, and how to pass a local copy instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from membench_eval.errors import MissingWeightsError
from membench_eval.paths import cache_dir


@dataclass(frozen=True)
class WeightsFile:
    """A named model file: ``key`` is its manifest entry, ``filename`` its name in the cache."""

    key: str
    filename: str
    url: str
    how_to_pass: str  # the option/argument that takes a local path, shown in the error


SSCD_DISC_LARGE = WeightsFile(
    key="sscd_disc_large",
    filename="sscd_disc_large.torchscript.pt",
    url="https://dl.fbaipublicfiles.com/sscd-copy-detection/sscd_disc_large.torchscript.pt",
    how_to_pass="load_sscd('disc_large', weights=PATH) or `membench sscd --weights PATH`",
)

AESTHETIC_HEAD = WeightsFile(
    key="laion_aesthetic_head",
    filename="sac+logos+ava1-l14-linearMSE.pth",
    url="https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/"
    "sac+logos+ava1-l14-linearMSE.pth",
    how_to_pass="AestheticScorer(head=PATH)",
)


def weights_cache_dir() -> Path:
    """``<cache>/weights``: where downloaded model files are kept."""
    return cache_dir() / "weights"


def resolve_weights(spec: WeightsFile, explicit: str | os.PathLike | None = None) -> Path:
    """The local path of ``spec``: ``explicit`` if given, else the suite manifest's resolver, else
    the user cache. Raises MissingWeightsError naming the file, its URL and how to pass a path."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise MissingWeightsError(f"{spec.key}: weights file not found at {path} (download {spec.url})")
        return path
    manifest_error: Exception | None = None
    try:  # the suite manifest knows URL + sha256 and may download/verify; optional at import time
        from membench_eval.suites import resolve_file  # type: ignore[attr-defined]
    except ImportError:
        resolve_file = None
    if resolve_file is not None:
        try:
            path = Path(resolve_file(spec.key))
            if path.is_file():
                return path
        except Exception as exc:  # noqa: BLE001 - reported below with the fallback locations
            manifest_error = exc
    cached = weights_cache_dir() / spec.filename
    if cached.is_file():
        return cached
    detail = f" (manifest: {manifest_error})" if manifest_error is not None else ""
    raise MissingWeightsError(
        f"{spec.key}: {spec.filename} not found in {cached.parent}{detail}; download it from {spec.url} "
        f"into that folder, or pass a local copy with {spec.how_to_pass}"
    )
