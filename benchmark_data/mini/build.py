"""Build the miniature memorizing benchmark (``mini``, v2): data, a tiny trained SD pipeline, prompts.

Why: no machine here has Stable Diffusion weights, yet the harness must be exercised on a model
that *really* memorizes and on which each mitigation's mechanism exists. This script trains, on
CPU, a tiny SD-architecture pipeline (AutoencoderKL, UNet2DConditionModel, CLIPTextModel with the
real SD tokenizer, DDIM with SD's scheduler config) on the 17 licensed photos bundled with
scikit-image (16, memorized at three duplication tiers) and ~2600 drawn general scenes.

Usage (from the repository root)::

    python benchmark_data/mini/build.py              # full build (hours on one CPU thread), resumable
    python benchmark_data/mini/build.py --stage vae  # one stage into .cache/ (see --help)
    python benchmark_data/mini/build.py --eval-only  # re-measure the shipped model

Stages cache their weights under names carrying every setting; the diffusion stage checkpoints
every few hundred steps, so a crash or Ctrl-C resumes where it stopped. Everything is seeded.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
for p in (REPO, HERE):  # run as a script from anywhere; stage modules live beside this file
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from dataset import build_dataset  # noqa: E402

log = functools.partial(print, flush=True)


def _cache_names(args) -> dict[str, str]:
    """Cache file per stage; the name carries every setting the stage depends on."""
    v = f"v2b_seed{args.seed}_vae{args.vae_steps}"
    d = f"{v}_unet{args.unet_steps}_sink{args.sink_weight:g}{f"from{args.sink_start}" if args.sink_start else ""}_sqrt-t_lr1e-3"
    return {"vae": f"vae_{v}.safetensors", "decoder": f"vae_{v}_dec{args.decoder_steps}.safetensors",
            "unet": f"unet_{d}.safetensors", "text_encoder": f"text_{d}.safetensors",
            "diffusion_checkpoint": f"ckpt_{d}.pt", **_finetune_names(args, d)}


def _finetune_names(args, base: str) -> dict[str, str]:
    if not args.finetune_steps:
        return {}
    f = (f"{base}_ft{args.finetune_steps}_lr{args.finetune_lr:g}_sink{args.finetune_sink_weight:g}"
         f"t{args.sink_target:g}")
    return {"finetune_unet": f"unet_{f}.safetensors", "finetune_text": f"text_{f}.safetensors",
            "finetune_checkpoint": f"ckpt_{f}.pt"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: this folder)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vae-steps", type=int, default=1500)
    ap.add_argument("--decoder-steps", type=int, default=4000)
    ap.add_argument("--unet-steps", type=int, default=4000)
    ap.add_argument("--sink-weight", type=float, default=0.0,
                    help="weight of the BOS attention-sink hinge in the diffusion loss (0 disables)")
    ap.add_argument("--sink-start", type=int, default=0, help="first step with the sink hinge on (curriculum)")
    ap.add_argument("--finetune-steps", type=int, default=1500,
                    help="continue the trained UNet + text encoder for this many steps (a new one-cycle schedule)")
    ap.add_argument("--finetune-lr", type=float, default=3e-4)
    ap.add_argument("--finetune-sink-weight", type=float, default=0.05, help="sink hinge weight while fine-tuning")
    ap.add_argument("--sink-target", type=float, default=0.45, help="BOS share below which the hinge pushes")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 is fastest on a shared 2-core machine (oversubscription stalls)")
    ap.add_argument("--device", default="cpu",
                    help="training device (cuda on a GPU machine: same seeds, same data; measurement stays on CPU)")
    ap.add_argument("--stage", choices=("vae", "decoder", "unet", "finetune", "clip", "clip-eval", "gallery", "all"), default="all",
                    help="run one stage into .cache/ (decoder and unet may run side by side once vae is done)")
    ap.add_argument("--clip-steps", type=int, default=1200)
    ap.add_argument("--eval-only", action="store_true", help="only re-measure the saved model")
    ap.add_argument("--eval-steps", type=int, default=20)
    args = ap.parse_args(argv)

    import torch
    from safetensors.torch import load_file, save_file

    from vae_stage import build_vae, encode_means, finetune_decoder, train_vae

    torch.set_num_threads(args.threads)
    out: Path = args.out
    cache = out / ".cache"  # per-stage weights (git-ignored): a crash loses at most one stage
    cache.mkdir(parents=True, exist_ok=True)
    names = {k: cache / v for k, v in _cache_names(args).items()}
    data = build_dataset(args.seed)
    model_dir = out / "model"
    timings_file = cache / "timings.json"

    def save(module, key: str, seconds: float) -> None:
        save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, names[key])
        # Re-read first: the decoder and unet stages may run side by side and both write here.
        timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
        timings[names[key].name] = round(seconds, 1)
        timings_file.write_text(json.dumps(timings, indent=1))

    def want(stage: str) -> bool:
        return args.stage in (stage, "all") and not names[stage].exists()

    if args.stage == "gallery":
        from outputs import write_gallery

        write_gallery(data, out)
        return 0
    if args.stage in ("clip", "clip-eval"):
        from outputs import run_clip_stage

        run_clip_stage(data, model_dir, out, args, train=args.stage == "clip")
        return 0
    if args.eval_only:
        from measure import evaluate
        from outputs import write_metrics

        metrics = evaluate(model_dir, out, data, steps=args.eval_steps, log=log)
        metrics["build"] = json.loads((out / "metrics.json").read_text())["build"]
        write_metrics(out, metrics)
        return 0

    torch.manual_seed(args.seed)
    vae = build_vae()
    if want("vae"):
        t = time.time()
        train_vae(vae, data, args.vae_steps, args.seed, device=args.device, log=log)
        save(vae, "vae", time.time() - t)
    if args.stage == "vae":
        return 0
    vae.load_state_dict(load_file(names["vae"]))
    vae.eval()
    lat = encode_means(vae, [m for _, m in data.memorized] + [im for im, _ in data.general])
    if want("decoder"):
        t = time.time()
        finetune_decoder(vae, lat, data, args.decoder_steps, args.seed + 2, device=args.device, log=log)
        save(vae, "decoder", time.time() - t)
    if args.stage == "decoder":
        return 0
    scale = float(1.0 / lat.std())

    from diffusion_stage import build_text_encoder, build_unet, train_diffusion
    from membench_eval.models.tokenizer import build_clip_tokenizer

    torch.manual_seed(args.seed + 1)
    text_encoder, unet, tokenizer = build_text_encoder(), build_unet(), build_clip_tokenizer()

    def diffusion_stage(unet_key: str, text_key: str, checkpoint_key: str, steps: int, seed: int, **settings) -> None:
        t = time.time()
        train_diffusion(unet, text_encoder, tokenizer, lat * scale, data, steps, seed,
                        checkpoint=names[checkpoint_key], device=args.device, log=log, **settings)
        save(text_encoder, text_key, 0.0)
        save(unet, unet_key, time.time() - t)

    if want("unet"):
        diffusion_stage("unet", "text_encoder", "diffusion_checkpoint", args.unet_steps, args.seed,
                        sink_weight=args.sink_weight, sink_start=args.sink_start)
    if args.stage == "unet":
        return 0
    unet_key, text_key = ("finetune_unet", "finetune_text") if args.finetune_steps else ("unet", "text_encoder")
    if args.finetune_steps and not names[unet_key].exists():
        unet.load_state_dict(load_file(names["unet"]))
        text_encoder.load_state_dict(load_file(names["text_encoder"]))
        diffusion_stage(unet_key, text_key, "finetune_checkpoint", args.finetune_steps, args.seed + 5,
                        lr=args.finetune_lr, sink_weight=args.finetune_sink_weight, sink_target=args.sink_target)
    unet.load_state_dict(load_file(names[unet_key]))
    text_encoder.load_state_dict(load_file(names[text_key]))
    if args.stage == "finetune":
        return 0

    from outputs import assemble_and_measure

    vae.load_state_dict(load_file(names["decoder"]))
    vae.register_to_config(scaling_factor=scale)
    assemble_and_measure(vae, unet, text_encoder, tokenizer, data, out, args, names, timings_file, log=log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
