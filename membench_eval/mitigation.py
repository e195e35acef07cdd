"""The Mitigation base class: one small class per method, a few named hooks.

A method overrides only the hooks it needs; the generation engine calls them in this order for
every batch of images (a batch may mix prompts; every image has its own seed and RNG):

0. ``setup``               - once per pipeline (cached across batches and sweeps): model-level
   preparation such as NeMo's activation statistics; the result is ``ctx.state``.
1. ``rewrite_prompt``      - change the prompt text (RNA, RTA).
2. ``generate``            - full override of generation, for methods that need it; return None
   to use the default path below.
3. ``edit_embeddings``     - change prompt embeddings before sampling (Wen et al., GNI).
4. ``edit_latents``        - change the initial noise x_T (SAIL).
5. ``cross_attention_processor`` - replace the ``attn2`` (cross-attention) processors for this
   batch only (Ren et al., NeMo); the engine installs it and restores the originals afterwards.
6. ``guidance``            - at every step, combine the unconditional and conditional noise
   predictions (default: classifier-free guidance) (guidance schedule, PRSS, AMG).
7. ``on_step_end``         - diffusers ``callback_on_step_end``: change latents/embeddings during sampling.

Hyperparameters are dataclass fields with types and defaults: every subclass is made a dataclass
automatically (``membench_eval.hyperparams``, the base shared with detectors and extraction methods), so ``n: int = 1`` declares a parameter the harness validates, puts in the run-store
key and the leaderboard label, and can sweep (``--param n=1,2,3``). ``sweep`` declares the paper's
sweep for the method. Example (see README)::

    class RandomSuffix(Mitigation):
        '''Appends a random word; a toy.'''
        name = "random_suffix"
        words: int = 1

        def rewrite_prompt(self, prompt, rng):
            return prompt + " " + " ".join(rng.choice(["cat", "dog"]) for _ in range(self.words))
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from membench_eval.hyperparams import Hyperparameters

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline
    from PIL import Image


@dataclass(frozen=True)
class ImageRequest:
    """One image to generate: its prompt, its index among the prompt's images, and its own seed.

    ``padding`` marks a throw-away request the engine adds so every pipeline call has the same
    shape (its image is dropped); a hook may skip expensive work for it."""

    prompt_id: str
    prompt: str
    image_index: int
    seed: int
    padding: bool = False


@dataclass
class BatchContext:
    """What the engine knows about the batch being generated; hooks may read it and record into
    ``records`` (per image, e.g. Wen's iterations and final loss), which the run store keeps."""

    requests: list[ImageRequest]
    # Text actually fed to the text encoder, after ``rewrite_prompt`` (one per image).
    prompts: list[str]
    num_inference_steps: int
    guidance_scale: float
    height: int
    width: int
    device: "torch.device"
    # One torch.Generator per image, seeded from ImageRequest.seed.
    generators: list["torch.Generator"] = field(default_factory=list)
    # One RNG per image, seeded from the image seed; for methods that draw random choices.
    rngs: list[random.Random] = field(default_factory=list)
    # Per-image extra values the method wants stored (same length as requests).
    records: list[dict[str, Any]] = field(default_factory=list)
    # Whether sampling combines unconditional and conditional predictions (guidance_scale > 1).
    do_classifier_free_guidance: bool = False
    # What ``setup(pipe)`` returned (cached per pipeline), or None.
    state: Any = None
    # The embeddings sampling runs on, after ``edit_embeddings`` (set before ``edit_latents``).
    prompt_embeds: "torch.Tensor | None" = None
    negative_prompt_embeds: "torch.Tensor | None" = None
    # The scheduler's timesteps for this run, set when sampling starts.
    timesteps: list[int] = field(default_factory=list)
    # What the denoiser predicts ("epsilon", "v_prediction" or "flow": a velocity; the guidance
    # vector is then conditional minus unconditional velocity), the family's ``prediction_type``.
    prediction_type: str = "epsilon"


class Mitigation(Hyperparameters):
    """Base class of every mitigation. ``name`` identifies it in the store and the leaderboard;
    ``paper``, ``sweep`` (e.g. {"n": [1, 2, 3, 4, 5, 6]}) and ``strongest`` (used by tests and
    `--param strongest`) come from ``Hyperparameters``, as do ``params()`` and ``label()``
    (``rna n=6``)."""

    name: ClassVar[str] = "base"
    # True when the method must see all images of one prompt in the same batch (e.g. a loss taken
    # over a prompt's images together). The engine then never splits a prompt across batches.
    batch_by_prompt: ClassVar[bool] = False
    # True when the method reads the suite's memorized images (AMG): the leaderboard marks its row
    # "oracle: uses the memorized images", so it is not read as a blind method.
    oracle: ClassVar[bool] = False
    # Parameters ``setup`` depends on: its cached result is reused across values of all others.
    setup_params: ClassVar[tuple[str, ...]] = ()
    # True for a deliberate no-op (``mitigations/base.py``): a method overriding no hook is otherwise an
    # error at load time, since it would run as base (``plugins.validation``).
    baseline: ClassVar[bool] = False

    # --- hooks -----------------------------------------------------------------------------

    def setup(self, pipe: "StableDiffusionPipeline") -> Any:
        """Model-level preparation, run once per pipeline and cached (keyed by the method's class,
        source and ``setup_params``); the return value reaches every hook as ``ctx.state``."""
        return None

    def rewrite_prompt(self, prompt: str, rng: random.Random) -> str:
        """Return the text to generate from. ``rng`` is seeded per image by the harness."""
        return prompt

    def edit_embeddings(
        self,
        pipe: "StableDiffusionPipeline",
        prompt_embeds: "torch.Tensor",
        negative_prompt_embeds: "torch.Tensor",
        latents: "torch.Tensor",
        ctx: BatchContext,
    ) -> tuple["torch.Tensor", "torch.Tensor"]:
        """Return (prompt_embeds, negative_prompt_embeds), shape (batch, tokens, dim) each.
        ``latents`` are the initial noise latents (already scaled by the scheduler)."""
        return prompt_embeds, negative_prompt_embeds

    def edit_latents(
        self,
        pipe: "StableDiffusionPipeline",
        latents: "torch.Tensor",
        prompt_embeds: "torch.Tensor",
        negative_prompt_embeds: "torch.Tensor | None",
        ctx: BatchContext,
    ) -> "torch.Tensor":
        """Return the initial latents x_T to sample from (same shape; scaled by the scheduler's
        ``init_noise_sigma``, as given). Runs after ``edit_embeddings``, on its embeddings."""
        return latents

    def guidance(
        self,
        pipe: "StableDiffusionPipeline",
        step: int,
        timestep: int,
        latents: "torch.Tensor",
        eps_uncond: "torch.Tensor | None",
        eps_cond: "torch.Tensor",
        ctx: BatchContext,
    ) -> "torch.Tensor":
        """The noise prediction the scheduler steps with, from this step's unconditional and
        conditional predictions (``eps_uncond`` is None without guidance). ``latents`` is x_t
        before ``scale_model_input``. Default: classifier-free guidance."""
        if eps_uncond is None:
            return eps_cond
        return eps_uncond + ctx.guidance_scale * (eps_cond - eps_uncond)

    def on_step_end(
        self, pipe: "StableDiffusionPipeline", step: int, timestep: int, callback_kwargs: dict, ctx: BatchContext
    ) -> dict:
        """diffusers ``callback_on_step_end``; ``callback_kwargs`` holds latents and prompt_embeds."""
        return callback_kwargs

    def cross_attention_processor(self, pipe: "StableDiffusionPipeline", ctx: BatchContext) -> Any | None:
        """An attention processor for every ``attn2`` module during this batch, or None."""
        return None

    def generate(self, pipe: "StableDiffusionPipeline", ctx: BatchContext) -> list["Image.Image"] | None:
        """Full override: return one PIL image per request, or None for the default path."""
        return None

    # --- identity ----------------------------------------------------------------------------

    def overrides(self, hook: str) -> bool:
        """Whether this method overrides ``hook`` (lets the engine skip work for unused hooks)."""
        return getattr(type(self), hook) is not getattr(Mitigation, hook)
