"""Build the bundled tiny unconditional DPM (``mini-uncond``) that SIDE extraction runs against.

Why: SIDE (Chen et al. 2024, arXiv 2410.02467) attacks *unconditional* diffusion models, and no
machine here has one that memorizes. This script trains, on one CPU thread in about ten minutes, a
diffusers ``UNet2DModel`` (pixel space, 32x32, DDPM epsilon objective) on a small image set in which
some images are duplicated many times, so that plain sampling copies some of them; it ships the
weights as a ``DDIMPipeline`` folder (``model/``: ``unet/`` fp16 safetensors + ``scheduler/``).

Stages (each reads what the previous one wrote; everything is seeded):

- ``data``: the training set, derived deterministically from the mini's files: its 16 reference
  photos (``../mini/references``, 64x64) downsized to 32x32 (PIL box filter), photos 0-7 (sorted by
  name) duplicated ``--heavy`` times, photos 8-15 ``--light`` times, plus ``--gallery`` mini gallery
  images once each (not duplicated). Written to ``train/*.png`` and ``train.json`` (copies per image).
- ``train``: DDPM training, checkpointed to ``.cache/`` every 250 steps (a crash resumes there).
- ``export``: ``model/`` (fp16 UNet, DDIM scheduler config) and ``model/checksums.json``.
- ``measure``: plain sampling's AMS/UMS at the three SSCD bands into ``metrics.json``.

Usage (from the repository root)::

    python benchmark_data/uncond/build.py               # all stages, resumable
    python benchmark_data/uncond/build.py --stage measure
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MINI = REPO / "benchmark_data" / "mini"
SIZE = 32
UNET_CONFIG = dict(sample_size=SIZE, in_channels=3, out_channels=3, layers_per_block=1,
                   block_out_channels=(16, 32, 64), norm_num_groups=8,
                   down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3)
SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon",
                        clip_sample=True)


def log(*a) -> None:
    print(*a, flush=True)


def stage_data(args) -> dict:
    """Write ``train/*.png`` and ``train.json``; returns the manifest."""
    from PIL import Image

    photos = sorted((MINI / "references").glob("*.png"))
    gallery = sorted((MINI / "gallery").glob("*.png"))[: args.gallery]
    if len(photos) != 16:
        raise SystemExit(f"{MINI / 'references'}: expected 16 photos, found {len(photos)}")
    out = HERE / "train"
    out.mkdir(exist_ok=True)
    images = []
    for i, path in enumerate(photos + gallery):
        kind = "photo" if i < len(photos) else "gallery"
        copies = (args.heavy if i < 8 else args.light) if kind == "photo" else 1
        name = f"{kind}-{path.stem}.png"
        with Image.open(path) as im:
            im.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BOX).save(out / name)
        images.append({"file": name, "source": str(path.relative_to(REPO)), "copies": copies})
    manifest = {"size": SIZE, "resize": "PIL box", "images": images,
                "n_unique": len(images), "n_items": sum(im["copies"] for im in images)}
    (HERE / "train.json").write_text(json.dumps(manifest, indent=1) + "\n")
    log(f"data: {manifest['n_unique']} unique images, {manifest['n_items']} training items")
    return manifest


def training_tensor(manifest: dict):
    """(n_items, 3, 32, 32) in [-1, 1], each image repeated ``copies`` times."""
    import numpy as np
    import torch
    from PIL import Image

    rows = []
    for im in manifest["images"]:
        with Image.open(HERE / "train" / im["file"]) as f:
            x = np.asarray(f.convert("RGB"), np.float32) / 127.5 - 1.0
        rows += [x] * im["copies"]
    return torch.from_numpy(np.stack(rows)).permute(0, 3, 1, 2).contiguous()


def stage_train(args, manifest: dict):
    import torch
    from diffusers import DDPMScheduler, UNet2DModel

    ckpt = HERE / ".cache" / f"ckpt_seed{args.seed}_steps{args.steps}_b{args.batch}_lr{args.lr:g}_h{args.heavy}l{args.light}g{args.gallery}.pt"
    ckpt.parent.mkdir(exist_ok=True)
    torch.manual_seed(args.seed)
    unet = UNet2DModel(**UNET_CONFIG)
    sched = DDPMScheduler(**SCHEDULER_CONFIG)
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0)
    lr_at = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    data = training_tensor(manifest)
    gen = torch.Generator().manual_seed(args.seed)
    step, seconds = 0, 0.0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        unet.load_state_dict(state["unet"]); opt.load_state_dict(state["opt"]); lr_at.load_state_dict(state["lr"])
        gen.set_state(state["gen"]); step, seconds = state["step"], state["seconds"]
        log(f"train: resumed at step {step}")
    if step >= args.steps:
        return unet, seconds
    unet.train()
    t0 = time.time() - seconds
    while step < args.steps:
        idx = torch.randint(0, len(data), (args.batch,), generator=gen)
        x0 = data[idx]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, sched.config.num_train_timesteps, (args.batch,), generator=gen)
        loss = torch.nn.functional.mse_loss(unet(sched.add_noise(x0, noise, t), t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step(); lr_at.step(); step += 1
        if step % 250 == 0 or step == args.steps:
            seconds = time.time() - t0
            torch.save({"unet": unet.state_dict(), "opt": opt.state_dict(), "lr": lr_at.state_dict(),
                        "gen": gen.get_state(), "step": step, "seconds": seconds}, ckpt)
            log(f"train: step {step}/{args.steps} loss {loss.item():.4f} {seconds:.0f}s")
    return unet, time.time() - t0


def stage_export(unet, seconds: float, args) -> None:
    import torch
    from diffusers import DDIMPipeline, DDIMScheduler

    model = HERE / "model"
    pipe = DDIMPipeline(unet=unet.to(torch.float16), scheduler=DDIMScheduler(**SCHEDULER_CONFIG))
    pipe.save_pretrained(model, safe_serialization=True)
    sums = {str(p.relative_to(model)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(model.rglob("*")) if p.is_file() and p.name != "checksums.json"}
    (model / "checksums.json").write_text(json.dumps(sums, indent=1) + "\n")
    build = {"seed": args.seed, "steps": args.steps, "batch": args.batch, "lr": args.lr, "threads": 1,
             "train_seconds": round(seconds, 1), "heavy": args.heavy, "light": args.light, "gallery": args.gallery}
    (HERE / ".cache" / "build.json").write_text(json.dumps(build, indent=1))
    log(f"export: {model} ({sum((model / k).stat().st_size for k in sums) / 1e6:.1f} MB)")


def stage_measure(args) -> None:
    """Plain sampling's AMS/UMS (N images per seed, ``--measure-seeds`` seeds) into metrics.json."""
    from membench_eval.extraction.run import ExtractionSettings, run_extraction
    from membench_eval.extraction.suite import get_uncond_suite

    suite = get_uncond_suite("mini-uncond")
    t = time.time()
    result = run_extraction(suite, "plain", ExtractionSettings(n_generated=args.measure_n, seeds=args.measure_seeds),
                            store=HERE / ".cache" / "store", progress=False)
    build_file = HERE / ".cache" / "build.json"
    metrics = {"build": json.loads(build_file.read_text()) if build_file.exists() else None,
               "plain_sampling": result.summary(), "measure_seconds": round(time.time() - t, 1)}
    (HERE / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    log(json.dumps(metrics["plain_sampling"], indent=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stage", choices=("data", "train", "export", "measure", "all"), default="all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=3500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--heavy", type=int, default=16, help="copies of each of photos 0-7")
    ap.add_argument("--light", type=int, default=4, help="copies of each of photos 8-15")
    ap.add_argument("--gallery", type=int, default=16, help="non-duplicated gallery images")
    ap.add_argument("--measure-n", type=int, default=64, help="generated images per seed when measuring")
    ap.add_argument("--measure-seeds", type=int, default=3)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    if args.stage in ("data", "all"):
        manifest = stage_data(args)
    else:
        manifest = json.loads((HERE / "train.json").read_text())
    if args.stage in ("train", "export", "all"):
        unet, seconds = stage_train(args, manifest)
        if args.stage in ("export", "all"):
            stage_export(unet, seconds, args)
    if args.stage in ("measure", "all"):
        stage_measure(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
