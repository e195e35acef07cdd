"""AMS and UMS (SIDE; Chen et al., "Towards Memorization-Free Diffusion Models", CVPR 2024).

For every generated image take its nearest reference (best SSCD over all memorized images):

- AMS(t), average memorization score: share of generated images whose best similarity is >= t.
- UMS(t), unique memorization score: number of DISTINCT references that are some image's nearest
  reference with similarity >= t, divided by the number of generated images. It therefore depends
  on how many images were generated: compare UMS only at equal counts. UMS <= AMS always.

Note ">= t" here versus MemBench's strict "> 0.5" (aggregate.frac_above): each follows its paper.
A tie for nearest reference is resolved to the first in reference order (``np.argmax``).

Default thresholds (settings, override with :class:`MemorizationThresholds`):

- low = 0.3: above what unrelated photos score on SSCD (about 0 to 0.2), so it catches partial,
  layout- or object-level reproductions;
- mid = 0.5: the replication threshold of Somepalli et al. and MemBench's SSCD>0.5;
- high = 0.7: near-exact copies, close to the ~0.75 the SSCD paper uses for high-precision copy
  detection on DISC21.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MemorizationThresholds:
    low: float = 0.3
    mid: float = 0.5
    high: float = 0.7

    def items(self) -> list[tuple[str, float]]:
        return [("low", self.low), ("mid", self.mid), ("high", self.high)]


@dataclass(frozen=True)
class MemorizationScores:
    """AMS/UMS per level, plus each generated image's nearest reference (for later statistics)."""

    thresholds: MemorizationThresholds
    n_generated: int
    ams: dict[str, float]
    ums: dict[str, float]
    best: np.ndarray  # (n_generated,) best SSCD of each image over all references
    nearest: np.ndarray  # (n_generated,) index of that reference
    matched: dict[str, tuple[str, ...]]  # level -> ids (or indices as str) of the distinct matched refs

    def as_dict(self) -> dict[str, float]:
        out = {f"ams_{level}": v for level, v in self.ams.items()}
        out.update({f"ums_{level}": v for level, v in self.ums.items()})
        return out


def ams(best: np.ndarray, threshold: float) -> float:
    """Share of generated images whose best similarity to any reference is >= ``threshold``."""
    best = np.asarray(best, dtype=np.float64)
    if best.size == 0:
        raise ValueError("AMS of zero generated images is undefined")
    return float((best >= threshold).mean())


def ums(best: np.ndarray, nearest: np.ndarray, threshold: float) -> float:
    """Distinct nearest references at >= ``threshold``, divided by the number of generated images."""
    best = np.asarray(best, dtype=np.float64)
    if best.size == 0:
        raise ValueError("UMS of zero generated images is undefined")
    return float(np.unique(np.asarray(nearest)[best >= threshold]).size / best.size)


def memorization_scores(
    sim_all: np.ndarray,
    thresholds: MemorizationThresholds = MemorizationThresholds(),
    reference_ids: Sequence[str] | None = None,
) -> MemorizationScores:
    """AMS and UMS at the three levels from the (n_generated x n_references) SSCD matrix of all
    generated images of a run against all memorized references of the suite."""
    sim = np.asarray(sim_all, dtype=np.float64)
    if sim.ndim != 2 or sim.shape[0] == 0 or sim.shape[1] == 0:
        raise ValueError(f"expected a non-empty (n_generated x n_references) matrix, got shape {sim.shape}")
    if not np.isfinite(sim).all():
        raise ValueError("similarity matrix contains NaN or inf")
    if reference_ids is not None and len(reference_ids) != sim.shape[1]:
        raise ValueError(f"{len(reference_ids)} reference ids for {sim.shape[1]} matrix columns")
    nearest = sim.argmax(axis=1)
    best = sim[np.arange(sim.shape[0]), nearest]
    names = list(reference_ids) if reference_ids is not None else [str(i) for i in range(sim.shape[1])]
    return MemorizationScores(
        thresholds=thresholds,
        n_generated=int(sim.shape[0]),
        ams={level: ams(best, t) for level, t in thresholds.items()},
        ums={level: ums(best, nearest, t) for level, t in thresholds.items()},
        best=best,
        nearest=nearest,
        matched={level: tuple(names[i] for i in np.unique(nearest[best >= t])) for level, t in thresholds.items()},
    )
