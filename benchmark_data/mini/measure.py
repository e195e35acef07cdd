"""What build.py measures on the saved mini model, loaded as users load it (from_pretrained).

Every figure the mini README quotes comes from here (metrics.json), so the two cannot disagree.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from dataset import RES, Dataset, load_photo
from diffusion_stage import BosShareProcessor, install_processor
from vae_stage import vae_recon


class SSCD:
    """The harness's own SSCD backend (sscd_disc_mixup int8 ONNX): images -> 512-d unit vectors."""

    def __init__(self) -> None:
        from membench_eval.metrics.sscd import load_sscd

        self.model = load_sscd("disc_mixup_onnx")

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        return np.asarray(self.model.embed(list(images)), dtype=np.float32)


def image_seed(base: int, prompt_index: int, image_index: int) -> int:
    """Per-image seed: images do not depend on batch composition."""
    return (base * 1_000_003 + prompt_index * 1_009 + image_index) % (2**31 - 1)


def generate(pipe, prompts: list[str], n: int, seed: int, steps: int, guidance: float, batch: int = 40):
    """``n`` images per prompt, each with its own torch.Generator. Returns list (per prompt) of lists."""
    import torch

    jobs = [(p, i, k) for i, p in enumerate(prompts) for k in range(n)]
    images: list[list[np.ndarray]] = [[] for _ in prompts]
    for s in range(0, len(jobs), batch):
        chunk = jobs[s:s + batch]
        gens = [torch.Generator().manual_seed(image_seed(seed, i, k)) for _, i, k in chunk]
        with torch.no_grad():
            out = pipe([p for p, _, _ in chunk], num_inference_steps=steps, guidance_scale=guidance,
                       generator=gens, height=RES, width=RES, output_type="np").images
        for (_, i, _), im in zip(chunk, out):
            images[i].append((np.clip(im, 0, 1) * 255).round().astype(np.uint8))
    return images


def token_norm_ratio(pipe, captions: list[str]) -> dict[str, float]:
    """Median embedding-row norm of token ids no caption uses vs of those the captions use.

    RTA draws random ids from the whole table: near 1 means a random token is as large a vector
    as a trained word (as in SD), near 0 means RTA inserts near-zero vectors (mini v1).
    """
    import torch

    table = pipe.text_encoder.get_input_embeddings().weight.detach().float()
    used = sorted({i for c in captions for i in pipe.tokenizer(c).input_ids})
    mask = torch.zeros(len(table), dtype=torch.bool)
    mask[torch.tensor(used)] = True
    norms = table.norm(dim=1)
    trained, untrained = float(norms[mask].median()), float(norms[~mask].median())
    return {"trained_median": round(trained, 4), "untrained_median": round(untrained, 4),
            "ratio": round(untrained / trained, 4), "n_trained_ids": len(used)}


def detection_figures(pipe, trigger: list[str], general: list[str], n_images: int = 10) -> dict:
    """Trigger vs general separation by the harness's detection scores, and Wen's first-step norm.

    ``wen_first_step_norm``: ``||eps_c - eps_u||_2`` at the first DDIM step (t = 951 of 20 steps)
    over the 10 images of a prompt jointly, as Wen's mitigation thresholds it (l). The paper's l
    sweep (7..2) was set for SD's 64x64x4 latents; these are the mini's own norms.
    """
    import torch

    from membench_eval.detection.roc import detection_metrics
    from membench_eval.detection.signal import (encode_prompts, latent_geometry, seeded_latents,
                                                single_step_scores, trajectory_scores)

    prompts = list(trigger) + list(general)
    single = [detection_metrics(*np.split(single_step_scores(pipe, prompts, seed=s, height=RES, width=RES), [len(trigger)])).auc
              for s in (0, 1)]
    traj = trajectory_scores(pipe, prompts, num_images=2, num_inference_steps=20, height=RES, width=RES)
    geometry = latent_geometry(pipe, RES, RES)
    sched = pipe.scheduler
    sched.set_timesteps(20)
    t = sched.timesteps[0]
    latents = seeded_latents(pipe, list(range(n_images)), geometry)
    norms = []
    with torch.inference_mode():
        uncond = pipe.unet(latents, t, encoder_hidden_states=encode_prompts(pipe, [""]).expand(n_images, -1, -1)).sample
        for p in prompts:
            cond = pipe.unet(latents, t, encoder_hidden_states=encode_prompts(pipe, [p]).expand(n_images, -1, -1)).sample
            norms.append(float((cond - uncond).flatten().norm()))
    norms_t, norms_g = np.array(norms[:len(trigger)]), np.array(norms[len(trigger):])
    return {
        "single_step_auc_seed0": _r(single[0]), "single_step_auc_seed1": _r(single[1]),
        "trajectory_auc": _r(detection_metrics(traj[:len(trigger)], traj[len(trigger):]).auc),
        "wen_first_step_norm_trigger": {"min": _r(norms_t.min()), "median": _r(np.median(norms_t)), "max": _r(norms_t.max())},
        "wen_first_step_norm_general": {"min": _r(norms_g.min()), "median": _r(np.median(norms_g)), "max": _r(norms_g.max())},
        "wen_first_step_norm_images": n_images,
    }


