"""The ExtractionMethod base class: one small class per training-data extraction attack on an
UNCONDITIONAL diffusion model, shaped like ``Mitigation`` and ``Detector``.

An extraction method gets an unconditional diffusers pipeline (its ``unet`` and a DDIM scheduler)
and must return ``ctx.n`` generated images for the run seed ``ctx.seed``. The harness then scores
every image with SSCD against the model's training set and reports AMS/UMS
(``membench_eval.metrics.memorization``) at EQUAL numbers of generated images for every method.

Hyperparameters are dataclass fields with types and defaults (validated, part of every cache key
and the table's label, settable with ``--param``)::

    class Plain(ExtractionMethod):
        '''Sample the model as it is: the baseline every attack is compared with.'''
        name = "plain"

        def generate(self, pipe, ctx):
            return ctx.sample(pipe, ctx.n, seed=ctx.seed)

The context hands the method the harness's shared pieces, so a method file stays one readable
idea: ``ctx.sample`` (the DDIM loop, with an optional guidance hook on the noise prediction),
``ctx.embed`` (SSCD embeddings, the similarity AMS/UMS are scored with) and ``ctx.cached`` (a
content-addressed, checksum-verified stage cache in the run store: a rerun or a resumed run reuses
every stage already computed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from membench_eval.hyperparams import Hyperparameters, LabelStyle

if TYPE_CHECKING:
    import numpy as np
    import torch

# The extraction runner's behaviour (seeding, sampling loop, scoring) and this API: part of every
# cache key. Bump it when a change of either changes results.
EXTRACTION_CODE_VERSION = "membench-extraction/v1"

# eps_hat = guide(x_t, t, eps, rows): the hook ``ctx.sample`` calls at every denoising step; ``rows``
# are the indices (0..n-1) of the batch's images among the n requested.
Guide = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]


@dataclass
class ExtractionContext:
    """What the runner gives a method for one (seed, n) request.

    ``sample(pipe, n, seed=, guide=None, batch_size=)`` -> float32 (n, 3, H, W) in [-1, 1];
    ``embed(images)`` -> SSCD (n, dim) float32, L2-normalised; ``cached(stage, fields, compute)``
    -> the dict of numpy arrays ``compute()`` returns, stored under the hash of ``fields`` (plus
    the method's name and source hash, the model's identity, the steps and the seed) and reused on
    the next call with equal fields. ``fields`` must name every parameter the stage depends on
    (and only those, so a stage is shared across values of the others).
    """

    n: int
    seed: int
    num_inference_steps: int
    device: "torch.device | str"
    sample: Callable[..., "torch.Tensor"]
    embed: Callable[[Any], "np.ndarray"]
    cached: Callable[[str, dict[str, Any], Callable[[], dict[str, "np.ndarray"]]], dict[str, "np.ndarray"]]
    progress: bool = False
    # Free-form numbers a method wants in the results (cluster sizes, classifier accuracy, ...).
    records: dict[str, Any] = dataclasses.field(default_factory=dict)


class ExtractionMethod(Hyperparameters):
    """Base class of every extraction method. ``name`` identifies it in caches and tables;
    ``paper``, ``sweep``, ``strongest``, ``params()`` and ``label()`` (``side(clusters=16)``;
    ``plain`` without parameters) come from ``Hyperparameters``."""

    name: ClassVar[str] = "extraction"
    label_style: ClassVar[LabelStyle] = "call"

    def generate(self, pipe: Any, ctx: ExtractionContext) -> "torch.Tensor":
        """Return ``ctx.n`` images, (n, 3, H, W) in [-1, 1] (what ``ctx.sample`` returns)."""
        raise NotImplementedError(f"extraction method {self.name!r} does not implement generate(pipe, ctx)")
