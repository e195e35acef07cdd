"""The GPU check (run by ``bench/gpu_check.sh``): SD 1.4 at full size through the harness, timed.

Full-size SD 1.4 with random weights (FLOPs and memory do not depend on the weights), 512x512,
DDIM 50, CFG 7.5, bf16, through ``generation.engine.generate`` with ``--batch-size auto`` and the
harness's own scoring overlapped (``evaluation.scoring.OverlappedScorer``: SSCD, CLIP ViT-g-14 and the
aesthetic head on ViT-L-14, random weights), against the reference-style loop in the same run
(diffusers' ``__call__`` with one prompt of 10 images per call, then serial scoring, as MemBench's
code does). FLOPs per image are counted (``torch.utils.flop_counter``), not assumed; MFU is
against the device's dense bf16 peak. Then a short full-size run of every bundled mitigation,
SSCD (onnxruntime CUDA provider if present, else says so) and CLIP throughput, peak GPU memory.
Writes one JSON; each section records its error instead of stopping the others.

``--dry`` runs the same code on CPU with the random tiny pipeline at 64x64 and the mini's CLIP,
to check the plumbing here (seconds, not minutes).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPTS = [
    "a photograph of an astronaut riding a horse", "a red bicycle leaning on a brick wall", "a bowl of ramen on a table",
    "a lighthouse on a cliff at sunset", "two cats sleeping on a sofa", "a city street in the rain at night",
    "a mountain lake with pine trees", "an old map of the world", "a portrait of a woman in a blue dress",
    "a plate of pancakes with berries", "a sailboat on a calm sea", "a vintage car parked by a diner",
    "a field of sunflowers under a blue sky", "a wooden cabin in the snow", "a dog catching a frisbee",
    "a bookshelf full of old books",
]
# Dense bf16 tensor-core peaks (vendor data sheets, SXM parts), by device-name substring.
BF16_PEAK = {"H200": 989.4e12, "H100": 989.4e12, "A100": 312e12, "L40S": 362.05e12, "L4": 121e12, "A10": 125e12}


class Scorers:
    """What ``evaluation.scoring`` reads (a ``ScoringContext``): models, references, store, counts."""

    def __init__(self, sscd: Any, clip: Any, aesthetic: Any, store: Any, device: str, n_refs: int = 16):
        import numpy as np
        from PIL import Image

        from membench_eval.evaluation.plan import EvalOptions

        self.sscd, self.clip, self.aesthetic, self.store = sscd, clip, aesthetic, store
        self.quality_scorers = {"clip": clip, "aesthetic": aesthetic}
        self.options = EvalOptions(device=device)
        self.counts = {"generated": 0, "reused": 0, "scored": 0, "scores_reused": 0}
        rng = np.random.default_rng(0)
        refs = [Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)) for _ in range(n_refs)]
        self.reference_embeddings = {f"ref{i}": e for i, e in enumerate(np.asarray(sscd.embed(refs)))}


def _section(out: dict[str, Any], name: str, fn: Any) -> None:
    t0 = time.perf_counter()
    try:
        out[name] = fn()
    except Exception as exc:  # one failing section must not hide the others' figures
        out[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=8)}
    out.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t0, 2)
    print(f"gpu_check: {name}: {json.dumps(out[name])[:400]}", flush=True)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flops_per_image(pipe: Any, settings: Any) -> float:
    """Counted FLOPs of one image: text encoder (prompt + empty), 2 x steps UNet rows (CFG), VAE decode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    dev, dtype = pipe.unet.device, pipe.unet.dtype
    h, w = settings.height // pipe.vae_scale_factor, settings.width // pipe.vae_scale_factor
    latents = torch.randn(1, pipe.unet.config.in_channels, h, w, device=dev, dtype=dtype)
    ids = torch.zeros(1, pipe.tokenizer.model_max_length, dtype=torch.long, device=dev)
    with torch.no_grad():
        with FlopCounterMode(display=False) as text:
            emb = pipe.text_encoder(ids)[0]
        with FlopCounterMode(display=False) as unet:
            pipe.unet(latents, torch.tensor(500, device=dev), encoder_hidden_states=emb)
        with FlopCounterMode(display=False) as vae:
            pipe.vae.decode(latents / pipe.vae.config.scaling_factor)
    cfg = 2 if settings.guidance_scale > 1 else 1
    return float(cfg * text.get_total_flops() + cfg * settings.num_inference_steps * unet.get_total_flops()
                 + vae.get_total_flops())


def requests_for(prompts: list[str], n: int, seed: int = 0) -> list[Any]:
    from membench_eval.generation.seeding import image_seed
    from membench_eval.mitigation import ImageRequest

    return [ImageRequest(prompt_id=f"p{k}", prompt=p, image_index=i, seed=image_seed(seed, f"p{k}", i))
            for k, p in enumerate(prompts) for i in range(n)]


