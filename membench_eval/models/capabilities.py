"""What a model family offers and what a method or detector needs: capability strings.

Why: a method built on one architecture's mechanism (Ren's rescale of CLIP's BOS token in
cross-attention, NeMo's cross-attention neurons, AMG's x0 from an epsilon prediction) has nothing
to act on in a family without it (IF conditions through T5 only; FLUX.1-dev has no unconditional
pass). Each family declares ``ModelFamily.offers``; each plugin declares ``needs`` (the plugin
base's ``Hyperparameters.needs``, empty by default: runs everywhere). An unsupported pairing is never
a crash: its leaderboard cells read ``n/a: <method> needs <what>; <family> has none``.

The strings are plain so a family or plugin may write them directly; these constants name them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

CFG = "cfg"  # real classifier-free guidance: an unconditional pass each step (the guidance vector)
TRUE_CFG = "true_cfg"  # a negative pass on a guidance-distilled model (FLUX.1-dev's true CFG)
CROSS_ATTENTION = "cross_attention"  # text reaches the image through cross-attention layers
JOINT_ATTENTION = "joint_attention"  # image and text tokens attend together (MM-DiT)
ADDED_KV_ATTENTION = "added_kv_attention"  # text keys/values appended to self-attention (DeepFloyd IF)
CLIP_BOS_TOKEN = "clip_bos_token"  # a CLIP text encoder whose token 0 is a prompt-independent BOS sink
PROMPT_EMBEDDINGS = "prompt_embeddings"  # per-token prompt embeddings a method may edit
POOLED_EMBEDDINGS = "pooled_embeddings"  # a pooled text embedding conditions the denoiser too
T5 = "t5"  # a T5 text encoder
EPSILON = "epsilon"  # the denoiser predicts the noise (x0 follows from it); offered by prediction type
# The prediction converts to the diffusion score by the DDPM formulas (epsilon, or v with alpha/sigma):
# SAIL's sharpness. A flow velocity does not (other schedule); offered by prediction type.
DIFFUSION_SCORE = "diffusion_score"
SCORE_KINDS = frozenset({"epsilon", "v_prediction"})

ALL = frozenset({CFG, TRUE_CFG, CROSS_ATTENTION, JOINT_ATTENTION, ADDED_KV_ATTENTION, CLIP_BOS_TOKEN,
                 PROMPT_EMBEDDINGS, POOLED_EMBEDDINGS, T5, EPSILON, DIFFUSION_SCORE})


def family_capabilities(family: Any) -> frozenset[str]:
    """A family object's (or class's) offers, plus ``epsilon`` when an object predicts the noise and
    ``diffusion_score`` when it predicts noise or v (SD 2's v-prediction models share the SD family's
    class, so these are per model)."""
    offers = frozenset(getattr(family, "offers", frozenset()))
    if isinstance(family, type):
        return offers
    try:
        kind = family.prediction_type
    except (AttributeError, NotImplementedError):
        return offers
    return offers | ({EPSILON} if kind == "epsilon" else set()) | ({DIFFUSION_SCORE} if kind in SCORE_KINDS else set())


def missing(needs: Iterable[str], offers: Iterable[str]) -> list[str]:
    """The needed capabilities not offered, sorted."""
    return sorted(set(needs) - set(offers))


def not_applicable(plugin: Any, family: Any) -> str | None:
    """``n/a: <plugin> needs <what>; <family> has none`` when ``family`` (an object or class)
    lacks something ``plugin`` needs, else None."""
    lacking = missing(getattr(plugin, "needs", ()), family_capabilities(family))
    if not lacking:
        return None
    name = getattr(plugin, "name", "") or type(plugin).__name__
    return f"n/a: {name} needs {' and '.join(lacking)}; {family.name} has none"
