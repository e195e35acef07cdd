"""The leaderboard's AMS / UMS section: SIDE's memorization bands per method and prompt set.

For every row and prompt set, every generated image's best SSCD over all available references
(``PromptResult.per_image["best_sscd"]``, its argmax ``"best_ref"``) goes through
``metrics.memorization.scores_from_nearest``: AMS and UMS in the bands low / mid / high (defaults
low < 0.5, mid 0.5-0.6, high > 0.6; another setting is recorded in the leaderboard metadata as
``memorization_bands`` and used by every format).

Intervals:

- AMS is a share of images, i.e. sum over prompts of images in the band / sum of images. Its 95%
  interval is the same percentile cluster bootstrap as every other cell (the same clusters, seed and
  number of resamples; a replicate is the ratio of the resampled sums, which equals the mean of the
  per-prompt shares when every prompt has the same number of images).
- UMS gets no interval: it counts DISTINCT references, and a bootstrap resample repeats prompts,
  which adds images but never a new reference, so resampled UMS is biased low and its percentile
  interval would not cover the value. It is shown with its number of references and N_G beside it.

UMS depends on N_G: the table says so, and marks the rows whose N_G differs from base's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from membench_eval.metrics.memorization import BAND_NAMES, MemorizationBands, scores_from_nearest
from membench_eval.report.leaderboard import BASE_LABEL, few_clusters
from membench_eval.report.text import Table
from membench_eval.stats import ClusterBootstrap, Estimate
from membench_eval.stats.clusters import cluster_labels

if TYPE_CHECKING:
    from membench_eval.report.leaderboard import Leaderboard
    from membench_eval.report.records import PromptResult
    from membench_eval.report.text import _Notes

ROLE_TITLES = {"trigger": "trigger prompts", "general": "general prompts"}
NG_MARK = "‡"
_SECTIONS: ContextVar[dict[Any, tuple[Any, "BandSection"]] | None] = ContextVar("band_sections", default=None)
NO_PER_IMAGE = ("per-image SSCD not recorded for {n} prompt(s), e.g. {pid} (results from an older "
                "membench); rerun to fill it")


@dataclass(frozen=True)
class BandValue:
    band: str
    ams: Estimate | None  # with its interval; None when not available
    ums: float | None
    matched: tuple[str, ...] = ()  # the distinct references matched in this band
    n_images: int = 0  # generated images whose best match is in this band

    def to_dict(self) -> dict[str, Any]:
        return {"ams": None if self.ams is None else {**self.ams.to_dict(), "few_clusters": few_clusters(self.ams)},
                "ums": self.ums, "ums_references": len(self.matched), "matched": list(self.matched),
                "n_images": self.n_images}


@dataclass(frozen=True)
class BandRow:
    label: str
    display_label: str
    kind: str
    role: str
    n_generated: int
    n_prompts: int
    bands: dict[str, BandValue] = field(default_factory=dict)
    reason: str | None = None  # why the row has no values

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "kind": self.kind, "n_generated": self.n_generated,
                "n_prompts": self.n_prompts, "reason": self.reason,
                "bands": {b: v.to_dict() for b, v in self.bands.items()}}


@dataclass
class BandSection:
    bands: MemorizationBands
    rows: dict[str, list[BandRow]]  # role -> rows

    def to_dict(self) -> dict[str, Any]:
        b = self.bands
        return {"definition": "SIDE (Chen et al. 2024): AMS = share of generated images whose best SSCD over all "
                              "references is in the band; UMS = distinct nearest references of those images / N_G",
                "bands": {**b.to_dict(), "text": b.describe(),
                          "intervals": {band.name: band.describe("gamma") for band in b.bands()}},
                "ums_interval": None,
                "roles": {role: [r.to_dict() for r in rows] for role, rows in self.rows.items()}}


def bands_of(board: "Leaderboard") -> MemorizationBands:
    """The bands a leaderboard uses: its metadata's ``memorization_bands``, else the defaults."""
    return MemorizationBands.from_dict(board.metadata.get("memorization_bands"))


@contextmanager
def reuse_band_sections() -> Iterator[None]:
    """Within the block, ``band_section`` of one board and bands is computed once: writing a report
    asks for it from the JSON, both markdown renderings and the HTML (4 times), and its cost grows
    with every generated image of every row. Scoped to the block so a board changed later is
    never answered from the cache."""
    token = _SECTIONS.set({})
    try:
        yield
    finally:
        _SECTIONS.reset(token)


def band_section(board: "Leaderboard", bands: MemorizationBands | None = None) -> BandSection:
    bands = bands or bands_of(board)
    cache = _SECTIONS.get()
    if cache is None:
        return _band_section(board, bands)
    key = (id(board), id(board.results), len(board.results), bands)
    if key not in cache:
        cache[key] = (board, _band_section(board, bands))  # the board held: its id stays its own
    return cache[key][1]


def _band_section(board: "Leaderboard", bands: MemorizationBands) -> BandSection:
    b = board.bootstrap
    cache: dict[tuple[str, tuple[str, ...]], ClusterBootstrap] = {}

    def bootstrap(role: str, results: Sequence["PromptResult"]) -> ClusterBootstrap:
        ids = tuple(r.prompt_id for r in results)
        if (role, ids) not in cache:
            labels = cluster_labels(ids, [r.memorized_ids for r in results], b.get("cluster_method", "components"))
            cache[(role, ids)] = ClusterBootstrap(labels, n_resamples=int(b["n_resamples"]), seed=int(b["seed"]),
                                                  confidence=float(b["confidence"]))
        return cache[(role, ids)]

    by_key: dict[tuple[str, str], list["PromptResult"]] = {}
    for r in board.results:
        by_key.setdefault((r.label, r.role), []).append(r)
    out: dict[str, list[BandRow]] = {}
    for role in ("trigger", "general"):
        rows = []
        for row in board.rows:
            results = sorted(by_key.get((row.label, role), []), key=lambda r: r.prompt_id)
            if row.kind == "reference" or not results:
                continue
            rows.append(_band_row(row, role, results, bands, bootstrap))
        if rows:
            out[role] = rows
    return BandSection(bands, out)


