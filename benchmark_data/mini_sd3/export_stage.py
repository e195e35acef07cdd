"""What build.py writes: the diffusers ``StableDiffusion3Pipeline`` folder (fp16 safetensors, fp32
configs, as the mini's model/) and metrics.json measured on it as users load it."""

from __future__ import annotations

import json
import time
from pathlib import Path

MINI = Path(__file__).resolve().parent.parent / "mini"


def assemble_pipeline(transformer, text_encoders, tokenizer):
    """SD3 pipeline around the trained parts, the mini's VAE (shift 0: SD3's decode adds it) and SD3's
    flow scheduler; T5 left out (the pipeline then appends zero tokens, as trained)."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusion3Pipeline

    from model_stage import build_scheduler

    vae = AutoencoderKL.from_pretrained(MINI / "model" / "vae", torch_dtype=torch.float32)
    vae.register_to_config(shift_factor=0.0)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=build_scheduler(), vae=vae,
        text_encoder=text_encoders[0], tokenizer=tokenizer, text_encoder_2=text_encoders[1], tokenizer_2=tokenizer,
        text_encoder_3=None, tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_pipeline(pipe, model_dir: Path) -> None:
    """The mini's layout: fp16 safetensors, fp32 configs, SD's tokenizer as vocab.json + merges.txt."""
    from outputs import save_pipeline as save_mini_layout  # the mini's writer (rewrites tokenizer/)

    save_mini_layout(pipe, model_dir)
    tok, tok2 = model_dir / "tokenizer", model_dir / "tokenizer_2"
    (tok2 / "tokenizer.json").unlink(missing_ok=True)
    for name in ("vocab.json", "merges.txt"):
        (tok2 / name).write_bytes((tok / name).read_bytes())


def model_files(model_dir: Path) -> dict[str, int]:
    """Size of every file of the exported folder: the tests check metrics.json was measured on these."""
    return {p.relative_to(model_dir).as_posix(): p.stat().st_size for p in sorted(model_dir.rglob("*")) if p.is_file()}


def export_and_measure(transformer, text_encoders, tokenizer, data, args, log=print) -> dict:
    from measure_stage import evaluate

    out: Path = args.out
    model_dir = out / "model"
    if args.stage in ("export", "all"):
        save_pipeline(assemble_pipeline(transformer, text_encoders, tokenizer), model_dir)
        log(f"saved {model_dir}")
    if args.stage not in ("measure", "all"):
        return {}
    t = time.time()
    metrics = evaluate(model_dir, data, steps=args.eval_steps, log=log)
    metrics["build"] = {"seed": args.seed, "steps": args.steps, "layers": args.layers, "lr": args.lr,
                        "caption_dropout": args.dropout, "timesteps": "logit-normal(0,1), shift 3",
                        "measure_seconds": round(time.time() - t, 1), "files": model_files(model_dir)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    log(f"wrote {out / 'metrics.json'}")
    return metrics
