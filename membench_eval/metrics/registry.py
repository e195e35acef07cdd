"""The metric registry: one spec per leaderboard metric, registered once, looked up by name.

Every place that lists metrics (the leaderboard's columns, the Markdown / HTML / CSV / LaTeX
tables, the JSON's ``columns``, the gate parser, the scorers an evaluation loads and the per-prompt
values it aggregates) reads this registry instead of keeping its own list, so a new per-image
metric is one module (its scorer) plus one :func:`register` call. Modelled on lm-evaluation-harness's
metric registry: a spec per metric, ``register(...)``, lookup by name.

A metric is measured per prompt and then averaged over the prompts of a prompt set ("role"):
its column on the trigger prompts has the metric's name as key (``aesthetic``), on the general
(COCO) prompts ``coco_<name>`` with the title prefixed ``COCO `` (``coco_aesthetic``,
"COCO Aesthetic"). Per method every metric aggregates the same way: the leaderboard's mean over
prompts with a cluster-bootstrap interval and the paired difference to base (``report.leaderboard``),
so only the per-image -> per-prompt step is part of a spec.

Two kinds of metric:

- derived from the SSCD similarity rows (``source="sscd"``: Top-1 / Top-3 / SSCD>0.5 / any-memorized
  Top-1), computed together per prompt by ``metrics.aggregate.score_prompt``;
- per-image scores (``source="image"``): a scorer with ``score(images)`` (or ``score(images, texts)``
  with ``uses_text``) loaded by ``load(options, suite)``; each image's value is stored in the run
  store under ``store_metric`` and keyed by the scorer's identity, then reduced per prompt by
  ``per_prompt`` (the mean of the prompt's images). When ``load`` raises :class:`MetricUnavailable`,
  the metric's columns read "n/a" with ``"<name> score not available: <why>"``.

This module is plain data: no torch, nothing from report/ or evaluation (loaders import lazily).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from membench_eval.errors import MetricUnavailable  # noqa: F401  (re-exported: loaders raise it)

ROLES = ("trigger", "general")
# The general prompt set's column: key and title prefix (MemBench's general prompts are COCO captions).
GENERAL_KEY_PREFIX = "coco_"
GENERAL_TITLE_PREFIX = "COCO "

Table = Literal["main", "extra"]
Source = Literal["sscd", "image"]


@dataclass(frozen=True)
class Column:
    """A leaderboard column: which prompt set it averages over and which per-prompt metric."""

    key: str
    title: str
    role: str  # "trigger" or "general"
    metric: str  # key in PromptResult.metrics
    decimals: int = 3


def mean_of_images(values: Sequence[float]) -> float:
    """A prompt's value of a per-image score: the mean over its images (MemBench's order)."""
    import numpy as np

    return float(np.mean(values))


@dataclass(frozen=True)
class MetricSpec:
    """Everything the harness needs to know about one metric.

    ``table``: "main" is the leaderboard's first table (the paper's Table 3 columns, and the CSV /
    LaTeX exports), "extra" the "Also measured" table. ``direction_label``: the word in the
    tables' "Lower ... is better; higher ... are better." line (metrics sharing one are named once).
    ``model_key``: the run metadata key naming the scorer (its ``scorer_id``), e.g. ``clip_model``.
    """

    name: str  # key in PromptResult.metrics; the trigger column's key
    title: str  # column label on the trigger prompts
    higher_is_better: bool
    roles: tuple[str, ...] = ROLES
    decimals: int = 3
    table: Table = "extra"
    source: Source = "image"
    direction_label: str = ""  # default: title
    # Per-image metrics only:
    load: Callable[[Any, Any], Any] | None = None  # (evaluation options, suite) -> scorer
    store_metric: str | None = None  # run store score name; default "<name>_score"
    uses_text: bool = False  # scorer.score(images, prompt texts) instead of scorer.score(images)
    per_prompt: Callable[[Sequence[float]], float] = field(default=mean_of_images)
    model_key: str | None = None  # default "<name>_model"
    id_fields: tuple[str, ...] = ()  # fields of the scorer's id the Markdown shows (model, weights)

    def __post_init__(self) -> None:
        bad = [r for r in self.roles if r not in ROLES]
        if bad or not self.roles:
            raise ValueError(f"metric {self.name!r}: roles must be a non-empty subset of {ROLES}, got {self.roles}")
        if self.source == "image" and self.load is None:
            raise ValueError(f"metric {self.name!r}: a per-image metric needs a loader (load=...)")
        if self.source == "image":
            object.__setattr__(self, "store_metric", self.store_metric or f"{self.name}_score")
            object.__setattr__(self, "model_key", self.model_key or f"{self.name}_model")
        object.__setattr__(self, "direction_label", self.direction_label or self.title)

    def column_key(self, role: str) -> str:
        return self.name if role == "trigger" else GENERAL_KEY_PREFIX + self.name

    def columns(self) -> tuple[Column, ...]:
        """The metric's columns, trigger first."""
        return tuple(Column(self.column_key(role), self.title if role == "trigger" else GENERAL_TITLE_PREFIX
                            + self.title, role, self.name, self.decimals) for role in ROLES if role in self.roles)

    def unavailable_reason(self, why: str) -> str:
        """The n/a reason of every column of this metric when its scorer cannot be loaded."""
        return f"{self.name} score not available: {why}"


