"""Wen et al.'s detection statistic: the text-conditional noise magnitude over a whole generation.

Wen, Liu, Chen, Lyu. "Detecting, Explaining, and Mitigating Memorization in Diffusion Models".
ICLR 2024. Checked against the public code, YuxinWenRick/diffusion_memorization @ c8fe471:
``detect_mem.py`` (defaults: 4 images per prompt, 50 DDIM steps, guidance 7.5, fp16),
``local_sd_pipeline.py`` (``track_noise_norm``: per image and step ``||eps_c - eps_u||_2``) and
``examples/det_mem_viz.ipynb`` (aggregation: mean over the 4 generations and steps 0..50, then
ROC AUC with memorized = positive). The computation is the harness's
``membench_eval.detection.signal.trajectory_scores``, which this file calls.

Score, per prompt p: run classifier-free-guided sampling (the pipeline's scheduler, DDIM for the
benchmark models, ``ctx.num_inference_steps`` steps, guidance ``ctx.guidance_scale``) from
``images`` seeded latents, and average the per-step L2 norm of the text-conditional difference::

    score(p) = mean_{k < images} mean_{steps t} || eps(x_t^k, t, p) - eps(x_t^k, t, "") ||_2

Higher = more memorized (Wen's reading). Defaults: ``images`` 4 (``--num_images_per_prompt``);
image k starts from the latent seeded ``seed + k`` with ``seed`` 0, the same noise for every
prompt (the harness's signal); ``seed = -1`` uses each prompt's runner seed
(``ctx.requests[i].seed + k``), which is what Wen's script does (prompt i seeded ``i + gen_seed``).

Cost in UNet rows per prompt: 2 x images x steps (one CFG call per step per image; no row is
shared, the trajectories differ per prompt): 2 x 4 x 50 = 400 for SD1.4, 160 on the miniature
model (20 steps). Per-prompt independence: every image row evolves on its own; the batch only
stacks them.

Measured on the miniature model (16 trigger vs 30 general prompts, per-prompt seeds from run seed
0, 20 DDIM steps, g 7.5, 64x64; ``tests/detection/test_detectors.py``): ROC AUC 0.215 (images 4), 0.177
(images 1), i.e. INVERTED, and that is reported as measured. Why (``benchmark_data/mini/README.md``): the
first step separates (AUC 0.96), but from the second step on the unconditional prediction already
heads for a memorized photo, so on a trigger trajectory eps_c ~ eps_u while a general prompt pulls
away from it; the last steps' large norms carry no signal. On SD the full-trajectory mean is Wen's
headline detector; on the mini it is not.

Differences from the reference: (1) by default every prompt is scored on the same ``images``
latents (Wen: one seed per prompt; ``seed = -1``); (2) latents come from CPU generators seeded
per image, not a global GPU RNG; float32 on CPU, the reference fp16 on GPU. The guidance loop is
the harness's (byte-identical to the pipeline's).

Families (``needs``: cfg): the guidance vector's norm over a trajectory: every family with real CFG
(IF: stage I).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from membench_eval.detection.signal import trajectory_scores
from membench_eval.detector import DetectionContext, Detector
from membench_eval.errors import DetectorError

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline


class WenTrajectory(Detector):
    """Mean over images and DDIM steps of ||eps_c - eps_u||_2 (Wen et al.'s detection statistic)."""

    name = "wen_trajectory"
    needs = frozenset({"cfg"})
    paper = "Wen et al. 2024, Detecting, Explaining, and Mitigating Memorization in Diffusion Models"

    images: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.images < 1:
            raise DetectorError(f"wen_trajectory: images must be >= 1, got {self.images}")
        if self.seed < -1:
            raise DetectorError(f"wen_trajectory: seed must be >= 0, or -1 for each prompt's own seed, got {self.seed}")

    def score(self, pipe: "StableDiffusionPipeline", ctx: DetectionContext) -> list[float]:
        kw = dict(num_images=self.images, num_inference_steps=ctx.num_inference_steps,
                  guidance_scale=ctx.guidance_scale, height=ctx.height, width=ctx.width)
        if self.seed >= 0:
            out = trajectory_scores(pipe, ctx.prompts, seed=self.seed, batch_size=max(1, len(ctx.prompts)), **kw)
            return [float(s) for s in out]
        return [float(trajectory_scores(pipe, [r.prompt], seed=r.seed, **kw)[0]) for r in ctx.requests]
