"""Build ``mini-sd3``: a tiny SD3-architecture model (MMDiT, flow matching) that memorizes the
mini's 16 photos, so a method's effect can be compared across UNet/eps and MMDiT/flow.

Why reuse the mini: same photos, same duplication tiers, same scene captions, same VAE (it already
has SD3's 16 latent channels), so the two minis differ only in the denoiser, its text encoders and
the objective; ``benchmark_data/mini/`` must be present (its dataset.py, model/vae).

Usage (from the repository root)::

    python benchmark_data/mini_sd3/build.py                  # all stages (about an hour on one thread)
    python benchmark_data/mini_sd3/build.py --stage train    # one stage (see --help)
    python benchmark_data/mini_sd3/build.py --work-dir DIR   # stage files elsewhere

Stage files (latents, checkpoint, trained weights, log) live in a work directory outside the
tree (default: the user cache, ``membench_eval.paths.cache_dir()/mini_sd3-build``) under names
carrying every setting; training checkpoints every 200 steps, so a killed build resumes where it
stopped when rerun with the same arguments. Everything is seeded.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MINI = HERE.parent / "mini"
REPO = HERE.parent.parent
for p in (REPO, MINI, HERE):  # run as a script from anywhere; stage modules live beside this file and the mini's
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

log = functools.partial(print, flush=True)


def default_work_dir() -> Path:
    from membench_eval.paths import cache_dir

    return cache_dir() / "mini_sd3-build"


def stage_names(args) -> dict[str, str]:
    """File per stage; the name carries every setting the stage depends on."""
    t = f"seed{args.seed}_L{args.layers}_steps{args.steps}_lr{args.lr:g}_drop{args.dropout:g}_lognorm-shift3"
    return {"latents": f"latents_seed{args.seed}.safetensors", "checkpoint": f"ckpt_{t}.pt",
            "weights": f"weights_{t}.safetensors"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: this folder)")
    ap.add_argument("--work-dir", type=Path, default=None, help="stage files (default: user cache)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--layers", type=int, default=4, help="joint transformer blocks")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--dropout", type=float, default=0.1, help="caption dropout (classifier-free guidance)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest on a shared machine)")
    ap.add_argument("--stop-after", type=int, default=None, help="end training after this step (a pilot)")
    ap.add_argument("--stage", choices=("latents", "train", "export", "measure", "all"), default="all")
    ap.add_argument("--eval-steps", type=int, default=20)
    return ap.parse_args(argv)


def load_latents(path: Path, data, log=log):
    """The mini VAE's latent means of every training image (photos first), cached in the work dir."""
    import torch
    from diffusers import AutoencoderKL
    from safetensors.torch import load_file, save_file

    from vae_stage import encode_means

    if not path.exists():
        t = time.time()
        vae = AutoencoderKL.from_pretrained(MINI / "model" / "vae", torch_dtype=torch.float32).eval()
        lat = encode_means(vae, [m for _, m in data.memorized] + [im for im, _ in data.general])
        save_file({"latents": lat.contiguous(), "scaling_factor": torch.tensor(vae.config.scaling_factor)}, path)
        log(f"encoded {len(lat)} latents in {time.time() - t:.0f}s -> {path}")
    state = load_file(path)
    return state["latents"] * state["scaling_factor"]


def build_models(args):
    import torch

    from membench_eval.models.tokenizer import build_clip_tokenizer
    from model_stage import build_text_encoder, build_transformer

    torch.manual_seed(args.seed + 1)
    encoders = [build_text_encoder(), build_text_encoder()]
    return build_transformer(layers=args.layers), encoders, build_clip_tokenizer()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    from safetensors.torch import load_file, save_file

    from dataset import build_dataset

    torch.set_num_threads(args.threads)
    work = args.work_dir or default_work_dir()
    work.mkdir(parents=True, exist_ok=True)
    names = {k: work / v for k, v in stage_names(args).items()}
    data = build_dataset(args.seed)
    transformer, encoders, tokenizer = build_models(args)
    if args.stage in ("latents", "train", "all"):
        latents = load_latents(names["latents"], data)
    if args.stage == "latents":
        return 0
    if args.stage in ("train", "all") and not names["weights"].exists():
        from train_stage import train_flow

        train_flow(transformer, encoders, tokenizer, latents, data, args.steps, args.seed, lr=args.lr,
                   dropout=args.dropout, checkpoint=names["checkpoint"], log=log, stop_after=args.stop_after)
        if args.stop_after is not None and args.stop_after < args.steps:
            return 0
        state = {f"transformer.{k}": v for k, v in transformer.state_dict().items()}
        for i, e in enumerate(encoders):
            state.update({f"text_encoder_{i}.{k}": v for k, v in e.state_dict().items()})
        save_file({k: v.detach().contiguous() for k, v in state.items()}, names["weights"])
        log(f"trained weights -> {names['weights']}")
    if args.stage == "train":
        return 0
    weights = load_file(names["weights"])
    transformer.load_state_dict({k.split(".", 1)[1]: v for k, v in weights.items() if k.startswith("transformer.")})
    for i, e in enumerate(encoders):
        e.load_state_dict({k.split(".", 1)[1]: v for k, v in weights.items() if k.startswith(f"text_encoder_{i}.")})
    from export_stage import export_and_measure

    export_and_measure(transformer, encoders, tokenizer, data, args, log=log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
