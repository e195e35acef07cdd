"""The Detector base class: one small class per memorization detector, shaped like ``Mitigation``.

A detector answers "is this prompt about to reproduce a training image?" with one score per prompt,
higher = more likely memorized. The detection runner (``membench_eval.detection.run``) calls
``setup`` once per pipeline (cached, like ``Mitigation.setup``), then ``score`` on batches of
prompts, counts the UNet rows each batch costs and its wall seconds, checks the scores (one finite
float per prompt) and stores them in the run store, keyed by the detector's name, parameters,
source hash, the model and the prompt text, so a rerun or a resumed run reuses them.

Hyperparameters are dataclass fields with types and defaults (validated, part of the store key and
the leaderboard label, sweepable with ``--param``), as for mitigations::

    class TokenCount(Detector):
        '''Longer prompts are not more memorized; a baseline.'''
        name = "token_count"
        needs_model = False

        def score(self, pipe, ctx):
            return [float(len(p.split())) for p in ctx.prompts]

Scores must not depend on which other prompts share the batch or their order: draw any noise from
``ctx.generators[i]`` (seeded per prompt by the runner) or from fixed seeds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from membench_eval.hyperparams import Hyperparameters

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline


# The detection runner's behaviour (seeding, context, cost counting) and this API, part of every
# stored score's key (``detection.run``): the plugin API modules are not hashed into a detector's
# source fingerprint. Bump it when a change of either changes scores.
DETECTION_CODE_VERSION = "membench-detection/v1"


@dataclass(frozen=True)
class DetectionRequest:
    """One prompt to score, with its own seed (from the run seed and the prompt id)."""

    prompt_id: str
    prompt: str
    seed: int


@dataclass
class DetectionContext:
    """What the runner knows about the batch being scored; ``records`` (one dict per prompt,
    JSON values) are stored with the scores."""

    requests: list[DetectionRequest]
    prompts: list[str]
    num_inference_steps: int
    guidance_scale: float
    height: int
    width: int
    device: "torch.device | str"
    # One torch.Generator and one random.Random per prompt, seeded from its seed.
    generators: list["torch.Generator"] = field(default_factory=list)
    rngs: list[random.Random] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    # What ``setup(pipe)`` returned (cached per pipeline), or None.
    state: Any = None


class Detector(Hyperparameters):
    """Base class of every detector. ``name`` identifies it in the store and the leaderboard;
    ``paper``, ``sweep`` (e.g. {"steps": [1, 50]}), ``strongest``, ``params()`` and ``label()``
    (``wen_trajectory images=4``) come from ``Hyperparameters``."""

    name: ClassVar[str] = "detector"
    # False for text-only detectors: the runner then loads no pipeline and passes ``pipe=None``.
    needs_model: ClassVar[bool] = True
    # Parameters ``setup`` depends on: its cached result is reused across values of all others.
    setup_params: ClassVar[tuple[str, ...]] = ()

    def setup(self, pipe: "StableDiffusionPipeline | None") -> Any:
        """Model-level preparation, run once per pipeline and cached; the result is ``ctx.state``."""
        return None

    def score(self, pipe: "StableDiffusionPipeline | None", ctx: DetectionContext) -> list[float]:
        """One score per ``ctx.requests`` entry, higher = more likely memorized."""
        raise NotImplementedError(f"{type(self).__name__} must implement score(pipe, ctx)")
