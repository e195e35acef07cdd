"""What build.py writes: the diffusers folder, the benchmark files, the gallery, the mini CLIP,
metrics.json and the README's measured section."""

from __future__ import annotations

import csv
import functools
import json
import time
from pathlib import Path

from PIL import Image

from dataset import UNSEEN_PHOTOS, Dataset, center_square, load_photo
from vae_stage import to_tensor, to_uint8

URL_SCHEME = "mini://"  # trigger_prompts.csv urls: mini://<file> -> references/<file>


def assemble_pipeline(vae, unet, text_encoder, tokenizer):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from membench_eval.models.tiny import SD_SCHEDULER_CONFIG

    pipe = StableDiffusionPipeline(
        vae=vae, unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=DDIMScheduler(**SD_SCHEDULER_CONFIG),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_pipeline(pipe, model_dir: Path) -> None:
    """Save a diffusers folder with fp16 safetensors (configs stay fp32, so loading gives fp32 on CPU).

    The tokenizer is written in SD 1.x's own layout (vocab.json + merges.txt, 1.5 MB) instead of the
    3.6 MB tokenizer.json; ``CLIPTokenizer.from_pretrained`` rebuilds the identical tokenizer from it.
    """
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from membench_eval.models.tokenizer import _vocab_and_merges

    if model_dir.exists():
        shutil.rmtree(model_dir)
    pipe.save_pretrained(model_dir, safe_serialization=True)
    for f in model_dir.rglob("*.safetensors"):
        tensors = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in load_file(f).items()}
        save_file(tensors, f, metadata={"format": "pt"})
        f.chmod(0o644)
    tok = model_dir / "tokenizer"
    (tok / "tokenizer.json").unlink(missing_ok=True)
    vocab, merges = _vocab_and_merges()
    (tok / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (tok / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def write_benchmark_files(data: Dataset, out: Path) -> None:
    """references/, trigger_prompts.csv (MemBench's columns: each photo's first trained caption),
    paraphrase_prompts.csv (same columns: the held-out paraphrases, never trained), general_prompts.txt,
    training_captions.json."""
    ref_dir = out / "references"
    ref_dir.mkdir(parents=True, exist_ok=True)
    for old in ref_dir.glob("*.png"):
        old.unlink()
    for src, img in data.memorized:
        Image.fromarray(img).save(ref_dir / f"{src.name}.png", optimize=True)
    for kind, file in (("trained", "trigger_prompts.csv"), ("paraphrase", "paraphrase_prompts.csv")):
        with open(out / file, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["", "prompt", "urls"])
            rows = [(cap, j) for cap, j, k in data.benchmark_prompts if k == kind]
            for i, (cap, j) in enumerate(rows):
                w.writerow([i, cap, f"{URL_SCHEME}{data.memorized[j][0].name}.png"])
    (out / "general_prompts.txt").write_text("\n".join(data.general_prompts) + "\n", encoding="utf-8")
    (out / "training_captions.json").write_text(json.dumps({
        "memorized": {src.name: list(src.captions) for src, _ in data.memorized},
        "general": [cap for _, cap in data.general],
    }, indent=1) + "\n", encoding="utf-8")


def write_gallery(data: Dataset, out: Path, n_general: int = 132) -> None:
    """The local image-search gallery of the mini suite (``gallery/``): general training scenes
    plus center crops of bundled photos the model never saw, and NO memorized photo. The harness
    retrieves from it by text (mini CLIP) to compute mini's reference row, in the role of
    MemBench's Google image search. ``manifest.json`` lists every file with its sha256."""
    from membench_eval.fetch.download import file_sha256

    folder = out / "gallery"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    items = [(f"general-{i:03d}.png", img) for i, (img, _) in enumerate(data.general[:n_general])]
    items += [(f"unseen-{name}.png", center_square(load_photo(name))) for name in UNSEEN_PHOTOS]
    manifest = {}
    for name, img in items:
        Image.fromarray(img).save(folder / name, format="PNG", optimize=True)
        manifest[name] = file_sha256(folder / name)
    (folder / "manifest.json").write_text(json.dumps({"files": manifest, "excludes": "memorized photos"},
                                                     indent=1) + "\n")


def run_clip_stage(data: Dataset, model_dir: Path, out: Path, args, *, train: bool = True) -> None:
    """Train the mini CLIP (``clip_stage.py``) on this image set (unless ``train`` is False),
    measure its validity through the harness's scorer, and record both in metrics.json."""
    from diffusers import AutoencoderKL

    from clip_stage import measure_validity, train_mini_clip

    metrics_file = out / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    if train:
        vae = AutoencoderKL.from_pretrained(model_dir / "vae").eval()
        metrics["mini_clip"] = train_mini_clip(data, vae, out, to_tensor=to_tensor, to_uint8=to_uint8,
                                               seed=args.seed + 7, steps=args.clip_steps,
                                               log=functools.partial(print, flush=True))
    metrics.setdefault("mini_clip", {})["validity"] = measure_validity(data, out)
    write_metrics(out, metrics)


def _versions() -> dict[str, str]:
    import diffusers
    import torch
    import transformers

    return {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__}


def assemble_and_measure(vae, unet, text_encoder, tokenizer, data: Dataset, out: Path, args, names: dict[str, Path],
                         timings_file: Path, log=print) -> None:
    """Export the pipeline and benchmark files, measure, then the gallery and the mini CLIP."""
    from measure import evaluate

    t_start = time.time()
    model_dir = out / "model"
    save_pipeline(assemble_pipeline(vae.eval(), unet.eval(), text_encoder.eval(), tokenizer), model_dir)
    write_benchmark_files(data, out)
    metrics = evaluate(model_dir, out, data, steps=args.eval_steps, log=log)
    old = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else {}
    if "mini_clip" in old:
        metrics["mini_clip"] = old["mini_clip"]
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    sizes = {p.relative_to(model_dir).as_posix(): p.stat().st_size for p in sorted(model_dir.rglob("*")) if p.is_file()}
    metrics["build"] = {
        "stage_seconds": {k: timings.get(v.name) for k, v in names.items() if v.suffix == ".safetensors"},
        "assemble_and_eval_seconds": round(time.time() - t_start, 1), "seed": args.seed,
        "vae_steps": args.vae_steps, "decoder_steps": args.decoder_steps, "unet_steps": args.unet_steps,
        "sink_weight": args.sink_weight, "finetune_steps": args.finetune_steps, "finetune_lr": args.finetune_lr,
        "finetune_sink_weight": args.finetune_sink_weight, "sink_target": args.sink_target, "threads": args.threads, "model_bytes": sum(sizes.values()), "files": sizes,
        "n_general_images": len(data.general), "n_general_prompts": len(data.general_prompts),
        "versions": _versions(),
    }
    write_metrics(out, metrics)
    write_gallery(data, out)
    run_clip_stage(data, model_dir, out, args)


def write_metrics(out: Path, metrics: dict) -> None:
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    from readme_figures import write_readme_measurements

    write_readme_measurements(out, metrics)
