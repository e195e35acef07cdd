"""Images/s of the SD1.4 architecture (random weights) through the harness, with model FLOP utilisation.

FLOPs do not depend on the weights, so SD1.4's UNet, VAE and text encoder are built from their
configs (bench/sd14_configs.py) with random weights; nothing is downloaded. One MemBench image at
512x512 costs 82.9 TFLOP (50 DDIM steps x one UNet call on the CFG pair + one VAE decode, counted
below with torch's FlopCounterMode on the meta device; the text encoder is negligible).

Measured, per batch size: the harness (``membench_eval.generation.generate``: mixed-prompt batches,
per-image generators, PNG + row writes into a run store). And the reference-style loop (one prompt
of 10 images per pipeline call, one generator, no store), reported as a ratio to the harness.

    python bench/generation_throughput.py                 # CPU: reduced size (64x64, 2 steps; stated)
    python bench/generation_throughput.py --device cuda   # full size: 512x512, DDIM 50, guidance 7.5, bf16
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sd14_configs import UNET, VAE, build_sd14_pipeline  # noqa: E402

FULL_IMAGE_TFLOP = 82.9
# Dense bf16 tensor-core peaks from vendor datasheets (TFLOP/s), matched on the device name.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0, "4090": 165.2}
PROMPTS = [
    "a photo of an astronaut riding a horse", "a cup of coffee on a wooden table", "a cat sleeping on a sofa",
    "the rocket on the launch pad", "a motorcycle in a studio", "a galaxy field seen by a space telescope",
    "a portrait of a woman in a red dress", "a mountain lake at sunrise",
]


def flops_per_image(size: int, steps: int) -> tuple[float, float, float]:
    """(UNet CFG-pair FLOPs per step, VAE decode FLOPs, total per image) at ``size`` pixels."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    lat = size // 8
    with torch.device("meta"):
        unet, vae = UNet2DConditionModel(**UNET), AutoencoderKL(**VAE)
        with FlopCounterMode(display=False) as fc:
            unet(torch.randn(2, 4, lat, lat), torch.tensor([999, 999]), encoder_hidden_states=torch.randn(2, 77, 768))
        u = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            vae.decode(torch.randn(1, 4, lat, lat))
        v = fc.get_total_flops()
    return u, v, steps * u + v


