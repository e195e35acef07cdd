"""AMS and UMS as the SIDE paper defines them (Chen et al. 2024, "Extracting Training Data from
Unconditional Diffusion Models", arXiv 2410.02467).

gamma(x_i, x_j) is the similarity (SSCD here) of a generated image x_i (N_G of them) to a reference
image x_j (the suite's memorized images). Every generated image is assigned its nearest reference,
the one with the best gamma (a tie goes to the first in reference order, ``np.argmax``). For a band
[a, b] of gamma values:

- AMS[a, b] = #{i : max_j gamma(x_i, x_j) in [a, b]} / N_G: the share of generated images whose best
  match lies in the band;
- UMS[a, b] = #{distinct j : j is the nearest reference of some image i whose best gamma is in
  [a, b]} / N_G: how many different references the band's images reproduce, per generated image.
  UMS depends on N_G (more images can find more distinct references, and are divided by more):
  compare UMS only between runs with equal N_G. UMS[a, b] <= AMS[a, b] always.

These are BANDS, not ">= t" thresholds: every image falls in exactly one band, so the AMS of the
three bands sum to 1. Default bands (settings, see :class:`MemorizationBands`) are the paper's SSCD
levels (its Fig. 4):

- low:  gamma < 0.5
- mid:  0.5 <= gamma <= 0.6
- high: gamma > 0.6

A reference is "matched" only as some image's nearest reference: an image at 0.80 to r0 and 0.72 to
r1 matches r0 alone. (Counting every (image, reference) pair in the band instead would put almost
every reference in the low band for any model, since unrelated pairs score below 0.5.)

MemBench's own "SSCD>0.5" (``aggregate.frac_above``: strict, against a prompt's own references) is
a different statistic; each follows its paper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

BAND_NAMES = ("low", "mid", "high")


@dataclass(frozen=True)
class Band:
    """A range of gamma values; ``low`` is -inf for the lowest band, ``high`` +inf for the highest."""

    name: str
    low: float
    high: float
    include_low: bool = True
    include_high: bool = True

    def contains(self, values: Any) -> np.ndarray:
        """Boolean mask of the ``values`` inside the band."""
        v = np.asarray(values, dtype=np.float64)
        above = v >= self.low if self.include_low else v > self.low
        below = v <= self.high if self.include_high else v < self.high
        return above & below

    def describe(self, symbol: str = "γ") -> str:
        """``"γ < 0.5"``, ``"0.5 ≤ γ ≤ 0.6"``, ``"γ > 0.6"``."""
        lo = "" if math.isinf(self.low) else f"{self.low:g} {'≤' if self.include_low else '<'} "
        hi = "" if math.isinf(self.high) else f" {'≤' if self.include_high else '<'} {self.high:g}"
        if not lo and not hi:
            return f"any {symbol}"
        if not lo:
            return f"{symbol}{hi}"
        if not hi:
            return f"{symbol} {'≥' if self.include_low else '>'} {self.low:g}"
        return f"{lo}{symbol}{hi}"


@dataclass(frozen=True)
class MemorizationBands:
    """The three bands, set by the edges of the middle one: low < ``mid_low`` <= mid <= ``mid_high`` < high.

    Defaults are SIDE's SSCD levels (low < 0.5, mid 0.5-0.6, high > 0.6). Both edges belong to mid.
    """

    mid_low: float = 0.5
    mid_high: float = 0.6

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mid_low) and math.isfinite(self.mid_high)):
            raise ValueError(f"band edges must be finite numbers, got {self.mid_low}, {self.mid_high}")
        if self.mid_low > self.mid_high:
            raise ValueError(f"band edges must be ordered (mid_low <= mid_high), got {self.mid_low} > {self.mid_high}")

    def bands(self) -> tuple[Band, Band, Band]:
        return (Band("low", -math.inf, self.mid_low, include_high=False),
                Band("mid", self.mid_low, self.mid_high),
                Band("high", self.mid_high, math.inf, include_low=False))

    def describe(self) -> str:
        """``"low < 0.5, mid 0.5-0.6, high > 0.6"``."""
        return f"low < {self.mid_low:g}, mid {self.mid_low:g}-{self.mid_high:g}, high > {self.mid_high:g}"

    def to_dict(self) -> dict[str, float]:
        return {"mid_low": self.mid_low, "mid_high": self.mid_high}

    @classmethod
    def from_dict(cls, d: Any) -> "MemorizationBands":
        if not d:
            return cls()
        return cls(float(d["mid_low"]), float(d["mid_high"]))

    @classmethod
    def parse(cls, text: str) -> "MemorizationBands":
        """``"0.5,0.6"`` -> the bands low < 0.5, mid 0.5-0.6, high > 0.6."""
        parts = [p.strip() for p in str(text).split(",")]
        try:
            lo, hi = (float(p) for p in parts)
        except ValueError:
            raise ValueError(f"bands: expected two edges 'MID_LOW,MID_HIGH' such as '0.5,0.6', got {text!r}") from None
        return cls(lo, hi)


@dataclass(frozen=True)
class MemorizationScores:
    """AMS/UMS per band, plus each generated image's nearest reference (for later statistics)."""

    bands: MemorizationBands
    n_generated: int
    ams: dict[str, float]
    ums: dict[str, float]
    best: np.ndarray  # (n_generated,) best gamma of each image over all references
    nearest: tuple[str, ...]  # (n_generated,) id of that reference (its column index as str without ids)
    matched: dict[str, tuple[str, ...]]  # band -> ids of the distinct references matched in the band
    counts: dict[str, int]  # band -> number of generated images in it

    def as_dict(self) -> dict[str, float]:
        out = {f"ams_{band}": v for band, v in self.ams.items()}
        out.update({f"ums_{band}": v for band, v in self.ums.items()})
        return out


