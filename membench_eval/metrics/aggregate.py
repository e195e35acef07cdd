"""MemBench's SSCD aggregation, exactly as the reference code computes it, in plain numpy.

Per trigger prompt, ``sim`` is the (n_generated x k_references) SSCD similarity matrix of the
prompt's generated images against the memorized images the prompt is known to reproduce:

- Top-1 = ``sim.max()``
- Top-3 = mean of the 3 largest values of ``sim.max(axis=1)`` (the per-image best matches).
  With fewer than 3 generated images, the mean of all of them (MemBench always has 10).
- SSCD>0.5 = share of generated images whose ``sim.max(axis=1)`` is strictly above 0.5.

Each is then averaged over prompts. Top-1 against ANY memorized image of the suite (``sim_all``:
generated x every reference) is kept beside them: a mitigation that swaps one memorized copy for
another lowers the prompt's own Top-1 but not this one.

Per-prompt values are kept (not only means) so the statistics stage can bootstrap over prompts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

SSCD_REPLICATION_THRESHOLD = 0.5  # MemBench's "SSCD > 0.5" (strict)
TOP_K = 3


def _check_matrix(sim: np.ndarray, what: str) -> np.ndarray:
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D (n_generated x k_references) matrix, got shape {sim.shape}")
    if sim.shape[0] == 0 or sim.shape[1] == 0:
        raise ValueError(f"{what}: empty similarity matrix of shape {sim.shape}")
    if not np.isfinite(sim).all():
        raise ValueError(f"{what}: similarity matrix contains NaN or inf")
    return sim


def per_image_max(sim: np.ndarray) -> np.ndarray:
    """Best match of each generated image over the references: ``sim.max(axis=1)``, shape (n,)."""
    return _check_matrix(sim, "per_image_max").max(axis=1)


def top1(sim: np.ndarray) -> float:
    """MemBench Top-1 SSCD: the largest similarity in the matrix."""
    return float(_check_matrix(sim, "top1").max())


def top_k_mean(sim: np.ndarray, k: int = TOP_K) -> float:
    """MemBench Top-3 SSCD (k = 3): mean of the k largest per-image maxima; ties count once per
    image; fewer than k generated images -> mean of all of them."""
    best = np.sort(per_image_max(sim))[::-1]
    return float(best[:k].mean())


def frac_above(sim: np.ndarray, threshold: float = SSCD_REPLICATION_THRESHOLD) -> float:
    """MemBench SSCD>0.5: share of generated images whose best match is strictly above ``threshold``."""
    return float((per_image_max(sim) > threshold).mean())


@dataclass(frozen=True)
class PromptSSCD:
    """SSCD metrics of one trigger prompt; the per-image maxima are kept for later statistics."""

    prompt_id: str
    top1: float
    top3: float
    frac_above: float
    per_image_max: np.ndarray  # (n_generated,), against the prompt's own references
    top1_any: float = float("nan")  # against every reference of the suite; nan if not given
    per_image_max_any: np.ndarray | None = None


def score_prompt(
    prompt_id: str,
    sim_own: np.ndarray,
    sim_all: np.ndarray | None = None,
    *,
    threshold: float = SSCD_REPLICATION_THRESHOLD,
) -> PromptSSCD:
    """All SSCD metrics of one prompt from its (n x k_own) and optional (n x k_all) matrices."""
    own = _check_matrix(sim_own, f"prompt {prompt_id!r} (own references)")
    best = own.max(axis=1)
    best_any = None
    if sim_all is not None:
        every = _check_matrix(sim_all, f"prompt {prompt_id!r} (all references)")
        if every.shape[0] != own.shape[0]:
            raise ValueError(
                f"prompt {prompt_id!r}: {own.shape[0]} generated images against own references "
                f"but {every.shape[0]} against all references"
            )
        best_any = every.max(axis=1)
    return PromptSSCD(
        prompt_id=prompt_id,
        top1=float(best.max()),
        top3=float(np.sort(best)[::-1][:TOP_K].mean()),
        frac_above=float((best > threshold).mean()),
        per_image_max=best,
        top1_any=float(best_any.max()) if best_any is not None else float("nan"),
        per_image_max_any=best_any,
    )


@dataclass(frozen=True)
class SSCDSummary:
    """Per-prompt SSCD metrics (arrays aligned with ``prompt_ids``) and their means over prompts."""

    prompt_ids: tuple[str, ...]
    top1: np.ndarray
    top3: np.ndarray
    frac_above: np.ndarray
    top1_any: np.ndarray  # nan where a prompt had no all-reference matrix
    threshold: float = SSCD_REPLICATION_THRESHOLD
    # Prompts left out because none of their memorized images is available (dead links).
    excluded: tuple[str, ...] = ()
    per_prompt: tuple[PromptSSCD, ...] = field(default=(), repr=False)

    def means(self) -> dict[str, float]:
        """MemBench's table columns: means over the scored prompts (nan when none were scored)."""

        def mean(values: np.ndarray) -> float:
            values = values[~np.isnan(values)]
            return float(values.mean()) if values.size else float("nan")

        return {
            "top1_sscd": mean(self.top1),
            "top3_sscd": mean(self.top3),
            f"sscd_above_{self.threshold:g}": mean(self.frac_above),
            "top1_sscd_any": mean(self.top1_any),
        }


