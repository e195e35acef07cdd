"""Unconditional suites: a diffusers unconditional pipeline and the training images it may leak.

An extraction suite is three things: the model (hub id or local ``DDPMPipeline``/``DDIMPipeline``
folder), the training set that generations are scored against (a folder of images; AMS/UMS count
matches to these), and the sampling settings. Built-in: ``mini-uncond`` (``benchmark_data/uncond``,
built by its ``build.py``). Any other: a small TOML file::

    name = "my-uncond"
    model = "path/to/ddpm-folder"       # or a hub id such as "google/ddpm-cifar10-32"
    training_images = "path/to/train"   # the images the model was trained on
    num_inference_steps = 25
    bands = [0.5, 0.6]                  # optional: AMS/UMS band edges (SIDE's SSCD defaults)

Relative paths in a TOML file are relative to the file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from membench_eval.errors import DataError, ExtractionError
from membench_eval.metrics.memorization import MemorizationBands
from membench_eval.paths import BENCHMARK_DATA

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
UNCOND_DIR = BENCHMARK_DATA / "uncond"


@dataclass(frozen=True)
class UncondSuite:
    name: str
    model: str
    training_images: Path
    num_inference_steps: int = 25
    bands: MemorizationBands = field(default_factory=MemorizationBands)

    def training_files(self) -> dict[str, Path]:
        """``{image id: path}`` of the training set (id = file name), sorted by name."""
        if not self.training_images.is_dir():
            raise DataError(self.training_images, "training-image folder not found")
        files = {p.name: p for p in sorted(self.training_images.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
        if not files:
            raise DataError(self.training_images, f"no training images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
        return files


BUILTIN: dict[str, UncondSuite] = {
    "mini-uncond": UncondSuite("mini-uncond", str(UNCOND_DIR / "model"), UNCOND_DIR / "train"),
}


def get_uncond_suite(name: str) -> UncondSuite:
    """A built-in unconditional suite by name, or one read from a ``.toml`` file."""
    if name in BUILTIN:
        return BUILTIN[name]
    path = Path(name)
    if path.suffix != ".toml":
        raise ExtractionError(f"unknown unconditional suite {name!r}; built-in: {', '.join(BUILTIN)}, or a suite .toml file")
    if not path.is_file():
        raise DataError(path, "suite file not found")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise DataError(path, f"not valid TOML ({exc})") from None
    known = {"name", "model", "training_images", "num_inference_steps", "bands"}
    for key in data:
        if key not in known:
            raise DataError(path, f"unknown key (known: {', '.join(sorted(known))})", field=key)
    for key in ("model", "training_images"):
        if not isinstance(data.get(key), str):
            raise DataError(path, "required, a string", field=key)
    steps = data.get("num_inference_steps", 25)
    if not isinstance(steps, int) or steps < 1:
        raise DataError(path, f"expected a positive integer, got {steps!r}", field="num_inference_steps")
    bands = MemorizationBands()
    if "bands" in data:
        try:
            lo, hi = (float(v) for v in data["bands"])
            bands = MemorizationBands(lo, hi)
        except (TypeError, ValueError) as exc:
            raise DataError(path, f"expected [MID_LOW, MID_HIGH] such as [0.5, 0.6] ({exc})", field="bands") from None
    model = data["model"]
    local = path.parent / model
    if local.exists():
        model = str(local)
    return UncondSuite(str(data.get("name", path.stem)), model, path.parent / data["training_images"], steps, bands)