def _check_best(best: Any, what: str) -> np.ndarray:
    best = np.asarray(best, dtype=np.float64).reshape(-1)
    if best.size == 0:
        raise ValueError(f"{what} of zero generated images is undefined")
    if not np.isfinite(best).all():
        raise ValueError(f"{what}: similarities contain NaN or inf")
    return best


def ams(best: Any, band: Band) -> float:
    """Share of generated images whose best similarity to any reference lies in ``band``."""
    return float(band.contains(_check_best(best, "AMS")).mean())


def matched_references(best: Any, nearest: Sequence[Any], band: Band) -> tuple[str, ...]:
    """The distinct nearest references (sorted, as str) of the images whose best similarity is in ``band``."""
    b = _check_best(best, "UMS")
    if len(nearest) != b.size:
        raise ValueError(f"{len(nearest)} nearest references for {b.size} generated images")
    mask = band.contains(b)
    return tuple(sorted({str(n) for n, m in zip(nearest, mask) if m}))


def ums(best: Any, nearest: Sequence[Any], band: Band) -> float:
    """Distinct nearest references of the images in ``band``, divided by the number of generated images."""
    return len(matched_references(best, nearest, band)) / _check_best(best, "UMS").size


def scores_from_nearest(best: Any, nearest: Sequence[Any], bands: MemorizationBands = MemorizationBands()
                        ) -> MemorizationScores:
    """AMS and UMS per band from each generated image's best similarity and nearest reference id."""
    b = _check_best(best, "AMS/UMS")
    names = tuple(str(n) for n in nearest)
    if len(names) != b.size:
        raise ValueError(f"{len(names)} nearest references for {b.size} generated images")
    out_ams, out_ums, matched, counts = {}, {}, {}, {}
    for band in bands.bands():
        counts[band.name] = int(band.contains(b).sum())
        out_ams[band.name] = counts[band.name] / b.size
        matched[band.name] = matched_references(b, names, band)
        out_ums[band.name] = len(matched[band.name]) / b.size
    return MemorizationScores(bands, int(b.size), out_ams, out_ums, b, names, matched, counts)


def memorization_scores(
    sim_all: np.ndarray,
    bands: MemorizationBands = MemorizationBands(),
    reference_ids: Sequence[str] | None = None,
) -> MemorizationScores:
    """AMS and UMS per band from the (n_generated x n_references) SSCD matrix of all generated
    images of a run against all memorized references of the suite."""
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
    return scores_from_nearest(best, [names[i] for i in nearest], bands)
