"""The attacker's score: Wen's single-step memorization signal, computed through the mitigation.

The signal is the ``wen_single`` detector's (``detection.signal.single_step_scores``, MemBench's
search score): ``||eps(x_T, p) - eps(x_T, "")||^2`` at t = 999 on one shared seeded latent. An
adaptive attacker scores candidates against the deployed (mitigated) model, so the mitigation's
hooks that act on the UNet call itself are applied to the scorer's call:

* ``edit_embeddings`` (Wen, GNI), ``edit_latents`` (SAIL) and ``cross_attention_processor``
  (Ren, NeMo) run exactly as in generation, on a ``BatchContext`` whose requests are the candidates
  (one shared latent seed), with classifier-free-guidance rows ``[uncond; cond]`` in one UNet call;
* ``rewrite_prompt`` (RNA, RTA) does NOT: the attacker scores the prompt it submits, and the
  mitigated pipeline rewrites it afterwards, as in deployment. Likewise ``guidance``,
  ``on_step_end`` and ``generate`` act on the sampling that follows the signal's UNet call, not on
  the call.

A method that acts on no UNet-call hook gives exactly the unmitigated ``single_step_scores`` (same
function, same numbers), so its search is the base's search and is shared in the store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from membench_eval.errors import MembenchError

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline

    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.mitigation import Mitigation

# Version of the attacker's scoring path: part of every search key.
ATTACK_SIGNAL_VERSION = "membench-attack-signal/v1"
# Hooks that change the UNet call the signal reads (applied to the scorer's call).
SCORER_HOOKS = ("edit_embeddings", "edit_latents", "cross_attention_processor")
# Hooks that act after submission or after the signal's UNet call (applied in generation only).
AFTER_SUBMISSION_HOOKS = ("rewrite_prompt", "generate", "guidance", "on_step_end")


class AttackError(MembenchError):
    """Bad attack input (budget, counts, prompts) or a budget overrun: one line, exit status 2."""


def scoring_hooks(m: "Mitigation") -> list[str]:
    """The method's hooks the attacker's score goes through."""
    return [h for h in SCORER_HOOKS if m.overrides(h)]


def scorer_note(m: "Mitigation") -> str:
    """What the attacker's score sees of the method, for the table."""
    inside = scoring_hooks(m)
    after = [h for h in AFTER_SUBMISSION_HOOKS if m.overrides(h)]
    parts = [("through " + ", ".join(inside)) if inside else "unmitigated signal"]
    if after:
        parts.append("after submission: " + ", ".join(after))
    return "; ".join(parts)


def scorer_identity(m: "Mitigation") -> dict[str, Any]:
    """What the attacker's scores depend on besides model, prompts and seed: the method only when
    it acts on the scorer's UNet call (so base, RNA and RTA share one search)."""
    from membench_eval.generation.batch import method_source

    if not scoring_hooks(m):
        return {"signal": ATTACK_SIGNAL_VERSION, "method": None}
    return {"signal": ATTACK_SIGNAL_VERSION, "method": m.name, "params": m.params(),
            "source": method_source(m).sha256, "hooks": scoring_hooks(m)}


