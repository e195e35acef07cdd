"""The GPU check of the transformer families: SD3-medium and FLUX.1-dev at full depth, random weights.

Builds each with ``models/transformers_random.py`` at its true configuration (SD3-medium: 24 joint
blocks, CLIP-L + CLIP-G, and T5-XXL when ``--sd3-t5``; FLUX.1-dev: 19 double + 38 single blocks,
CLIP-L, T5-XXL with all 24 layers) in bf16 on the GPU, one model at a time, and generates through
the harness's engine (``generation.batch.run_batch``; base method) at the native 1024 px with each
pipeline's default steps and guidance (SD3: 28 steps, CFG 7.0; FLUX-dev: 28 steps, guidance input
3.5). Records time per image (batch 1 and 4), peak GPU memory, denoiser rows per image, and FLOPs
per image counted with ``torch.utils.flop_counter`` (text encoders once per prompt, one denoiser
row times rows per image, VAE decode), so MFU is measured against the device's dense bf16 peak.
Writes one JSON; each section records its error instead of stopping the others.

``--dry`` runs the same code on CPU with the tiny pipelines at 32 px (a plumbing check).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

PROMPTS = ["a photograph of an astronaut riding a horse", "a red bicycle leaning on a brick wall",
           "a bowl of ramen on a table", "a lighthouse on a cliff at sunset"]


def flops_per_image(pipe: Any, size: int, rows_per_image: float) -> float:
    """Counted FLOPs of one image: encoding its prompts (and the empty one with CFG), the denoiser
    rows it costs, one VAE decode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from membench_eval.models import family_for

    family = family_for(pipe)
    with torch.no_grad():
        with FlopCounterMode(display=False) as text:
            cond = family.encode([PROMPTS[0]])
        latents = torch.randn(1, *family.latent_shape(size, size), device=family.device, dtype=family.dtype)
        with FlopCounterMode(display=False) as den:
            family.predict(latents, torch.tensor(500.0, device=family.device), cond.embeds.to(family.dtype))
        with FlopCounterMode(display=False) as vae:
            family.decode_tensor(latents)
    prompts = 1 if family.guidance_embedded else 2
    return float(prompts * text.get_total_flops() + rows_per_image * den.get_total_flops() + vae.get_total_flops())


def run_family(pipe: Any, steps: int, guidance: float, size: int, device: Any) -> dict[str, Any]:
    import torch

    from gpu_check import BF16_PEAK
    from membench_eval.generation.batch import run_batch
    from membench_eval.generation.seeding import plan_requests
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.mitigation import Mitigation
    from membench_eval.suites.types import Prompt

    out: dict[str, Any] = {"params_m": {n: round(sum(p.numel() for p in getattr(pipe, n).parameters()) / 1e6, 1)
                                        for n in ("transformer", "text_encoder", "text_encoder_2", "vae")}}
    if getattr(pipe, "text_encoder_3", None) is not None:
        out["params_m"]["text_encoder_3"] = round(sum(p.numel() for p in pipe.text_encoder_3.parameters()) / 1e6, 1)
    run_batch(pipe, plan_requests([Prompt("w", PROMPTS[0])], 1, 0),  # warm-up (kernels, allocator)
              Mitigation(), GenerationSettings(num_inference_steps=2, height=size, width=size, seed=0, batch_size=1,
                                               guidance_scale=guidance))
    for batch in (1, 4):
        settings = GenerationSettings(num_inference_steps=steps, height=size, width=size, seed=0, batch_size=batch,
                                      guidance_scale=guidance)
        requests = plan_requests([Prompt(f"p{i}", p) for i, p in enumerate(PROMPTS[:batch])], 1, 0)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        images, ctx = run_batch(pipe, requests, Mitigation(), settings)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = (time.perf_counter() - start) / batch
        rows = ctx.records[0]["unet_evals"]
        flops = flops_per_image(pipe, size, rows)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        peak = next((v for k, v in BF16_PEAK.items() if k in name), None)
        out[f"batch{batch}"] = {
            "seconds_per_image": round(seconds, 3), "denoiser_rows_per_image": rows,
            "tflops_per_image": round(flops / 1e12, 2),
            "mfu": None if peak is None else round(flops / seconds / peak, 4),
            "peak_gpu_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
            "image_std": float(images[0].std()),
        }
    return out


def main() -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry", action="store_true", help="CPU plumbing check with the tiny pipelines")
    ap.add_argument("--sd3-t5", action="store_true", help="load SD3 with T5-XXL (4.7B) as well")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "gpu_check_transformers.json"))
    args = ap.parse_args()
    from gpu_check import _section
    from membench_eval.models import family_for

    device = torch.device("cpu" if args.dry else "cuda")
    out: dict[str, Any] = {"device": "cpu" if args.dry else torch.cuda.get_device_name(device)}

    def sd3() -> dict[str, Any]:
        if args.dry:
            from membench_eval.models.tiny_transformers import build_random_tiny_sd3_pipeline
            return run_family(build_random_tiny_sd3_pipeline(), 2, 7.0, 32, device)
        from membench_eval.models.transformers_random import build_sd3_pipeline
        pipe = build_sd3_pipeline(torch.bfloat16, device)
        if args.sd3_t5:
            from transformers import T5Config, T5EncoderModel

            from membench_eval.models.transformers_random import T5_XXL
            with torch.device(device):
                pipe.text_encoder_3 = T5EncoderModel(T5Config(**T5_XXL)).to(torch.bfloat16).eval()
                pipe.tokenizer_3 = pipe.tokenizer_2
        result = run_family(pipe, 28, 7.0, 1024, device)
        del pipe
        torch.cuda.empty_cache()
        return result

    def flux() -> dict[str, Any]:
        if args.dry:
            from membench_eval.models.tiny_transformers import build_random_tiny_flux_pipeline
            pipe = build_random_tiny_flux_pipeline()
            family_for(pipe).max_sequence_length = 64
            return run_family(pipe, 2, 3.5, 32, device)
        from membench_eval.models.transformers_random import build_flux_pipeline
        pipe = build_flux_pipeline(torch.bfloat16, device)
        result = run_family(pipe, 28, 3.5, 1024, device)
        del pipe
        torch.cuda.empty_cache()
        return result

    _section(out, "sd3_medium", sd3)
    _section(out, "flux_dev", flux)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 1 if any(isinstance(v, dict) and "error" in v for v in out.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
