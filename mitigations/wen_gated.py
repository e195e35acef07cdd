"""Detect-then-mitigate: Wen et al.'s mitigation, applied only to prompts Wen's detector flags.

Wen, Liu, Chen, Lyu. "Detecting, Explaining, and Mitigating Memorization in Diffusion Models".
ICLR 2024: the same signal, the text-conditional noise ``eps_cond - eps_uncond``, both detects
memorization and is what the mitigation minimises. Evaluated in MemBench's setting (Hong, Oh, Sung
2024). What it shows: whether mitigating only the prompts a calibrated detector flags keeps the
mitigation's effect on memorized (trigger) prompts while leaving general prompts untouched, i.e.
recovering their quality (an unflagged prompt's images are exactly those of no mitigation, given
the same batch shape).

Gate (``membench_eval.detection.gate``): per prompt text, Wen's single-step score
``||eps(x_T, p) - eps(x_T, "")||_2^2`` at t = T - 1 on one latent seeded 0 (the defaults and the
number of ``detectors/wen_single.py``, at the UNet's native size). A prompt is flagged when its
score is strictly above a threshold calibrated in ``setup`` on non-memorized prompts: the smallest
threshold with a false-positive rate <= ``fpr`` on them (``calibrate_threshold``). Calibrate on one
set, apply to another: ``calibration="auto"`` uses, on a miniature model (``mini`` or ``mini-sd3``,
trained on the same captions; recognised by its identity path), the training captions that are NOT memorized
(``benchmark_data/mini/training_captions.json`` "general", 2582, disjoint from the suite's 30
general and 16 trigger prompts), else Webster's ``nonmem500.txt`` (data layer,
``webster_nonmem500``); ``"mini"``/``"webster"`` force one; any other value is a one-prompt-per-line
file. At most ``MAX_CALIBRATION_PROMPTS`` distinct prompts are scored, evenly spaced over the list.

Flagged prompts: Wen's AdamW optimisation (``mitigations/wen.py``, unchanged; ``l`` as there, here
2.0, the paper's strongest) on their rows only; the other rows keep their embeddings bit for bit.

Cost in UNet rows: calibration once per pipeline and setting (``setup``, not charged to any image):
``MAX_CALIBRATION_PROMPTS`` + 1. Per batch, the gate scores its prompt texts not seen before, one
row each plus one unconditional row, i.e. about one row per prompt (a 10-image trigger prompt: 2
rows for 10 images); then Wen's cost on flagged prompts only (up to 1 + 11 rows per image, the
prompt's k images together), nothing on unflagged ones. Records per image: ``gate_score``,
``gate_threshold``, ``gate_flagged``, and Wen's (``wen_iterations``, ``wen_initial_loss``,
``wen_final_loss``) for flagged prompts.

Store key: ``wen.py`` is loaded by path (the loader imports method files by path, never through
``sys.path``, so ``from wen import ...`` cannot run); the import under ``TYPE_CHECKING`` below is
never executed but is what ``membench_eval.plugins.source`` reads, so ``wen.py`` is hashed into this
method's key, as are ``detection/gate.py`` and ``detection/signal.py`` (imported here directly:
harness helpers are hashed one level deep). The calibration data: the mini captions are built with
the mini model (a rebuild changes the model's identity too) and Webster's file is checked against
its sha256; a prompt file given by path is not hashed.

Families (``needs``: cfg, prompt_embeddings): as ``wen``: every family with real CFG.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from membench_eval.detection import signal as _signal  # noqa: F401  (hashed into the key: the score's code)
from membench_eval.detection.gate import ScoreGate, calibrate_threshold, wen_single_step_score_fn
from membench_eval.errors import MembenchError, MitigationError
from membench_eval.mitigation import BatchContext
from membench_eval.plugins.mitigations import find_class

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline

    from wen import WenEmbeddingOptimization
else:
    WenEmbeddingOptimization = find_class(Path(__file__).with_name("wen.py"), "wen")


class WenGated(WenEmbeddingOptimization):
    """Wen's embedding optimisation on the prompts Wen's single-step detector flags, others untouched."""

    name = "wen_gated"
    needs = frozenset({"cfg", "prompt_embeddings"})
    paper = ("Wen et al. 2024, Detecting, Explaining, and Mitigating Memorization in Diffusion Models "
             "(mitigation gated by its single-step detector at a calibrated FPR)")
    # Not a paper's sweep: the detector's target false-positive rate on non-memorized prompts.
    sweep = {"fpr": [0.01, 0.05, 0.1]}
    strongest = {"l": 2.0}
    setup_params = ("fpr", "calibration")

    MAX_CALIBRATION_PROMPTS: ClassVar[int] = 500
    SEED: ClassVar[int] = 0  # the detector's latent seed (detectors/wen_single.py's default)

    l: float = 2.0
    fpr: float = 0.01
    calibration: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.fpr < 1.0:
            raise MitigationError(f"wen_gated: fpr must be in [0, 1), got {self.fpr}")
        if not isinstance(self.calibration, str) or not self.calibration.strip():
            raise MitigationError("wen_gated: calibration must be 'auto', 'mini', 'webster' or a prompt file")

    # --- calibration ------------------------------------------------------------------------------

    def calibration_prompts(self, pipe: "StableDiffusionPipeline") -> tuple[str, list[str]]:
        """(source, prompts): the non-memorized prompts the threshold is calibrated on."""
        from membench_eval.models import is_model
        from membench_eval.paths import MINI_DIR
        from membench_eval.suites import MINI_SUITES, get_suite
        from membench_eval.fetch.download import resolve_file
        from membench_eval.suites.loaders import load_prompt_lines

        source = self.calibration
        if source == "auto":
            # mini and mini-sd3 were trained on the same captions
            source = "mini" if any(is_model(pipe, get_suite(s).model) for s in MINI_SUITES) else "webster"
        try:
            if source == "mini":
                captions = json.loads((MINI_DIR / "training_captions.json").read_text(encoding="utf-8"))
                prompts = list(captions["general"])
            elif source == "webster":
                prompts = load_prompt_lines(resolve_file("webster_nonmem500"))
            else:
                prompts = load_prompt_lines(source)
        except (MembenchError, OSError, KeyError, ValueError) as exc:
            raise MitigationError(f"wen_gated: cannot load the calibration prompts {source!r}: {exc}") from exc
        prompts = list(dict.fromkeys(prompts))
        k = self.MAX_CALIBRATION_PROMPTS
        if len(prompts) > k:
            prompts = [prompts[i * len(prompts) // k] for i in range(k)]
        if not prompts:
            raise MitigationError(f"wen_gated: the calibration set {source!r} is empty")
        return source, prompts

    def setup(self, pipe: "StableDiffusionPipeline") -> ScoreGate:
        """The gate: Wen's single-step score and its threshold at ``fpr`` on the calibration set."""
        score_fn = wen_single_step_score_fn(self.SEED)
        _, prompts = self.calibration_prompts(pipe)
        return ScoreGate(score_fn, calibrate_threshold(score_fn(pipe, prompts), self.fpr))

    # --- hooks ------------------------------------------------------------------------------------

    def edit_embeddings(
        self,
        pipe: "StableDiffusionPipeline",
        prompt_embeds: "torch.Tensor",
        negative_prompt_embeds: "torch.Tensor",
        latents: "torch.Tensor",
        ctx: BatchContext,
    ) -> tuple["torch.Tensor", "torch.Tensor"]:
        gate = ctx.state
        if not isinstance(gate, ScoreGate):
            raise MitigationError("wen_gated: no gate in ctx.state (setup did not run)")
        while len(ctx.records) < len(ctx.requests):
            ctx.records.append({})
        real = [i for i, r in enumerate(ctx.requests) if not r.padding]
        flags = gate.flags(pipe, [ctx.prompts[i] for i in real])
        scores = gate.scores(pipe, [ctx.prompts[i] for i in real])  # memoised: no UNet call
        threshold = gate.threshold if math.isfinite(gate.threshold) else None
        for i, flagged, score in zip(real, flags, scores):
            ctx.records[i].update(gate_score=score, gate_threshold=threshold, gate_flagged=flagged)
        flagged_rows = {i for i, f in zip(real, flags) if f}
        if not flagged_rows:
            return prompt_embeds, negative_prompt_embeds
        # Wen's optimisation skips padding requests: unflagged images are passed to it as padding,
        # so only flagged rows are optimised (same tensors, same records list).
        masked = dataclasses.replace(ctx, requests=[
            r if i in flagged_rows else dataclasses.replace(r, padding=True) for i, r in enumerate(ctx.requests)
        ])
        return super().edit_embeddings(pipe, prompt_embeds, negative_prompt_embeds, latents, masked)