_REGISTRY: dict[str, MetricSpec] = {}


def register(spec: MetricSpec) -> MetricSpec:
    """Add a metric (after the ones registered before it, in every table). Its column keys must
    be new: a gate or a JSON reader names a column by key alone."""
    if spec.name in _REGISTRY:
        raise ValueError(f"metric {spec.name!r} is already registered")
    taken = {c.key for s in _REGISTRY.values() for c in s.columns()}
    clash = [c.key for c in spec.columns() if c.key in taken]
    if clash:
        raise ValueError(f"metric {spec.name!r}: column key(s) {clash} already used by another metric")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> MetricSpec:
    """Remove a metric (tests register a toy metric and take it out again)."""
    try:
        return _REGISTRY.pop(name)
    except KeyError:
        raise KeyError(f"no metric {name!r} is registered; registered: {', '.join(_REGISTRY)}") from None


@contextmanager
def registered(spec: MetricSpec) -> Iterator[MetricSpec]:
    """``spec`` registered for the duration of a ``with`` block."""
    register(spec)
    try:
        yield spec
    finally:
        unregister(spec.name)


def get_metric(name: str) -> MetricSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no metric {name!r} is registered; registered: {', '.join(_REGISTRY)}") from None


def metrics() -> tuple[MetricSpec, ...]:
    """Every registered metric, in registration order."""
    return tuple(_REGISTRY.values())


def image_metrics() -> tuple[MetricSpec, ...]:
    """The per-image metrics (each with its own scorer), in registration order."""
    return tuple(s for s in _REGISTRY.values() if s.source == "image")


def columns(table: Table | None = None) -> tuple[Column, ...]:
    """Leaderboard columns of ``table`` (both tables when None: main, then extra); within a
    table the trigger columns come first, then the general ones, each in registration order."""
    out = []
    for t in (("main", "extra") if table is None else (table,)):
        for role in ROLES:
            out += [c for s in _REGISTRY.values() if s.table == t for c in s.columns() if c.role == role]
    return tuple(out)


def columns_by_key() -> dict[str, Column]:
    return {c.key: c for c in columns()}


def direction_sentence() -> str:
    """E.g. "Lower SSCD is better; higher CLIP and Aesthetic are better." for the main table."""
    main = [s for s in _REGISTRY.values() if s.table == "main"]
    lower = list(dict.fromkeys(s.direction_label for s in main if not s.higher_is_better))
    higher = list(dict.fromkeys(s.direction_label for s in main if s.higher_is_better))
    parts = []
    if lower:
        parts.append(f"lower {_and(lower)} is better")
    if higher:
        parts.append(f"higher {_and(higher)} are better" if len(higher) > 1 else f"higher {higher[0]} is better")
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "." if text else ""


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


# --- today's metrics (MemBench's Table 3, plus Top-1 against any memorized image) -----------------


def _load_clip(options: Any, suite: Any) -> Any:
    from membench_eval.metrics.quality_loading import load_clip

    return load_clip(options, suite)


def _load_aesthetic(options: Any, suite: Any) -> Any:
    from membench_eval.metrics.quality_loading import load_aesthetic

    return load_aesthetic(options, suite)


register(MetricSpec("top1_sscd", "Top-1 SSCD", False, ("trigger",), table="main", source="sscd",
                    direction_label="SSCD"))
register(MetricSpec("top3_sscd", "Top-3 SSCD", False, ("trigger",), table="main", source="sscd",
                    direction_label="SSCD"))
register(MetricSpec("sscd_gt_05", "SSCD>0.5", False, ("trigger",), table="main", source="sscd",
                    direction_label="SSCD"))
register(MetricSpec("clip", "CLIP", True, table="main", load=_load_clip, store_metric="clip_score",
                    uses_text=True, id_fields=("clip_model", "clip_pretrained")))
register(MetricSpec("aesthetic", "Aesthetic", True, decimals=2, table="main", load=_load_aesthetic,
                    store_metric="aesthetic_score", id_fields=("aesthetic_clip_model", "aesthetic_clip_pretrained")))
# Not in the paper's table but needed to judge a method: Top-1 SSCD against ANY memorized image of
# the suite (a method that swaps one memorized copy for another must show up), and the same on the
# general prompts (leakage of memorized images into unrelated prompts).
register(MetricSpec("top1_any", "Top-1 SSCD (any memorized)", False, table="extra", source="sscd",
                    direction_label="SSCD"))
