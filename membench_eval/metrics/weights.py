"""Where scorer weights come from: an explicit path, else the suite manifest's verified resolver
(``membench_eval.fetch.download.resolve_file``: data dir, then cache, then a sha256-checked
download).

One resolver for every metric, so a missing file always gives the same error naming the file,
where it is downloaded from, and how to pass a local copy instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from membench_eval.errors import MembenchError, MissingWeightsError


@dataclass(frozen=True)
class WeightsFile:
    """A named model file: ``key`` is its manifest entry."""

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
    key="aesthetic_head",
    filename="sac+logos+ava1-l14-linearMSE.pth",
    url="https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/"
    "sac+logos+ava1-l14-linearMSE.pth",
    how_to_pass="AestheticScorer(head=PATH)",
)


def resolve_weights(spec: WeightsFile, explicit: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """The local path of ``spec``: ``explicit`` if given, else the manifest resolver (which may
    download and verify it when ``download``). Raises MissingWeightsError naming the file, its URL
    and how to pass a path."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise MissingWeightsError(f"{spec.key}: weights file not found at {path} (download {spec.url})")
        return path
    from membench_eval.fetch.download import resolve_file

    try:
        return Path(resolve_file(spec.key, download=download))
    except MembenchError as exc:
        raise MissingWeightsError(
            f"{spec.key}: {spec.filename} unavailable ({exc}); download it from {spec.url} and pass "
            f"the local copy with {spec.how_to_pass}, or place it in $MEMBENCH_DATA_DIR"
        ) from exc
