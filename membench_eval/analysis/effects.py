"""The three measurements attribution compares prompt variants with, each per seeded image.

* ``signal_per_image``: Wen et al.'s single-step detection signal ``||eps(x_T, c) - eps(x_T, "")||^2``
  at t = T-1 (``detection.signal.single_step_scores``), one value per (prompt, seed): every variant
  of a prompt sees the same K latents, so a word's effect is a paired difference per image.
* ``token_gradients``: Wen et al.'s token attribution (ICLR 2024, "Detecting, Explaining, and
  Mitigating Memorization in Diffusion Models"; their ``get_text_cond_grad``): the gradient of the
  signal with respect to the text encoder's output embedding of each token (the UNet's
  conditioning), its L2 norm per token. Their code differentiates ``||eps_c - eps_u||`` at the
  first denoising step (``target_steps=[0]``); here the squared norm, the harness's detection
  signal: per image the two differ by the factor ``2 ||eps_c - eps_u||``, so the ranking of tokens
  within an image is the same.
* ``ImageScorer.own_top1``: images generated through ``generation.engine.generate`` into the run
  store (a rerun regenerates nothing), scored by SSCD through ``evaluation.scoring.score_keys`` (scores
  stored too), reduced to each image's best similarity to the prompt's memorized references.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline

    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.store.run_store import RunStore


def signal_per_image(pipe: "StableDiffusionPipeline", texts: Sequence[str], seeds: Sequence[int],
                     settings: "GenerationSettings", *, timestep: int | None = None) -> np.ndarray:
    """(len(texts), len(seeds)) single-step signals; column k uses the latent seeded ``seeds[k]``."""
    from membench_eval.detection.signal import single_step_scores

    cols = [single_step_scores(pipe, list(texts), seed=int(s), height=settings.height, width=settings.width,
                               timestep=timestep) for s in seeds]
    return np.stack(cols, axis=1)


def token_gradients(pipe: "StableDiffusionPipeline", text: str, seeds: Sequence[int], settings: "GenerationSettings",
                    n_tokens: int, *, timestep: int | None = None) -> np.ndarray:
    """(len(seeds), n_tokens): per image, the L2 norm of d signal / d conditioning at each prompt
    token's position (1..n_tokens; BOS at 0 and the end/padding positions are left out, as in
    Wen et al.'s figure)."""
    import torch

    from membench_eval.detection.signal import encode_prompts, last_train_timestep, latent_geometry, seeded_latents
    from membench_eval.models.family import family_for

    geometry = latent_geometry(pipe, settings.height, settings.width)
    t = last_train_timestep(pipe) if timestep is None else int(timestep)
    latents = seeded_latents(pipe, [int(s) for s in seeds], geometry)
    if hasattr(pipe.scheduler, "scale_model_input"):
        latents = pipe.scheduler.scale_model_input(latents, t)
    k = len(seeds)
    family = family_for(pipe)
    with torch.no_grad():
        cond = encode_prompts(pipe, [text])
        uncond = family.predict(latents, t, encode_prompts(pipe, [""]).expand(k, -1, -1)).sample.float()
    # One leaf row per image: images are independent, so the gradient of the summed signal with
    # respect to row i is image i's own gradient.
    embeds = cond.expand(k, -1, -1).clone().requires_grad_(True)
    with torch.enable_grad():
        eps = family.predict(latents, t, embeds).sample.float()
        loss = ((eps - uncond) ** 2).sum()
        (grad,) = torch.autograd.grad(loss, [embeds])
    n = min(int(n_tokens), grad.shape[1] - 2)
    return grad[:, 1:1 + n].float().norm(dim=-1).double().cpu().numpy()


def variant_prompt_id(base_id: str, text: str) -> str:
    """The prompt id a variant's images are stored under: the base id plus a hash of the text."""
    return f"{base_id}~{hashlib.sha256(text.encode('utf-8')).hexdigest()[:10]}"


@dataclass
class _ScoringContext:
    """What ``evaluation.scoring.score_keys`` reads (SSCD only: attribution needs no CLIP score)."""

    sscd: Any
    reference_embeddings: dict[str, np.ndarray]
    store: "RunStore"
    settings: "GenerationSettings"
    quality_scorers: dict[str, Any] = field(default_factory=dict)
    options: Any = None
    counts: dict[str, int] = field(default_factory=lambda: {"scored": 0, "scores_reused": 0})


class ImageScorer:
    """Generates K seeded images per prompt text into the store and scores them by SSCD.

    Every text of one attribution uses the base prompt's seeds (``image_seed(run seed, base id,
    i)``), so image i of every variant starts from the same noise: the effect of a word is the
    paired difference per image. Every text is stored under ``variant_prompt_id`` (base id + text
    hash): the same text asked twice (attribution, then the minimal-trigger search) is generated once."""

    def __init__(self, pipe: "StableDiffusionPipeline", sscd: Any, reference_embeddings: dict[str, np.ndarray],
                 store: "RunStore", settings: "GenerationSettings", *, progress: bool = False):
        self.pipe, self.settings, self.progress = pipe, settings, progress
        self.ctx = _ScoringContext(sscd, reference_embeddings, store, settings)
        self.generated = 0
        self.reused = 0

    def seeds(self, base_id: str, k: int) -> list[int]:
        from membench_eval.generation.seeding import image_seed

        return [image_seed(self.settings.seed, base_id, i) for i in range(k)]

    def similarities(self, texts: Sequence[str], base_id: str, k: int) -> list[list[dict[str, float]]]:
        """Per text, per image: SSCD to every available reference (``{image id: similarity}``);
        every text on the seeds of ``base_id``."""
        return self.similarities_of([(t, base_id) for t in texts], k)

    def similarities_of(self, items: Sequence[tuple[str, str]], k: int) -> list[list[dict[str, float]]]:
        """``similarities`` for (text, base id) pairs, each text on its own base id's seeds."""
        from membench_eval.generation.engine import generate
        from membench_eval.evaluation.scoring import score_keys
        from membench_eval.mitigation import ImageRequest

        unique = list(dict.fromkeys(items))
        requests = []
        for text, base_id in unique:
            seeds = self.seeds(base_id, k)
            pid = variant_prompt_id(base_id, text)  # the same text, the same images, whoever asks
            requests += [ImageRequest(prompt_id=pid, prompt=text, image_index=i, seed=seeds[i]) for i in range(k)]
        report = generate(self.pipe, requests, None, self.settings, self.ctx.store, progress=self.progress,
                          background=False)
        self.generated += report.new
        self.reused += report.reused
        rows = score_keys(self.ctx, report.keys, [r.prompt for r in requests])
        per_item = {item: [rows[report.keys[j * k + i]]["sscd"] for i in range(k)] for j, item in enumerate(unique)}
        return [per_item[item] for item in items]

    def own_top1(self, texts: Sequence[str], base_id: str, k: int, own: Sequence[str]) -> np.ndarray:
        """(len(texts), k): each image's best SSCD to the references ``own``."""
        sims = self.similarities(texts, base_id, k)
        return np.array([[max(row[i] for i in own) for row in per_image] for per_image in sims], dtype=np.float64)