def _r(x: float) -> float:
    return round(float(x), 4)


def evaluate(model_dir: Path, out: Path, data: Dataset, *, seed: int = 1234, steps: int = 20, guidance: float = 7.5,
             n_trigger: int = 10, log=print) -> dict:
    """Load the saved pipeline, generate with the suite's settings, score with real SSCD."""
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(model_dir, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    sscd = SSCD()
    names = [src.name for src, _ in data.memorized]
    refs = [np.asarray(Image.open(out / "references" / f"{n}.png").convert("RGB")) for n in names]
    ref_emb = sscd.embed(refs)
    pairwise = ref_emb @ ref_emb.T
    np.fill_diagonal(pairwise, -1.0)
    closest = {n: {"to": names[int(pairwise[i].argmax())], "sscd": _r(pairwise[i].max())} for i, n in enumerate(names)}
    full_emb = sscd.embed([load_photo(src.loader) for src, _ in data.memorized])
    recon_emb = sscd.embed(vae_recon(pipe.vae, refs))
    metrics: dict = {
        "n_memorized": len(names),
        "copies": {src.name: src.copies for src, _ in data.memorized},
        "vae_recon_sscd": {n: _r(v) for n, v in zip(names, (ref_emb * recon_emb).sum(1))},
        "full_photo_vs_reference_sscd": {n: _r(v) for n, v in zip(names, (ref_emb * full_emb).sum(1))},
        "reference_pairwise_sscd": {"max": _r(pairwise.max()), "closest": closest},
        "token_norms": token_norm_ratio(pipe, [c for src, _ in data.memorized for c in src.captions]
                                        + [c for _, c in data.general]),
    }

    trig = data.trigger_prompts
    proc = BosShareProcessor(rows="second_half")  # CFG batch = [uncond, cond]: the conditional half
    default_processors = dict(pipe.unet.attn_processors)
    install_processor(pipe.unet, proc)
    t0 = time.time()
    gen = generate(pipe, [c for c, _, _ in trig], n_trigger, seed, steps, guidance)
    dt = time.time() - t0
    pipe.unet.set_attn_processor(default_processors)
    top1 = [float((sscd.embed(ims) @ ref_emb[j]).max()) for (_, j, _), ims in zip(trig, gen)]

    def mean_where(pred) -> float:
        return _r(np.mean([v for (c, j, k), v in zip(trig, top1) if pred(j, k)]))

    per_image = {n: mean_where(lambda j, k, i=i: j == i and k == "trained") for i, n in enumerate(names)}
    bos = proc.mass / max(proc.count, 1)
    gen_g = generate(pipe, data.general_prompts, 1, seed + 1, steps, guidance)
    best = (sscd.embed([ims[0] for ims in gen_g]) @ ref_emb.T).max(1)
    tiers = sorted({src.copies for src, _ in data.memorized})
    metrics.update({
        "trigger_top1_mean": mean_where(lambda j, k: k == "trained"),
        "trigger_top1_min_photo": min(per_image.values()),
        "paraphrase_top1_mean": mean_where(lambda j, k: k == "paraphrase"),
        "trigger_top1_per_image": per_image,
        "paraphrase_top1_per_image": {n: mean_where(lambda j, k, i=i: j == i and k == "paraphrase")
                                      for i, n in enumerate(names)},
        "trigger_top1_per_tier": {str(t): mean_where(lambda j, k, t=t: k == "trained" and data.memorized[j][0].copies == t)
                                  for t in tiers},
        "trigger_top1_per_prompt": {c: _r(v) for (c, _, _), v in zip(trig, top1)},
        "general_best_match_mean": _r(best.mean()),
        "general_best_match_max": _r(best.max()),
        "bos_cross_attention_share": _r(bos),
        "seconds_per_image": _r(dt / (len(trig) * n_trigger)),
        "settings": {"seed": seed, "steps": steps, "guidance": guidance, "images_per_trigger_prompt": n_trigger,
                     "threads": torch.get_num_threads()},
    })
    metrics["detection"] = detection_figures(pipe, [c for c, _, k in trig if k == "trained"], data.general_prompts)
    log("measured: " + ", ".join(f"{k} {metrics[k]}" for k in (
        "trigger_top1_mean", "trigger_top1_min_photo", "paraphrase_top1_mean", "general_best_match_mean",
        "bos_cross_attention_share")) + f", token norms {metrics['token_norms']}")
    if (out / ".cache").exists():
        rows = [np.concatenate([refs[j]] + ims[:5], 1) for (c, j, k), ims in zip(trig, gen) if k == "paraphrase"]
        Image.fromarray(np.concatenate(rows, 0)).save(out / ".cache" / "eval_grid.png")
        Image.fromarray(np.concatenate([np.concatenate([r, i[0]], 1) for r, i in
                                        zip(data.general_prompt_images, gen_g)], 0)).save(out / ".cache" / "general_grid.png")
    return metrics