def peak_tflops(device, given: float | None) -> float | None:
    import torch

    if given:
        return given
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in PEAK_BF16_TFLOPS.items():
            if key in name:
                return value
    return None


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_harness(pipe, settings, n_images: int, device) -> float:
    from membench_eval.generation.engine import generate
    from membench_eval.generation.seeding import plan_requests
    from membench_eval.store.run_store import RunStore
    from membench_eval.suites.types import Prompt

    per_prompt = max(1, settings.trigger_images_per_prompt)
    prompts = [Prompt(f"p{i}", PROMPTS[i % len(PROMPTS)] + f" #{i}") for i in range(-(-n_images // per_prompt))]
    requests = plan_requests(prompts, per_prompt, settings.seed)[:n_images]
    with tempfile.TemporaryDirectory() as tmp:
        warm = plan_requests([Prompt("warm", "warm up")], settings.batch_size, 99)
        generate(pipe, warm, None, settings, RunStore(Path(tmp) / "warm"), progress=False)
        sync(device)
        t0 = time.perf_counter()
        report = generate(pipe, requests, None, settings, RunStore(Path(tmp) / "run"), progress=False)
        sync(device)
        assert report.new == len(requests)
        return len(requests) / (time.perf_counter() - t0)


def time_reference(pipe, settings, n_images: int, per_call: int, device) -> float:
    """MemBench's reference loop: for each prompt, one call generating ``per_call`` images."""
    import torch

    kwargs = dict(num_inference_steps=settings.num_inference_steps, guidance_scale=settings.guidance_scale,
                  height=settings.height, width=settings.width, num_images_per_prompt=per_call)
    gen = torch.Generator(device=device).manual_seed(0)
    pipe("warm up", generator=gen, **kwargs)
    sync(device)
    calls = max(1, n_images // per_call)
    t0 = time.perf_counter()
    for i in range(calls):
        pipe(PROMPTS[i % len(PROMPTS)], generator=gen, **kwargs).images  # noqa: B018  (PIL conversion included)
    sync(device)
    return calls * per_call / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--size", type=int, default=None, help="image side (default 512 on cuda, 64 on cpu)")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default 50 on cuda, 2 on cpu)")
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--batch-sizes", default=None, help="comma list (default 1,4,10,20,40 on cuda; 1,2 on cpu)")
    p.add_argument("--images", type=int, default=None, help="images per measurement (default 40 on cuda, 2 on cpu)")
    p.add_argument("--ref-images", type=int, default=None, help="images per reference-style call (10 on cuda, 2 on cpu)")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (auto for known GPUs)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)

    import torch

    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.runtime import select_device, select_dtype

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # the bf16 cast's "modules to keep in float32: []" notice
    device = select_device(args.device)
    cuda = device.type == "cuda"
    size = args.size or (512 if cuda else 64)
    steps = args.steps or (50 if cuda else 2)
    batch_sizes = [int(b) for b in (args.batch_sizes or ("1,4,10,20,40" if cuda else "1,2")).split(",")]
    n_images = args.images or (40 if cuda else 2)
    ref_per_call = args.ref_images or (10 if cuda else 2)
    dtype = select_dtype(device, "generation")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    unet_pair, vae_decode, per_image = flops_per_image(size, steps)
    full = flops_per_image(512, 50)[2]
    reduced = size != 512 or steps != 50
    print(f"device {device} ({torch.cuda.get_device_name(device) if cuda else 'CPU'}), {dtype}, "
          f"{size}x{size}, DDIM {steps} steps, guidance {args.guidance}"
          + ("  [REDUCED size/steps: not the MemBench setting]" if reduced else ""))
    print(f"FLOPs: UNet CFG pair {unet_pair / 1e12:.3f} TFLOP/step, VAE decode {vae_decode / 1e12:.3f} TFLOP, "
          f"{per_image / 1e12:.2f} TFLOP/image here; 512x512 x 50 steps = {full / 1e12:.1f} TFLOP/image "
          f"(reference figure {FULL_IMAGE_TFLOP})")
    t0 = time.perf_counter()
    pipe = build_sd14_pipeline(dtype=dtype, device=str(device))
    print(f"built SD1.4 architecture with random weights in {time.perf_counter() - t0:.1f} s")
    peak = peak_tflops(device, args.peak_tflops)

    base = GenerationSettings(num_inference_steps=steps, guidance_scale=args.guidance, height=size, width=size,
                              trigger_images_per_prompt=ref_per_call)
    rows = []
    for b in batch_sizes:
        ips = time_harness(pipe, base.replace(batch_size=b), max(n_images, b), device)
        tflops = ips * per_image / 1e12
        rows.append({"batch_size": b, "images_per_s": ips, "tflops": tflops, "mfu": tflops / peak if peak else None})
        mfu = f", MFU {100 * tflops / peak:.1f}% of {peak:.0f}" if peak else ""
        print(f"harness batch {b:>3}: {ips:8.3f} img/s, {tflops:7.2f} TFLOP/s achieved{mfu}", flush=True)
    ref = time_reference(pipe, base, max(n_images, ref_per_call), ref_per_call, device)
    best = max(rows, key=lambda r: r["images_per_s"])
    same = next((r for r in rows if r["batch_size"] == ref_per_call), None)
    print(f"reference-style loop ({ref_per_call} images of one prompt per call): {ref:.3f} img/s")
    print(f"ratio harness(best, batch {best['batch_size']}) / reference-style: {best['images_per_s'] / ref:.2f}")
    if same:
        print(f"ratio harness(batch {ref_per_call}) / reference-style at equal batch: {same['images_per_s'] / ref:.2f}")
    if not reduced and peak:
        print(f"at the best batch: {best['images_per_s'] * FULL_IMAGE_TFLOP:.0f} TFLOP/s "
              f"= {100 * best['images_per_s'] * FULL_IMAGE_TFLOP / peak:.1f}% of peak (82.9 TFLOP/image)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "device": str(device), "dtype": str(dtype), "size": size, "steps": steps, "reduced": reduced,
            "tflop_per_image": per_image / 1e12, "harness": rows, "reference_style_images_per_s": ref,
            "reference_images_per_call": ref_per_call, "peak_tflops": peak,
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
