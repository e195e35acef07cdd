"""Wen et al.'s memorization signal read at one step: MemBench's search score.

Wen, Liu, Chen, Lyu. "Detecting, Explaining, and Mitigating Memorization in Diffusion Models".
ICLR 2024 (the text-conditional noise magnitude). This one-step reading is the score MemBench
(Hong, Oh, Sung 2024) uses to search for memorized prompts (``get_SD_score`` in its reference
code); the formula and defaults are those of ``membench_eval.detection.signal.single_step_scores``,
which this file calls (the signal is not re-implemented here).

Score, per prompt p, on one seeded initial latent x_T (t = T - 1 = 999 for SD's 1000-step
training schedule, the noisiest training timestep, not a sampling-schedule step)::

    score(p) = || eps(x_T, t, p) - eps(x_T, t, "") ||_2^2        (squared L2 over C x H x W)

Higher = more memorized: a memorized prompt drags the noise prediction far from the
unconditional one already at pure noise.

Defaults: ``seed`` 0, one latent shared by every prompt (the reference draws one latent per search
step and scores all 200 candidates on it; scoring prompts on the same noise removes the noise's
variance from the comparison). ``seed = -1`` scores each prompt on its own latent, seeded by the
runner's per-prompt seed (``ctx.requests[i].seed``). The image size is the run's (``ctx.height``
x ``ctx.width``); the latent is drawn on the CPU, so it is the same on every device.

Cost in UNet rows per prompt: 1 (its conditional row) plus one unconditional row per batch,
shared by the batch's prompts (1 + 1/batch); with ``seed = -1``, 2 (each prompt has its own
latent, so its own unconditional row). Per-prompt independence: every prompt of a batch sees the
same latent and the same unconditional prediction, so its score does not depend on its neighbours.

Measured on the miniature model (16 trigger vs 30 general prompts, per-prompt seeds from run seed
0, 20 DDIM steps, g 7.5, 64x64; ``tests/detection/test_detectors.py``): ROC AUC 0.952 (seed 0).

Differences from MemBench's reference (as ``signal.py`` records it; its code was not re-read for
this file): none in the formula; the latent is drawn from a CPU generator seeded by ``seed``.

Families (``needs``: cfg): the guidance vector's norm at the first step: every family with real CFG
(IF: stage I).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from membench_eval.detection.signal import single_step_scores
from membench_eval.detector import DetectionContext, Detector
from membench_eval.errors import DetectorError

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline


class WenSingleStep(Detector):
    """||eps_c - eps_u||^2 at t = 999 on one seeded latent (MemBench's search score)."""

    name = "wen_single"
    needs = frozenset({"cfg"})
    paper = ("Wen et al. 2024, Detecting, Explaining, and Mitigating Memorization in Diffusion Models "
             "(MemBench's one-step score)")

    seed: int = 0

    def __post_init__(self) -> None:
        if self.seed < -1:
            raise DetectorError(f"wen_single: seed must be >= 0, or -1 for each prompt's own seed, got {self.seed}")

    def score(self, pipe: "StableDiffusionPipeline", ctx: DetectionContext) -> list[float]:
        size = dict(height=ctx.height, width=ctx.width)
        if self.seed >= 0:
            out = single_step_scores(pipe, ctx.prompts, seed=self.seed, batch_size=max(1, len(ctx.prompts)), **size)
            return [float(s) for s in out]
        return [float(single_step_scores(pipe, [r.prompt], seed=r.seed, **size)[0]) for r in ctx.requests]
