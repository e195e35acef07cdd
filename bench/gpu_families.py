"""GPU check of the model families at true size (random weights): time per image, peak memory, MFU.

Run by ``bench/gpu_check.sh`` after the SD 1.4 check, so one call on a GPU machine measures every
family: SD 2 768-v (UNet 866M, OpenCLIP-H, 768x768), SDXL base (UNet 2.57B, CLIP-L + bigG,
1024x1024) and DeepFloyd IF-I-XL stage I (UNet 4.3B, T5-XXL encoder 4.7B, 64x64 pixels), each built
with ``models.sd2`` / ``models.sdxl_random`` / ``models.deepfloyd_if_random`` (``depth="full"``) in
bf16, through ``generation.engine.generate`` (the family's scheduler: DDIM for SD, IF's DDPM;
CFG 7.5, the same step count for every family, ``images`` per prompt in one batch). FLOPs per image
are counted with ``torch.utils.flop_counter`` over the family's own encode, predict and decode (CFG:
two rows per step; IF has no decoder), not assumed. One family at a time (the previous is freed
first). SD3 / FLUX run in ``bench/gpu_check_transformers.py``.

``--dry``: the same code on CPU at 64x64, 1 step, SDXL at reduced depth, IF at narrow widths
(plumbing only).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BF16_PEAK = {"H200": 989.4e12, "H100": 989.4e12, "A100": 312e12, "L40S": 362.05e12, "L4": 121e12, "A10": 125e12}
PROMPT = "a photograph of an astronaut riding a horse"


def families(dry: bool) -> dict[str, Any]:
    """name -> (builder, image size)."""
    import torch

    from membench_eval.models.deepfloyd_if_random import build_if_pipeline, build_tiny_if_pipeline
    from membench_eval.models.sd2 import build_sd2_pipeline
    from membench_eval.models.sdxl_random import build_sdxl_pipeline

    dev, dtype = ("cpu", torch.float32) if dry else ("cuda", torch.bfloat16)
    sd2, sdxl = (64, 64) if dry else (768, 1024)
    return {
        "sd2-768-v": (lambda: build_sd2_pipeline(dtype, dev, image_size=sd2), sd2),
        "sdxl-base": (lambda: build_sdxl_pipeline(dtype, dev, image_size=sdxl, depth="reduced" if dry else "full"),
                      sdxl),
        # IF stage I at its trained 64 px; dry: the narrow-width twin (the full one is 36 GB in fp32).
        "deepfloyd-if-i-xl": (build_tiny_if_pipeline if dry else
                              (lambda: build_if_pipeline(dtype, dev, image_size=64, depth="full")), 64),
    }


def flops_per_image(pipe: Any, size: int, steps: int, guidance: float) -> float:
    """Counted FLOPs of one image: encode (prompt, and the empty prompt under CFG), rows x steps
    denoiser calls, one VAE decode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from membench_eval.models import family_for

    family = family_for(pipe)
    c, h, w = family.latent_shape(size, size)
    latents = torch.randn(1, c, h, w, device=family.device, dtype=family.dtype)
    with torch.no_grad():
        with FlopCounterMode(display=False) as enc:
            cond = family.encode([PROMPT])
        with FlopCounterMode(display=False) as den:
            family.predict(latents, torch.tensor(500, device=family.device), cond)
        with FlopCounterMode(display=False) as dec:
            family.decode_tensor(latents)
    rows = 2 if guidance > 1 else 1
    return float(rows * enc.get_total_flops() + rows * steps * den.get_total_flops() + dec.get_total_flops())


def measure(name: str, build: Any, size: int, dry: bool, images: int, steps: int) -> dict[str, Any]:
    import torch

    from membench_eval.generation.engine import generate
    from membench_eval.generation.seeding import plan_requests
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.mitigation import Mitigation
    from membench_eval.store.run_store import RunStore
    from membench_eval.suites.types import Prompt

    t0 = time.perf_counter()
    pipe = build()
    out: dict[str, Any] = {"build_s": time.perf_counter() - t0, "size": size, "steps": steps, "images": images,
                           "params_m": {k: round(sum(p.numel() for p in getattr(pipe, k).parameters()) / 1e6, 2)
                                        for k in ("unet", "vae", "text_encoder", "text_encoder_2") if getattr(pipe, k, None) is not None}}
    settings = GenerationSettings(num_inference_steps=steps, guidance_scale=7.5, height=size, width=size, batch_size=images)
    cuda = pipe.unet.device.type == "cuda"
    out["flops_per_image"] = flops_per_image(pipe, size, steps, settings.guidance_scale)
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "store")
        warm = plan_requests([Prompt("w", PROMPT)], images, run_seed=1)
        generate(pipe, warm, Mitigation(), settings.replace(num_inference_steps=1), store, progress=False)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        requests = plan_requests([Prompt("p", PROMPT)], images, run_seed=0)
        t = time.perf_counter()
        generate(pipe, requests, Mitigation(), settings, store, progress=False)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t
    out["seconds_per_image"] = seconds / images
    if cuda:
        out["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        name_ = torch.cuda.get_device_name()
        peak = next((v for k, v in BF16_PEAK.items() if k in name_), None)
        out["device"] = name_
        if peak:
            out["mfu"] = out["flops_per_image"] / out["seconds_per_image"] / peak
    del pipe
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry", action="store_true", help="CPU plumbing check at 64x64, 1 step")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "gpu_families.json"))
    ap.add_argument("--images", type=int, default=None, help="images per family (default 4, dry 1)")
    ap.add_argument("--steps", type=int, default=None, help="DDIM steps (default 50, dry 1)")
    args = ap.parse_args()
    import torch

    if not args.dry and not torch.cuda.is_available():
        print("gpu_families: no CUDA device (use --dry for the CPU plumbing check)", file=sys.stderr)
        return 2
    if args.dry:
        torch.set_num_threads(1)
    images, steps = args.images or (1 if args.dry else 4), args.steps or (1 if args.dry else 50)
    out: dict[str, Any] = {"dry": args.dry}
    for name, (build, size) in families(args.dry).items():
        try:
            out[name] = measure(name, build, size, args.dry, images, steps)
        except Exception:  # noqa: BLE001 - one family's failure is recorded, the others still run
            out[name] = {"error": traceback.format_exc()}
        print(f"gpu_families: {name}: {json.dumps(out[name], default=str)[:400]}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    failed = [k for k, v in out.items() if isinstance(v, dict) and "error" in v]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