def harness_run(pipe: Any, scorers: Any, settings: Any, prompts: list[str], n: int, store_dir: Path) -> dict[str, Any]:
    """``generate`` with overlapped scoring into a fresh store; images/s end to end (scores stored)."""
    from membench_eval.generation.engine import generate, resolve_batch_size
    from membench_eval.evaluation.scoring import OverlappedScorer
    from membench_eval.metrics.score_rows import SSCD_METRIC
    from membench_eval.store.run_store import RunStore

    store = RunStore(store_dir)
    scorers.store = store
    reqs = requests_for(prompts, n)
    settings = resolve_batch_size(pipe, settings)
    _sync(pipe.unet.device)
    t0 = time.perf_counter()
    report = generate(pipe, reqs, None, settings, store, progress=False, on_stored=OverlappedScorer(scorers, device=scorers.options.device))
    _sync(pipe.unet.device)
    seconds = time.perf_counter() - t0
    scored = sum(1 for k in report.keys if store.get_score(k, SSCD_METRIC, scorers.sscd.fingerprint) is not None)
    return {"images": len(reqs), "scored": scored, "batch_size": settings.batch_size, "seconds": seconds,
            "images_per_s": len(reqs) / seconds}


def reference_loop(pipe: Any, scorers: Any, settings: Any, prompts: list[str], n: int) -> dict[str, Any]:
    """MemBench-code style: ``pipe(prompt, num_images_per_prompt=n)`` per prompt, then score serially."""
    import torch

    from membench_eval.evaluation.scoring import score_images

    dev = pipe.unet.device
    _sync(dev)
    t0 = time.perf_counter()
    for k, prompt in enumerate(prompts):
        g = torch.Generator(dev).manual_seed(k)
        images = pipe(prompt, num_images_per_prompt=n, num_inference_steps=settings.num_inference_steps,
                      guidance_scale=settings.guidance_scale, height=settings.height, width=settings.width,
                      generator=g).images
        score_images(scorers, images, [prompt] * len(images))
    _sync(dev)
    seconds = time.perf_counter() - t0
    return {"images": n * len(prompts), "seconds": seconds, "images_per_s": n * len(prompts) / seconds}


def mitigation_runs(pipe: Any, settings: Any, store_dir: Path) -> dict[str, Any]:
    """Every bundled method (its strongest setting), 1 prompt x 2 images, at the check's size."""
    from membench_eval.generation.engine import generate
    from membench_eval.plugins.mitigations import load_mitigations
    from membench_eval.store.run_store import RunStore

    out: dict[str, Any] = {}
    store = RunStore(store_dir)
    # Methods that calibrate on a prompt list take the check's own (no data files on the GPU machine).
    prompt_file = store_dir / "prompts.txt"
    prompt_file.write_text("\n".join(PROMPTS) + "\n")
    own_prompts = {"nemo": f"stats_prompts={prompt_file}", "wen_gated": f"calibration={prompt_file}"}
    for path in sorted((ROOT / "mitigations").glob("*.py")):
        if path.name.startswith("_") or path.stem == "base":  # base: the harness run above
            continue
        t0 = time.perf_counter()
        try:
            plain = next(iter(load_mitigations(str(path), None, [])))
            params = (["strongest"] if type(plain).strongest else []) + ([own_prompts[path.stem]] if path.stem in own_prompts else [])
            method = next(iter(load_mitigations(str(path), None, params)))
            report = generate(pipe, requests_for(PROMPTS[:1], 2), method, settings.replace(batch_size=2, auto_batch_size=False), store,
                              progress=False)
            _sync(pipe.unet.device)
            evals = [store.record(k)["records"].get("unet_evals") for k in report.keys]
            out[path.stem] = {"seconds": time.perf_counter() - t0, "unet_evals_per_image": evals[0], "label": method.label()}
        except Exception as exc:
            out[path.stem] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def scorer_throughput(scorers: Any, n: int) -> dict[str, Any]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)) for _ in range(n)]
    out: dict[str, Any] = {}
    providers = getattr(getattr(scorers.sscd, "session", None), "get_providers", lambda: ["torch"])()
    t0 = time.perf_counter()
    scorers.sscd.embed(images)
    out["sscd"] = {"backend": scorers.sscd.backend, "providers": providers, "images_per_s": n / (time.perf_counter() - t0)}
    if "CUDAExecutionProvider" not in providers and providers != ["torch"]:
        out["sscd"]["note"] = "onnxruntime has no CUDA provider here (onnxruntime-gpu not installed): SSCD ran on CPU"
    for name, scorer in (("clip", scorers.clip), ("aesthetic", scorers.aesthetic)):
        if scorer is None:
            continue
        t0 = time.perf_counter()
        scorer.score(images, ["a photo"] * n) if name == "clip" else scorer.score(images)
        out[name] = {"model": scorer.metadata(), "images_per_s": n / (time.perf_counter() - t0)}
    return out