def identity_hash(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def mitigated_single_step_scores(
    pipe: "StableDiffusionPipeline", m: "Mitigation", prompts: Sequence[str], *, seed: int,
    settings: "GenerationSettings", batch_size: int = 50,
) -> np.ndarray:
    """One score per prompt, higher = more memorization-like, through ``m``'s UNet-call hooks.

    Scores do not depend on which prompts share a call: every candidate has the same latent and its
    own request; per-row hooks (Ren's, NeMo's) see the generation path's row layout."""
    from membench_eval.detection.signal import single_step_scores

    if not prompts:
        return np.zeros(0, dtype=np.float64)
    if not scoring_hooks(m):
        return single_step_scores(pipe, prompts, seed=seed, batch_size=batch_size, height=settings.height,
                                  width=settings.width)
    out = np.empty(len(prompts), dtype=np.float64)
    for start in range(0, len(prompts), batch_size):
        out[start:start + batch_size] = _hooked_chunk(pipe, m, list(prompts[start:start + batch_size]), seed, settings)
    return out


def _hooked_chunk(pipe: "StableDiffusionPipeline", m: "Mitigation", prompts: list[str], seed: int,
                  settings: "GenerationSettings") -> np.ndarray:
    import torch

    from membench_eval.detection.signal import last_train_timestep, latent_geometry, seeded_latents
    from membench_eval.generation.batch import _call, build_context, cached_setup, cross_attention, encode_for_hooks
    from membench_eval.models.family import family_for
    from membench_eval.mitigation import ImageRequest

    reqs = [ImageRequest(prompt_id=f"attack-candidate-{i}", prompt=p, image_index=0, seed=int(seed))
            for i, p in enumerate(prompts)]
    ctx = build_context(pipe, reqs, settings)
    ctx.do_classifier_free_guidance = True  # the signal needs both rows, as CFG generation has them
    if m.overrides("setup"):
        ctx.state = _call(m, "setup", reqs, None, lambda: cached_setup(pipe, m))
    with torch.no_grad():
        cond, uncond = encode_for_hooks(pipe, prompts, ctx.device, True)
    t = last_train_timestep(pipe)
    latent = seeded_latents(pipe, [seed], latent_geometry(pipe, settings.height, settings.width))
    latents = latent.expand(len(prompts), -1, -1, -1).clone().to(cond.dtype)
    if m.overrides("edit_embeddings"):
        cond, uncond = _call(m, "edit_embeddings", reqs, None, lambda: m.edit_embeddings(pipe, cond, uncond, latents, ctx))
        cond, uncond = cond.detach(), uncond.detach()
    if m.overrides("edit_latents"):
        latents = _call(m, "edit_latents", reqs, None, lambda: m.edit_latents(pipe, latents, cond, uncond, ctx)).detach()
    ctx.prompt_embeds, ctx.negative_prompt_embeds = cond, uncond
    processor = None
    if m.overrides("cross_attention_processor"):
        processor = _call(m, "cross_attention_processor", reqs, None, lambda: m.cross_attention_processor(pipe, ctx))
    with torch.no_grad(), cross_attention(pipe, processor):
        model_in = pipe.scheduler.scale_model_input(torch.cat([latents, latents]), t)
        eps = family_for(pipe).predict(model_in, t, torch.cat([uncond, cond])).sample.float()
    eps_u, eps_c = eps.chunk(2)
    return ((eps_c - eps_u) ** 2).sum(dim=(1, 2, 3)).double().cpu().numpy()


class BudgetedScorer:
    """The search's ``Scorer`` (prompts, latent seed) -> scores, charged against a fixed budget of
    scored candidates; also counts the UNet rows the scoring really ran (measured)."""

    def __init__(self, pipe: "StableDiffusionPipeline", m: "Mitigation", settings: "GenerationSettings", budget: int,
                 *, batch_size: int = 50):
        if budget < 1:
            raise AttackError(f"attack budget must be >= 1 candidate, got {budget}")
        self.pipe, self.m, self.settings, self.budget, self.batch_size = pipe, m, settings, int(budget), batch_size
        self.used = 0
        self.unet_rows = 0

    def __call__(self, prompts: Sequence[str], latent_seed: int) -> np.ndarray:
        from membench_eval.generation.batch import count_unet_rows

        if self.used + len(prompts) > self.budget:
            raise AttackError(f"attack budget exceeded: {self.used} + {len(prompts)} candidates > budget {self.budget}")
        with count_unet_rows(self.pipe) as counter:
            scores = mitigated_single_step_scores(self.pipe, self.m, prompts, seed=latent_seed, settings=self.settings,
                                                  batch_size=self.batch_size)
        self.used += len(prompts)
        self.unet_rows += counter.rows
        return scores
