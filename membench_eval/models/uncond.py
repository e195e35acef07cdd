"""Unconditional diffusers pipelines (``DDPMPipeline`` / ``DDIMPipeline`` layout): the UNet2DModel
and scheduler config the extraction runner samples from, and their identity in its cache keys.

Any hub id or local folder with ``unet/`` and ``scheduler/`` works; only the UNet and the
scheduler config are used (sampling is ``extraction.sampling.ddim_sample``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from membench_eval.errors import ExtractionError

if TYPE_CHECKING:
    import torch


@dataclass
class UncondPipeline:
    """The parts of an unconditional pipeline the extraction runner uses."""

    unet: Any  # diffusers UNet2DModel, fp32, eval mode
    scheduler_config: dict[str, Any]
    identity: dict[str, Any]  # what identifies the weights in every cache key
    device: "torch.device"

    def predict(self, x: "torch.Tensor", t: "torch.Tensor") -> "torch.Tensor":
        """The UNet's noise prediction at ``x`` and per-row timesteps ``t``."""
        return self.unet(x, t).sample

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        c = self.unet.config
        size = c.sample_size if isinstance(c.sample_size, int) else c.sample_size[0]
        return (int(c.in_channels), int(size), int(size))


def uncond_identity(model: str | os.PathLike) -> dict[str, Any]:
    """A local folder: sha256 of its files' hashes (so edited weights never reuse a cache); a hub
    id: the id (pin a revision by downloading it to a folder)."""
    path = Path(model)
    if not path.exists():
        return {"hub_id": str(model)}
    digest = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file() and p.name != "checksums.json" and ".cache" not in p.parts:
            digest.update(f"{p.relative_to(path)}\0{hashlib.sha256(p.read_bytes()).hexdigest()}\n".encode())
    return {"folder_sha256": digest.hexdigest()}


def check_checksums(folder: Path) -> None:
    """Every file named in ``folder/checksums.json`` must match its sha256 (a damaged download or an
    edited bundled model is an error, not a silently different result)."""
    sums_file = folder / "checksums.json"
    if not sums_file.is_file():
        return
    for rel, want in json.loads(sums_file.read_text()).items():
        f = folder / rel
        if not f.is_file():
            raise ExtractionError(f"{f}: listed in {sums_file} but missing")
        if hashlib.sha256(f.read_bytes()).hexdigest() != want:
            raise ExtractionError(f"{f}: sha256 differs from {sums_file}; rebuild or re-download the model")


def load_uncond_pipeline(model: str | os.PathLike, device: str | None = None) -> UncondPipeline:
    """The UNet2DModel and scheduler config of an unconditional diffusers pipeline."""
    import torch
    from diffusers import UNet2DModel

    from membench_eval.runtime import select_device

    path = Path(model)
    if path.exists():
        if not (path / "unet" / "config.json").is_file() or not (path / "scheduler").is_dir():
            raise ExtractionError(f"{path}: not an unconditional diffusers pipeline folder (needs unet/ and scheduler/)")
        check_checksums(path)
    try:
        unet = UNet2DModel.from_pretrained(str(model), subfolder="unet")
        from diffusers import DDIMScheduler

        config = dict(DDIMScheduler.load_config(str(model), subfolder="scheduler"))
    except (OSError, ValueError) as exc:
        raise ExtractionError(f"{model}: cannot load an unconditional UNet2DModel pipeline ({str(exc).splitlines()[0]})") from None
    dev = select_device(device)
    unet = unet.to(dev, torch.float32).eval().requires_grad_(False)
    return UncondPipeline(unet, {k: v for k, v in config.items() if not k.startswith("_")}, uncond_identity(model), dev)