def aggregate_sscd(
    matrices: Mapping[str, tuple[np.ndarray, np.ndarray | None] | np.ndarray],
    *,
    threshold: float = SSCD_REPLICATION_THRESHOLD,
) -> SSCDSummary:
    """SSCD metrics per prompt and over prompts.

    ``matrices[prompt_id]`` is ``sim_own`` or ``(sim_own, sim_all)``. A prompt whose ``sim_own``
    has zero columns (none of its memorized images could be fetched) is listed in ``excluded``
    rather than scored, so coverage is reported instead of silently diluting the means.
    """
    scored: list[PromptSSCD] = []
    excluded: list[str] = []
    for prompt_id, value in matrices.items():
        sim_own, sim_all = value if isinstance(value, tuple) else (value, None)
        if np.asarray(sim_own).ndim == 2 and np.asarray(sim_own).shape[1] == 0:
            excluded.append(prompt_id)
            continue
        scored.append(score_prompt(prompt_id, sim_own, sim_all, threshold=threshold))
    return SSCDSummary(
        prompt_ids=tuple(p.prompt_id for p in scored),
        top1=np.array([p.top1 for p in scored], dtype=np.float64),
        top3=np.array([p.top3 for p in scored], dtype=np.float64),
        frac_above=np.array([p.frac_above for p in scored], dtype=np.float64),
        top1_any=np.array([p.top1_any for p in scored], dtype=np.float64),
        threshold=threshold,
        excluded=tuple(excluded),
        per_prompt=tuple(scored),
    )


@dataclass(frozen=True)
class PromptMeans:
    """A per-image score (CLIP, aesthetic) averaged per prompt, then over prompts (MemBench's order)."""

    prompt_ids: tuple[str, ...]
    per_prompt: np.ndarray
    mean: float


def mean_over_prompts(values_by_prompt: Mapping[str, Sequence[float] | np.ndarray]) -> PromptMeans:
    """Mean over each prompt's images, then the mean of those means (so each prompt weighs the same)."""
    ids, means = [], []
    for prompt_id, values in values_by_prompt.items():
        arr = np.asarray(values, dtype=np.float64).ravel()
        if arr.size == 0:
            raise ValueError(f"prompt {prompt_id!r}: no scores to average")
        ids.append(prompt_id)
        means.append(arr.mean())
    per_prompt = np.array(means, dtype=np.float64)
    return PromptMeans(tuple(ids), per_prompt, float(per_prompt.mean()) if per_prompt.size else float("nan"))
