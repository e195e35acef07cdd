"""The mini CLIP: a small open_clip dual encoder trained on the mini's own images and captions.

Why: no CLIP weights exist offline, so on the mini suite the CLIP columns (prompt fidelity, half of
MemBench's trade-off) were empty, and a method returning noise looked like a perfect mitigation.
This stage trains a real open_clip ``CLIP`` (the library's model config system: ``mini-clip.json``,
the real CLIP BPE tokenizer, open_clip's own image transform and checkpoint loading) contrastively
on the build's training pairs, so the harness scores mini through exactly the code path it uses for
ViT-g-14 (raw cosine of L2-normalised embeddings, explicit truncation).

Generalisation, not memorization: the general prompts are held-out combinations of the training
vocabulary (scale, tint, subject, region; shape, colours, position). Augmentations teach the image
tower what does NOT change a caption: small shifts, brightness/contrast, blur, noise, and round
trips through the mini VAE (generated images look like that); no flips (captions name positions).
A validation split of the training pairs (never trained on) picks the checkpoint: the step with
the best validation retrieval, before the model only memorizes.

Validity is measured on ground truth the model never saw: the build's own renders of the 30 general
prompts, each ranked against every mini prompt (triggers + generals). Run as
``python benchmark_data/mini/build.py --stage clip``.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

CLIP_DIR = "clip"
CONFIG_NAME = "mini-clip"
WEIGHTS_FILE = "open_clip_model.safetensors"
CHECKSUMS_FILE = "checksums.json"
MEMORIZED_PER_BATCH = 8  # of 64 slots (distinct photos per batch)
# Narrow text tower: the 49408-row token table dominates the file (49408 x 64 x fp16 = 6.3 MB).
CONFIG: dict[str, Any] = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 64, "layers": 3, "width": 128, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 3},
}


def write_config(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{CONFIG_NAME}.json"
    path.write_text(json.dumps(CONFIG, indent=1) + "\n")
    return path


def _augment(img: np.ndarray, rng: random.Random, np_rng: np.random.Generator) -> np.ndarray:
    """One random view of a 64x64 image: shift, brightness/contrast, blur, noise (no flips)."""
    a = img.astype(np.float32)
    dx, dy = rng.randint(-5, 5), rng.randint(-5, 5)
    a = np.pad(a, ((5, 5), (5, 5), (0, 0)), mode="edge")[5 + dy: 5 + dy + img.shape[0], 5 + dx: 5 + dx + img.shape[1]]
    mean = a.mean()
    a = (a - mean) * rng.uniform(0.8, 1.2) + mean * rng.uniform(0.85, 1.15)
    if rng.random() < 0.5:
        im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
        a = np.asarray(im, dtype=np.float32)
    if rng.random() < 0.5:
        a = a + np_rng.normal(0, rng.uniform(2, 10), a.shape)
    return np.clip(a, 0, 255).astype(np.uint8)


def _vae_views(vae, images: list[np.ndarray], n: int, seed: int, to_tensor, to_uint8) -> list[list[np.ndarray]]:
    """``n`` VAE round trips of every image (the decoder's look), with a little latent noise;
    ``to_tensor`` / ``to_uint8`` are the build's own image <-> [-1, 1] tensor conversions."""
    import torch

    g = torch.Generator().manual_seed(seed)
    views: list[list[np.ndarray]] = [[] for _ in images]
    with torch.no_grad():
        for start in range(0, len(images), 32):
            lat = vae.encode(to_tensor(images[start:start + 32])).latent_dist.mean
            for _ in range(n):
                noisy = lat + 0.15 * lat.std() * torch.randn(lat.shape, generator=g)
                for j, out in enumerate(to_uint8(vae.decode(noisy).sample)):
                    views[start + j].append(out)
    return views


def train_mini_clip(data, vae, out: Path, *, to_tensor, to_uint8, seed: int, steps: int = 1200, batch: int = 64,
                    val_fraction: float = 0.15, ema: float = 0.995, log=print) -> dict[str, Any]:
    """Train, keep the best-validation checkpoint of the weights' exponential moving average
    (``ema``: much less step-to-step noise than the raw weights), save fp16 safetensors."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder = out / CLIP_DIR
    open_clip.add_model_config(write_config(folder))
    torch.manual_seed(seed)
    model = open_clip.create_model(CONFIG_NAME)
    averaged = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(ema))
    preprocess = open_clip.image_transform(CONFIG["vision_cfg"]["image_size"], is_train=False)
    tokenizer = open_clip.get_tokenizer(CONFIG_NAME)

    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    pairs = [(img, list(src.captions)) for src, img in data.memorized] + [(img, [cap]) for img, cap in data.general]
    general_idx = list(range(len(data.memorized), len(pairs)))
    rng.shuffle(general_idx)
    val = sorted(general_idx[: int(round(val_fraction * len(general_idx)))])
    train = [i for i in range(len(pairs)) if i not in set(val)]
    # Caption-space augmentation: renders of unused attribute combinations (no general prompt's).
    first_pool = len(pairs)
    pairs += [(img, [cap]) for img, cap in data.compositional_pool]
    train += list(range(first_pool, len(pairs)))
    memorized_train = [i for i in train if i < len(data.memorized)]
    other_train = [i for i in train if i >= len(data.memorized)]
    views = _vae_views(vae, [p[0] for p in pairs], 2, seed, to_tensor, to_uint8)

    def to_batch(arrays: list[np.ndarray]):
        return torch.stack([preprocess(Image.fromarray(a)) for a in arrays])

    all_prompts = [c for c, _, _ in data.benchmark_prompts] + list(data.general_prompts)
    val_texts = [pairs[i][1][0] for i in val]

    def retrieval(images: list[np.ndarray], texts: list[str], candidates: list[str]) -> tuple[float, float, float]:
        """(top-1, top-5, mean reciprocal rank) of each image's own text among ``candidates``."""
        with torch.no_grad():
            im = torch.nn.functional.normalize(model.encode_image(to_batch(images)), dim=-1)
            tx = torch.nn.functional.normalize(model.encode_text(tokenizer(candidates)), dim=-1)
        ranks = (im @ tx.T).argsort(dim=1, descending=True)
        where = [ranks[i].tolist().index(candidates.index(t)) for i, t in enumerate(texts)]
        return (float(np.mean([w == 0 for w in where])), float(np.mean([w < 5 for w in where])),
                float(np.mean([1.0 / (w + 1) for w in where])))

    optim = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    history = []
    t0 = time.time()
    for step in range(1, steps + 1):
        model.train()
        # Distinct images (no false negatives); MEMORIZED_PER_BATCH of them memorized photos, which
        # are duplicated in the generator's data too: drawn uniformly, each of the 16 photos came up
        # ~26 times in 1200 steps and base trigger images found their own photo's caption first for
        # only 8% of them (v2 measurement).
        chosen = rng.sample(memorized_train, MEMORIZED_PER_BATCH) + rng.sample(other_train, batch - MEMORIZED_PER_BATCH)
        imgs = []
        for i in chosen:
            base = pairs[i][0] if rng.random() < 0.5 else rng.choice(views[i])
            imgs.append(_augment(base, rng, np_rng))
        texts = [rng.choice(pairs[i][1]) for i in chosen]
        im = torch.nn.functional.normalize(model.encode_image(to_batch(imgs)), dim=-1)
        tx = torch.nn.functional.normalize(model.encode_text(tokenizer(texts)), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * im @ tx.T
        target = torch.arange(len(chosen))
        loss = (torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)) / 2
        optim.zero_grad()
        loss.backward()
        optim.step()
        sched.step()
        averaged.update_parameters(model)
        if step % 100 == 0 or step == steps:
            live = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.load_state_dict(averaged.module.state_dict())  # measure the average
            model.eval()
            # Validation: each held-out pair as drawn and after two VAE round trips (less noise
            # than 1 view); scored by mean reciprocal rank (continuous, so fewer ties than top-k).
            v_images = [pairs[i][0] for i in val] + [views[i][k] for k in (0, 1) for i in val]
            v1, v5, mrr = retrieval(v_images, val_texts * 3, all_prompts + val_texts)
            g1, g5, _ = retrieval(data.general_prompt_images, list(data.general_prompts), all_prompts)
            history.append({"step": step, "loss": round(loss.item(), 4), "val_top1": v1, "val_top5": v5,
                            "val_mrr": round(mrr, 4), "renders_top1": g1, "renders_top5": g5})
            log(f"mini clip step {step}: loss {loss.item():.3f}, validation top-1 {v1:.2f} top-5 {v5:.2f} "
                f"MRR {mrr:.3f}, general renders top-1 {g1:.2f} top-5 {g5:.2f} ({time.time() - t0:.0f} s)")
            score = mrr  # selection uses the validation split only, never the renders
            if best is None or score > best[0]:
                best = (score, step, {k: v.detach().clone() for k, v in model.state_dict().items()})
            model.load_state_dict(live)  # back to the live weights for training
    assert best is not None
    model.load_state_dict(best[2])
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, folder / WEIGHTS_FILE)
    (folder / WEIGHTS_FILE).chmod(0o644)  # save_file writes 0600; shipped files are world-readable
    from membench_eval.fetch.download import file_sha256

    digest = file_sha256(folder / WEIGHTS_FILE)
    (folder / CHECKSUMS_FILE).write_text(json.dumps({WEIGHTS_FILE: digest}, indent=1) + "\n")
    chosen_row = next(h for h in history if h["step"] == best[1])
    return {"steps": steps, "selected_step": best[1], "seconds": round(time.time() - t0, 1),
            "n_train_pairs": len(train), "n_val_pairs": len(val), "n_pool_pairs": len(pairs) - first_pool, "selected": chosen_row, "history": history,
            "file_bytes": (folder / WEIGHTS_FILE).stat().st_size, "sha256": digest,
            "parameters": sum(v.numel() for v in state.values())}