def build(dry: bool) -> tuple[Any, Any, Any, Any, Any]:
    """(pipe, settings, sscd, clip, aesthetic) for the check or its dry run."""
    import open_clip
    import torch

    from membench_eval.models.cuda import prepare_for_cuda
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.metrics.aesthetic import AestheticScorer
    from membench_eval.metrics.clip_score import ClipScorer
    from membench_eval.metrics.sscd import load_sscd

    if dry:
        from membench_eval.models.tiny import build_random_tiny_pipeline

        pipe = build_random_tiny_pipeline(seed=0)
        settings = GenerationSettings(num_inference_steps=2, height=64, width=64, batch_size=4, auto_batch_size=True)
        clip_name, aesthetic = "ViT-B-32", None  # small stand-ins: the plumbing, not the size
    else:
        from membench_eval.models.sd14 import build_sd14_pipeline

        pipe = build_sd14_pipeline(dtype=torch.bfloat16, device="cuda")
        prepare_for_cuda(pipe)
        settings = GenerationSettings(num_inference_steps=50, guidance_scale=7.5, height=512, width=512,
                                      auto_batch_size=True)
        clip_name = "ViT-g-14"
    device = str(pipe.unet.device)
    half = torch.float16 if pipe.unet.device.type == "cuda" else torch.float32

    def clip_model(name: str) -> Any:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None, device=device)
        return model.to(dtype=half), preprocess

    model, preprocess = clip_model(clip_name)
    # CLIP scores at a fixed batch shape (padded), so the dry run's 4-image batches would each pay for 64
    # images: 8 keeps the plumbing identical at an eighth of the cost (the dry run took 66 s, 40 of it here).
    clip = ClipScorer.from_open_clip(model, preprocess, open_clip.get_tokenizer(clip_name), name=clip_name,
                                     pretrained="random", batch_size=8 if dry else 64)
    if not dry:
        model, preprocess = clip_model("ViT-L-14")
        aesthetic = AestheticScorer.from_open_clip(model, preprocess, name="ViT-L-14", pretrained="random", batch_size=64)
    sscd = load_sscd("disc_mixup_onnx", device=device)
    return pipe, settings, sscd, clip, aesthetic


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry", action="store_true", help="CPU plumbing check with tiny stand-ins")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "gpu_check.json"))
    ap.add_argument("--prompts", type=int, default=None, help="harness prompts (10 images each; default 16, dry 2)")
    args = ap.parse_args()
    import torch

    start = time.perf_counter()
    out: dict[str, Any] = {"dry": args.dry, "python": platform.python_version(), "torch": torch.__version__}
    if not args.dry and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (use --dry for the CPU plumbing check)", file=sys.stderr)
        return 2
    if args.dry:
        torch.set_num_threads(1)
    pipe, settings, sscd, clip, aesthetic = build(args.dry)
    dev = pipe.unet.device
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    peak = next((v for k, v in BF16_PEAK.items() if k in name), None)
    out["device"] = {"name": name, "bf16_peak_flops": peak, "dtype": str(pipe.unet.dtype)}
    n_prompts = args.prompts or (2 if args.dry else 16)
    per_prompt = 2 if args.dry else 10
    with tempfile.TemporaryDirectory() as tmp:
        scorers = Scorers(sscd, clip, aesthetic, None, str(dev))
        _section(out, "flops_per_image", lambda: flops_per_image(pipe, settings))
        _section(out, "warmup", lambda: harness_run(pipe, scorers, settings, PROMPTS[:1], per_prompt, Path(tmp) / "w"))
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        _section(out, "harness", lambda: harness_run(pipe, scorers, settings, PROMPTS[:n_prompts], per_prompt,
                                                     Path(tmp) / "h"))
        if dev.type == "cuda":
            out["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
        _section(out, "reference_loop", lambda: reference_loop(pipe, scorers, settings,
                                                               PROMPTS[: max(1, n_prompts // 4)], per_prompt))
        short = settings.replace(num_inference_steps=2 if args.dry else 10)
        _section(out, "mitigations", lambda: mitigation_runs(pipe, short, Path(tmp) / "m"))
        _section(out, "scorers", lambda: scorer_throughput(scorers, 8 if args.dry else 64))
    flops = out.get("flops_per_image")
    harness, ref = out.get("harness", {}), out.get("reference_loop", {})
    if isinstance(flops, float) and "images_per_s" in harness:
        out["harness"]["tflops_per_s"] = harness["images_per_s"] * flops / 1e12
        if peak:
            out["harness"]["mfu"] = harness["images_per_s"] * flops / peak
    if "images_per_s" in harness and "images_per_s" in ref:
        out["speedup_vs_reference_loop"] = harness["images_per_s"] / ref["images_per_s"]
    out["goals"] = {"mfu >= 0.5": (out.get("harness", {}).get("mfu") or 0) >= 0.5,
                    "speedup >= 3": (out.get("speedup_vs_reference_loop") or 0) >= 3}
    out["seconds"] = time.perf_counter() - start
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    print(f"gpu_check: wrote {args.out} in {out['seconds']:.0f} s")
    failed = [k for k, v in out.items() if isinstance(v, dict) and "error" in v]
    failed += [f"mitigations.{k}" for k, v in (out.get("mitigations") or {}).items() if isinstance(v, dict) and "error" in v]
    if failed:
        print(f"gpu_check: sections with errors: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
