"""Build the leaderboard (numbers + intervals + paired deltas) from per-prompt results.

Rows: the suite's reference targets (no intervals: they are published numbers), base, the
baselines found in the store, then the user's methods. Each cell is the mean over the prompts of
the column's prompt set, with a cluster-bootstrap 95% interval and the paired difference to base
on the prompts both share (see ``membench_eval.stats``). A metric the run could not compute is a
cell with a reason, never a number.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from membench_eval.report.records import ALL_COLUMNS, Column, PromptResult
from membench_eval.stats import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, DEFAULT_SEED, ClusterBootstrap, Estimate
from membench_eval.stats.clusters import ClusterMethod, cluster_labels

RowKind = Literal["reference", "base", "baseline", "method"]
BASE_LABEL = "base"


@dataclass(frozen=True)
class Cell:
    """One number of the table, or the reason it is not available."""

    estimate: Estimate | None = None
    delta: Estimate | None = None  # paired difference to base (None for base itself)
    reason: str | None = None  # why estimate is None
    reference_value: float | None = None  # published reference target (reference row only)

    @property
    def available(self) -> bool:
        return self.estimate is not None or self.reference_value is not None

    @property
    def value(self) -> float | None:
        return self.estimate.mean if self.estimate is not None else self.reference_value

    def to_dict(self) -> dict[str, Any]:
        if self.reference_value is not None:
            return {"available": True, "mean": self.reference_value, "published": True}
        if self.estimate is None:
            return {"available": False, "reason": self.reason}
        d: dict[str, Any] = {"available": True, **self.estimate.to_dict()}
        d["delta_to_base"] = None if self.delta is None else self.delta.to_dict()
        return d


@dataclass
class Row:
    label: str
    kind: RowKind
    method: str
    params: dict[str, Any]
    cells: dict[str, Cell]
    n_prompts: dict[str, int] = field(default_factory=dict)


@dataclass
class Leaderboard:
    suite: str
    rows: list[Row]
    columns: tuple[Column, ...]
    metadata: dict[str, Any]
    unavailable: dict[str, str]  # column key -> reason (run-wide)
    bootstrap: dict[str, Any]
    results: list[PromptResult]

    def row(self, label: str) -> Row:
        for r in self.rows:
            if r.label == label:
                return r
        raise KeyError(f"no leaderboard row {label!r}; rows: {[r.label for r in self.rows]}")


def build_leaderboard(
    results: Iterable[PromptResult],
    *,
    suite: str,
    kinds: Mapping[str, RowKind],
    targets: Mapping[str, float] | None = None,
    targets_source: str = "",
    unavailable: Mapping[str, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
    cluster_method: ClusterMethod = "components",
    columns: tuple[Column, ...] = ALL_COLUMNS,
) -> Leaderboard:
    """Leaderboard from per-prompt results. ``kinds`` maps each row label to base/baseline/method;
    ``targets`` maps column keys to published reference values (e.g. sd1: top1_sscd 0.088, clip 0.310)."""
    results = sorted(results, key=lambda r: (r.label, r.role, r.prompt_id))
    unavailable = dict(unavailable or {})
    by_row: dict[str, list[PromptResult]] = {}
    for r in results:
        by_row.setdefault(r.label, []).append(r)
    _check_unique(by_row)
    missing_kind = sorted(set(by_row) - set(kinds))
    if missing_kind:
        raise ValueError(f"results for rows with no declared kind: {missing_kind}")

    memorized = {(r.role, r.prompt_id): r.memorized_ids for r in results}
    cache: dict[tuple[str, tuple[str, ...]], ClusterBootstrap] = {}

    def bootstrap_for(role: str, prompt_ids: tuple[str, ...]) -> ClusterBootstrap:
        key = (role, prompt_ids)
        if key not in cache:
            labels = cluster_labels(prompt_ids, [memorized[(role, p)] for p in prompt_ids], cluster_method)
            cache[key] = ClusterBootstrap(labels, n_resamples=n_resamples, seed=seed, confidence=confidence)
        return cache[key]

    def values(label: str, col: Column) -> dict[str, float | None]:
        return {r.prompt_id: r.metrics.get(col.metric) for r in by_row.get(label, []) if r.role == col.role}

    rows: list[Row] = []
    if targets:
        cells = {c.key: (Cell(reference_value=float(targets[c.key])) if targets.get(c.key) is not None
                         else Cell()) for c in columns}
        rows.append(Row(f"reference ({targets_source})" if targets_source else "reference",
                        "reference", "reference", {}, cells))

    order = {"base": 0, "baseline": 1, "method": 2}
    labels = sorted(by_row, key=lambda lab: (order[kinds[lab]], lab if kinds[lab] != "method" else ""))
    # Keep the user's methods in the order given (dict order of ``kinds``).
    user = [lab for lab in kinds if kinds[lab] == "method" and lab in by_row]
    labels = [lab for lab in labels if kinds[lab] != "method"] + user

    for label in labels:
        first = by_row[label][0]
        cells: dict[str, Cell] = {}
        for col in columns:
            vals = values(label, col)
            cells[col.key] = _cell(label, col, vals, values(BASE_LABEL, col) if label != BASE_LABEL else None,
                                   unavailable, bootstrap_for)
        n_prompts = {role: sum(1 for r in by_row[label] if r.role == role) for role in ("trigger", "general")}
        rows.append(Row(label, kinds[label], first.method, dict(first.params), cells, n_prompts))

    boot = {"n_resamples": n_resamples, "seed": seed, "confidence": confidence, "cluster_method": cluster_method,
            "interval": "percentile", "resampling_unit": "cluster of prompts sharing memorized images"}
    return Leaderboard(suite, rows, columns, dict(metadata or {}), unavailable, boot, results)


def _cell(label, col, vals, base_vals, unavailable, bootstrap_for) -> Cell:
    if col.key in unavailable:
        return Cell(reason=unavailable[col.key])
    if not vals:
        return Cell(reason=f"no {col.role} prompts in this run")
    if any(v is None or not np.isfinite(v) for v in vals.values()):
        bad = sorted(p for p, v in vals.items() if v is None or not np.isfinite(v))
        return Cell(reason=f"{col.metric} missing for {len(bad)} {col.role} prompt(s), e.g. {bad[0]}")
    ids = tuple(sorted(vals))
    est = bootstrap_for(col.role, ids).estimate([vals[p] for p in ids])
    delta = None
    if base_vals:
        shared = tuple(p for p in ids if base_vals.get(p) is not None and np.isfinite(base_vals[p]))
        if shared:
            delta = bootstrap_for(col.role, shared).paired_delta([vals[p] for p in shared],
                                                                 [base_vals[p] for p in shared])
    return Cell(estimate=est, delta=delta)


def _check_unique(by_row: dict[str, list[PromptResult]]) -> None:
    for label, rs in by_row.items():
        seen: set[tuple[str, str]] = set()
        for r in rs:
            key = (r.role, r.prompt_id)
            if key in seen:
                raise ValueError(f"row {label!r}: prompt {r.prompt_id!r} ({r.role}) appears twice")
            seen.add(key)