def measure_validity(data, out: Path, *, seed: int = 1234) -> dict[str, Any]:
    """The shipped weights through the harness's own CLIP scorer (the ViT-g-14 code path):

    - ground truth: the build's renders of the 30 general prompts ranked against all mini prompts;
    - the mini model's base generations (suite settings): general prompts ranked the same way, and
      trigger images ranked against all prompts (prompt level: their own caption first; photo
      level: any caption of their memorized photo first). These measure the model, not the scorer.
    """
    import torch

    from membench_eval.generation.engine import generate
    from membench_eval.models.loading import load_pipeline
    from membench_eval.generation.seeding import plan_requests
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.metrics.clip_score import ClipScorer
    from membench_eval.store.run_store import RunStore
    from membench_eval.suites.mini import load_mini_suite

    import tempfile

    torch.manual_seed(seed)
    scorer = ClipScorer(CONFIG_NAME, str(out / CLIP_DIR / WEIGHTS_FILE), "cpu")
    suite = load_mini_suite(out)
    triggers = [p.text for p in suite.trigger.prompts]
    general = [p.text for p in suite.general.prompts]
    candidates = triggers + general
    text = scorer.embed_texts(candidates)

    def ranks(images: list, wanted: list[set[int]]) -> list[int]:
        sims = scorer.embed_images(images) @ text.T
        order = np.argsort(-sims, axis=1)
        return [min(list(row).index(w) for w in want) for row, want in zip(order, wanted)]

    g = ranks(list(data.general_prompt_images), [{len(triggers) + i} for i in range(len(general))])
    pipe = load_pipeline(suite.model, device="cpu")
    settings = GenerationSettings.for_suite(suite)
    photo_of = {p.text: p.memorized_ids for p in suite.trigger.prompts}
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp)
        rep_g = generate(pipe, plan_requests(suite.general.prompts, 1, 0), None, settings, store, progress=False)
        trig_reqs = plan_requests(suite.trigger.prompts, 2, 0)
        rep_t = generate(pipe, trig_reqs, None, settings, store, progress=False)
        gen_images = [store.get_image(k) for k in rep_g.keys]
        trig_images = [store.get_image(k) for k in rep_t.keys]
    bg = ranks(gen_images, [{len(triggers) + i} for i in range(len(general))])
    own = ranks(trig_images, [{triggers.index(r.prompt)} for r in trig_reqs])
    same_photo = [{j for j, t in enumerate(triggers) if set(photo_of[t]) & set(photo_of[r.prompt])} for r in trig_reqs]
    photo = ranks(trig_images, same_photo)
    return {
        "candidates": len(candidates),
        "renders_top1": float(np.mean([r == 0 for r in g])), "renders_top5": float(np.mean([r < 5 for r in g])),
        "base_general_top1": float(np.mean([r == 0 for r in bg])),
        "base_general_top5": float(np.mean([r < 5 for r in bg])),
        "base_trigger_prompt_top1": float(np.mean([r == 0 for r in own])),
        "base_trigger_photo_top1": float(np.mean([r == 0 for r in photo])),
        "trigger_images_per_prompt": 2,
    }
