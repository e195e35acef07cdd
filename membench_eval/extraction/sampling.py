"""Loading an unconditional diffusers pipeline and sampling it with DDIM, with a guidance hook.

Any ``DDPMPipeline`` / ``DDIMPipeline`` layout works (a hub id or a local folder with ``unet/`` and
``scheduler/``): only its ``UNet2DModel`` and its scheduler config are used, and sampling always
runs DDIM (eta 0) from the scheduler config, so every method samples the same way and one x_T gives
one image. Each image's x_T is drawn from its own generator, seeded from (run seed, image index):
an image does not depend on the batch size or on the other images of its batch.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from membench_eval.errors import ExtractionError
from membench_eval.extraction_method import Guide

if TYPE_CHECKING:
    import torch

NOISE_SEED_SCHEME = "sha256(seed:index)[:8]"


@dataclass
class UncondPipeline:
    """The parts of an unconditional pipeline the extraction runner uses."""

    unet: Any  # diffusers UNet2DModel, fp32, eval mode
    scheduler_config: dict[str, Any]
    identity: dict[str, Any]  # what identifies the weights in every cache key
    device: "torch.device"

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        c = self.unet.config
        size = c.sample_size if isinstance(c.sample_size, int) else c.sample_size[0]
        return (int(c.in_channels), int(size), int(size))


def model_identity(model: str | os.PathLike) -> dict[str, Any]:
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
    return UncondPipeline(unet, {k: v for k, v in config.items() if not k.startswith("_")}, model_identity(model), dev)


def initial_noise(shape: tuple[int, int, int], seed: int, start: int, count: int) -> "torch.Tensor":
    """x_T of images ``start .. start+count-1`` of run seed ``seed``, one generator per image."""
    import torch

    rows = []
    for i in range(start, start + count):
        s = int.from_bytes(hashlib.sha256(f"{seed}:{i}".encode()).digest()[:8], "big") & (2**63 - 1)
        rows.append(torch.randn(shape, generator=torch.Generator().manual_seed(s)))
    return torch.stack(rows)


def ddim_sample(pipe: UncondPipeline, n: int, *, seed: int, steps: int, guide: Guide | None = None,
                batch_size: int = 64, start: int = 0, progress: bool = False) -> "torch.Tensor":
    """``n`` images, float32 (n, C, H, W) in [-1, 1] on the CPU. ``guide(x_t, t, eps, rows) -> eps``
    (if given) replaces the noise prediction at every step (classifier guidance's hook; ``rows``
    are the batch's image indices 0..n-1, so a method can aim each image at its own target)."""
    import torch
    from diffusers import DDIMScheduler

    if n < 1 or steps < 1:
        raise ExtractionError(f"sampling needs n >= 1 and steps >= 1, got n={n}, steps={steps}")
    out = []
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="sampling", unit="batch")
    for b in starts:
        count = min(batch_size, n - b)
        scheduler = DDIMScheduler.from_config(pipe.scheduler_config)
        scheduler.set_timesteps(steps)
        x = initial_noise(pipe.sample_shape, seed, start + b, count).to(pipe.device)
        for t in scheduler.timesteps:
            tt = torch.full((count,), int(t), device=pipe.device, dtype=torch.long)
            with torch.no_grad():
                eps = pipe.unet(x, tt).sample
            if guide is not None:
                eps = guide(x, tt, eps, torch.arange(b, b + count)).detach()
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
        out.append(x.clamp(-1, 1).float().cpu())
    return torch.cat(out)


def to_uint8(images: "torch.Tensor") -> Any:
    """(n, 3, H, W) in [-1, 1] -> uint8 numpy (n, H, W, 3), rounded as a saved PNG would be."""
    import numpy as np
    import torch

    x = ((images.detach().cpu().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())
