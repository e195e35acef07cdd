"""What build.py measures on the saved mini-sd3 (loaded as users load it), with the mini's
instruments: the harness's SSCD backend, the mini's references, prompts and per-image seeds.

Every figure the README quotes comes from here (metrics.json), so the two cannot disagree.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from dataset import RES, Dataset
from measure import SSCD, generate  # the mini's: same backend, same per-image seeds

MINI = Path(__file__).resolve().parent.parent / "mini"


def _r(x: float) -> float:
    return round(float(x), 4)


def first_step_guidance_norms(pipe, prompts: list[str], n_images: int = 10, steps: int = 20) -> list[float]:
    """Wen et al.'s detection signal on a flow model: ``||v_c - v_u||_2`` at the first sampling step,
    over ``n_images`` seeded latents of each prompt jointly (the velocity plays eps's role)."""
    import torch

    pipe.scheduler.set_timesteps(steps)
    t = pipe.scheduler.timesteps[0].expand(n_images)
    g = torch.Generator().manual_seed(0)
    side = RES // pipe.vae_scale_factor
    latents = torch.randn(n_images, pipe.transformer.config.in_channels, side, side, generator=g)
    norms = []
    with torch.inference_mode():
        for p in prompts:
            c, u, pc, pu = pipe.encode_prompt(p, None, None, negative_prompt="", do_classifier_free_guidance=True)
            vc = pipe.transformer(latents, c.expand(n_images, -1, -1), pc.expand(n_images, -1), t).sample
            vu = pipe.transformer(latents, u.expand(n_images, -1, -1), pu.expand(n_images, -1), t).sample
            norms.append(float((vc - vu).flatten().norm()))
    return norms


def evaluate(model_dir: Path, data: Dataset, *, seed: int = 1234, steps: int = 20, guidance: float = 7.5,
             n_trigger: int = 10, log=print) -> dict:
    """Trigger Top-1 per photo, general best match, first-step detection AUC, first-token attention mass."""
    import torch
    from diffusers import StableDiffusion3Pipeline

    from membench_eval.detection.roc import detection_metrics
    from zero_tokens import install

    pipe = StableDiffusion3Pipeline.from_pretrained(model_dir, text_encoder_3=None, tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    sscd = SSCD()
    names = [src.name for src, _ in data.memorized]
    ref_emb = sscd.embed([np.asarray(Image.open(MINI / "references" / f"{n}.png").convert("RGB")) for n in names])
    trig = [(src.captions[0], j) for j, (src, _) in enumerate(data.memorized)]  # the suite's trigger prompts
    previous, proc = install(pipe.transformer, count=1, record=True)  # count 1: unchanged attention, recorded
    t0 = time.time()
    gen = generate(pipe, [c for c, _ in trig], n_trigger, seed, steps, guidance)
    dt = time.time() - t0
    pipe.transformer.set_attn_processor(previous)
    top1 = {names[j]: _r((sscd.embed(ims) @ ref_emb[j]).max()) for (_, j), ims in zip(trig, gen)}
    gen_g = generate(pipe, data.general_prompts, 1, seed + 1, steps, guidance)
    best = (sscd.embed([ims[0] for ims in gen_g]) @ ref_emb.T).max(1)
    norms = first_step_guidance_norms(pipe, [c for c, _ in trig] + list(data.general_prompts), steps=steps)
    auc = detection_metrics(np.array(norms[:len(trig)]), np.array(norms[len(trig):])).auc
    metrics = {
        "trigger_top1_mean": _r(np.mean(list(top1.values()))),
        "trigger_top1_min_photo": min(top1.values()),
        "trigger_top1_per_image": top1,
        "general_best_match_mean": _r(best.mean()),
        "general_best_match_max": _r(best.max()),
        "first_step_guidance_auc": _r(auc),
        "first_text_token_attention_mass": _r(proc.mass / max(proc.rows, 1)),
        "seconds_per_image": _r(dt / (len(trig) * n_trigger)),
        "settings": {"seed": seed, "steps": steps, "guidance": guidance, "images_per_trigger_prompt": n_trigger,
                     "threads": torch.get_num_threads()},
    }
    log("measured: " + ", ".join(f"{k} {v}" for k, v in metrics.items() if not isinstance(v, dict)))
    return metrics