def _band_row(row: Any, role: str, results: list["PromptResult"], bands: MemorizationBands, bootstrap) -> BandRow:
    lacking = [r.prompt_id for r in results if r.n_images == 0
               or any(len(r.per_image.get(k, [])) != r.n_images for k in ("best_sscd", "best_ref"))]
    n_generated = sum(r.n_images for r in results)
    if lacking:
        return BandRow(row.label, row.display_label, row.kind, role, n_generated, len(results),
                       reason=NO_PER_IMAGE.format(n=len(lacking), pid=lacking[0]))
    best = np.concatenate([np.asarray(r.per_image["best_sscd"], dtype=np.float64) for r in results])
    nearest = [str(x) for r in results for x in r.per_image["best_ref"]]
    if not np.isfinite(best).all():
        return BandRow(row.label, row.display_label, row.kind, role, n_generated, len(results),
                       reason="per-image SSCD contains NaN or inf")
    scores = scores_from_nearest(best, nearest, bands)
    boot = bootstrap(role, results)
    sizes = np.array([r.n_images for r in results], dtype=np.float64)
    den = boot.replicates(sizes)
    tail = (1.0 - boot.confidence) / 2.0
    values = {}
    starts = np.cumsum([0] + [r.n_images for r in results[:-1]])  # every prompt has >= 1 image (``lacking``)
    for band in bands.bands():
        # Images in the band per prompt, counted over the concatenated array at once: one NumPy call
        # per band, not one per prompt (a 23-config sweep has 184,000 prompt results).
        counts = np.add.reduceat(band.contains(best).astype(np.float64), starts)
        reps = boot.replicates(counts) / den
        low, high = np.quantile(reps, [tail, 1.0 - tail])
        est = Estimate(scores.ams[band.name], float(low), float(high), boot.n_prompts, boot.n_clusters)
        values[band.name] = BandValue(band.name, est, scores.ums[band.name], scores.matched[band.name],
                                      scores.counts[band.name])
    return BandRow(row.label, row.display_label, row.kind, role, n_generated, len(results), values)


def _fmt(x: float) -> str:
    from membench_eval.report.text import fmt_number

    return fmt_number(x, 3)


def memorization_tables(board: "Leaderboard", notes: "_Notes", section: BandSection | None = None) -> list[Table]:
    """One table per prompt set: AMS [CI] and UMS (references) per band, with N_G beside UMS."""
    section = section or band_section(board)
    bands = section.bands.bands()
    intro = (f"SIDE's memorization bands (Chen et al. 2024) on the best SSCD of each generated image over all "
             f"available references, γ: {section.bands.describe()} (bands, not thresholds: each image counts in "
             "exactly one band, so a row's three AMS sum to 1). AMS = share of generated images whose best γ is in "
             "the band [95% CI, cluster bootstrap as above]; UMS = distinct references that are the nearest match of "
             "some image in the band, divided by N_G (in brackets: the number of references; no interval: a "
             "bootstrap of a distinct count is biased low). N_G = generated images.")
    if not section.rows:
        return [Table("memorization", "Memorization bands (AMS / UMS)", [], [], intro=[
            intro, "Not available: this run has no per-image SSCD values."])]
    tables = []
    for role, rows in section.rows.items():
        headers = (["method"] + [f"AMS {b.name} ({b.describe()})" for b in bands]
                   + [f"UMS {b.name}" for b in bands] + ["N_G"])
        base = next((r for r in rows if r.label == BASE_LABEL and r.reason is None), None)
        ng_ref = base.n_generated if base is not None else None
        differ = sorted({r.n_generated for r in rows if r.reason is None})
        body = []
        for r in rows:
            if r.reason is not None:
                na = f"n/a {notes.ref(r.reason)}"
                body.append([r.display_label] + [na] * (2 * len(bands)) + [str(r.n_generated)])
                continue
            mark = NG_MARK if (ng_ref is not None and r.n_generated != ng_ref) or (ng_ref is None and len(differ) > 1) \
                else ""
            cells = []
            for b in bands:
                est = r.bands[b.name].ams
                text = f"{_fmt(est.mean)} [{_fmt(est.low)}, {_fmt(est.high)}]"
                if few_clusters(est):
                    notes.few.add(est.n_clusters)
                    text += "†"
                cells.append(text)
            for b in bands:
                v = r.bands[b.name]
                n = len(v.matched)
                cells.append(f"{_fmt(v.ums or 0.0)} ({n} ref{'s' if n != 1 else ''}){mark}")
            body.append([r.display_label] + cells + [str(r.n_generated)])
        after = ["UMS depends on N_G (more images can match more references, and divide by more): compare UMS "
                 "only between rows with the same N_G."]
        if len(differ) > 1:
            whose = "base's" if ng_ref is not None else "the other rows'"
            after.append(f"{NG_MARK} N_G differs from {whose} ({', '.join(map(str, differ))} here): this row's UMS is "
                         "not comparable with theirs.")
        tables.append(Table(f"memorization-{role}", f"Memorization bands (AMS / UMS), {ROLE_TITLES.get(role, role)}",
                            headers, body, intro=[intro] if not tables else [], after=after))
    return tables


__all__ = ["BAND_NAMES", "BandRow", "BandSection", "BandValue", "band_section", "bands_of", "memorization_tables",
           "reuse_band_sections"]
