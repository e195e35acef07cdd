"""Build the leaderboard (numbers + intervals + paired deltas) from per-prompt results.

Rows: the suite's reference targets (no intervals: they are published numbers), base, the
baselines found in the store, then the user's methods. Each cell is the mean over the prompts of
the column's prompt set, with a cluster-bootstrap 95% interval and the paired difference to base
on the same prompts (see ``membench_eval.stats``). A metric the run could not compute is a cell
with a reason, never a number.

Honesty rules (what a reader could otherwise misread):

- a published target is shown only when the run measured its column the same way (same SSCD
  backend, same CLIP model; ``report.targets``), otherwise it is withheld with the reason, and the
  reference row is left out when no target qualifies;
- with ``expected`` prompt ids per role (the plan's prompt sets), a row whose results miss some
  of them is *incomplete*: its mean is still shown, but it gets no paired delta to base for that
  role (the two means are over different prompt sets), and gates on it fail;
- a paired delta is only computed when the row and base cover exactly the same prompts;
- an interval from fewer than ``MIN_CLUSTERS`` resampling clusters is flagged (``few_clusters``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from membench_eval.metrics.registry import columns as registered_columns
from membench_eval.report.records import Column, PromptResult
from membench_eval.report.targets import check_targets
from membench_eval.stats import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, DEFAULT_SEED, ClusterBootstrap, Estimate
from membench_eval.stats.clusters import ClusterMethod, cluster_labels
from membench_eval.suites.types import ReferenceTargets

# "stored": an earlier config found complete in the run store (not a bundled baseline, not gated).
# "computed_reference": a reference measured in this run (an image-search reference scored like a method).
RowKind = Literal["reference", "computed_reference", "base", "baseline", "stored", "method"]
BASE_LABEL = "base"
ROLES = ("trigger", "general")
# Fewer resampling clusters than this: the bootstrap interval is flagged as understating uncertainty.
MIN_CLUSTERS = 5
NOT_COMPARED = "computed on a different prompt set than base; not compared"


ORACLE_MARK = "oracle: uses the memorized images"


def few_clusters(est: Estimate | None) -> bool:
    """Whether an interval was resampled from fewer than ``MIN_CLUSTERS`` clusters."""
    return est is not None and est.n_clusters < MIN_CLUSTERS


@dataclass(frozen=True)
class Cell:
    """One number of the table, or the reason it is not available."""

    estimate: Estimate | None = None
    delta: Estimate | None = None  # paired difference to base (None for base itself)
    reason: str | None = None  # why estimate is None (or why a published target is withheld)
    reference_value: float | None = None  # published reference target, shown (reference row only)
    delta_reason: str | None = None  # why a row other than base has no delta (e.g. NOT_COMPARED)
    withheld_value: float | None = None  # published target withheld as not comparable (reason says why)

    @property
    def available(self) -> bool:
        return self.estimate is not None or self.reference_value is not None

    @property
    def value(self) -> float | None:
        return self.estimate.mean if self.estimate is not None else self.reference_value

    @property
    def few_clusters(self) -> bool:
        return few_clusters(self.estimate)

    def to_dict(self) -> dict[str, Any]:
        if self.reference_value is not None:
            return {"available": True, "mean": self.reference_value, "published": True, "comparable": True}
        if self.withheld_value is not None:
            return {"available": False, "reason": self.reason, "published": True,
                    "published_value": self.withheld_value, "comparable": False}
        if self.estimate is None:
            return {"available": False, "reason": self.reason}
        d: dict[str, Any] = {"available": True, **self.estimate.to_dict(), "few_clusters": self.few_clusters}
        d["delta_to_base"] = (None if self.delta is None
                              else {**self.delta.to_dict(), "few_clusters": few_clusters(self.delta)})
        d["delta_reason"] = self.delta_reason
        return d


@dataclass
class Row:
    label: str
    kind: RowKind
    method: str
    params: dict[str, Any]
    cells: dict[str, Cell]
    n_prompts: dict[str, int] = field(default_factory=dict)
    # role -> {"expected", "present", "missing" (ids), "extra"}; only roles with expected prompt ids.
    prompt_coverage: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The method reads the suite's memorized images (``Mitigation.oracle``, e.g. AMG): an upper
    # bound for blind methods, marked wherever the label is shown.
    oracle: bool = False

    def role_complete(self, role: str) -> bool:
        c = self.prompt_coverage.get(role)
        return c is None or (not c["missing"] and not c["extra"])

    @property
    def complete(self) -> bool:
        """Whether the row has results for every expected prompt (and no others)."""
        return all(self.role_complete(role) for role in self.prompt_coverage)

    def incomplete_reason(self) -> str | None:
        """E.g. ``"12/18 trigger prompts"`` (None when complete)."""
        parts = []
        for role, c in self.prompt_coverage.items():
            if self.role_complete(role):
                continue
            text = f"{c['present']}/{c['expected']} {role} prompts"
            if c["extra"]:
                text += f" + {c['extra']} outside the plan"
            parts.append(text)
        return ", ".join(parts) or None

    @property
    def display_label(self) -> str:
        """The label as the markdown shows it: incomplete rows say so, e.g. ``rna n=6 (12/18 trigger prompts)``."""
        why = self.incomplete_reason()
        label = f"{self.label} ({ORACLE_MARK})" if self.oracle else self.label
        return f"{label} ({why})" if why else label


@dataclass
class Leaderboard:
    suite: str
    rows: list[Row]
    columns: tuple[Column, ...]
    metadata: dict[str, Any]
    unavailable: dict[str, str]  # column key -> reason (run-wide)
    bootstrap: dict[str, Any]
    results: list[PromptResult]
    # Published targets: source, each target's check, whether the row is shown, and why not.
    reference: dict[str, Any] = field(default_factory=dict)
    expected: dict[str, list[str]] = field(default_factory=dict)  # role -> expected prompt ids

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
    targets: Mapping[str, float] | ReferenceTargets | None = None,
    targets_source: str = "",
    expected: Mapping[str, Sequence[str]] | None = None,
    unavailable: Mapping[str, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
    cluster_method: ClusterMethod = "components",
    columns: tuple[Column, ...] | None = None,
    not_applicable: Mapping[str, str] | None = None,
) -> Leaderboard:
    """Leaderboard from per-prompt results. ``kinds`` maps each row label to base/baseline/method.

    ``targets``: a suite's ``ReferenceTargets`` (each target shown only when ``metadata``'s
    ``sscd_backend`` / ``clip_model`` match what it was published with, else withheld with the
    reason), or a plain mapping of column keys to published values that the caller vouches are
    comparable (shown as given). ``expected``: role -> the prompt ids every row should have (the
    plan's prompt sets); rows missing some are marked incomplete and get no delta for that role.
    With ``expected``, a declared row with no results at all appears too (as 0/N prompts).
    ``columns``: default every registered metric's columns (``metrics.registry``).
    ``not_applicable``: row label -> why the method cannot act on this model family
    (``n/a: ren needs clip_bos_token; deepfloyd-if has none``; default: the metadata's
    ``not_applicable``): every cell of that row reads n/a with it, and no coverage is expected.
    """
    columns = registered_columns() if columns is None else columns
    results = sorted(results, key=lambda r: (r.label, r.role, r.prompt_id))
    unavailable = dict(unavailable or {})
    meta = dict(metadata or {})
    na = dict(not_applicable if not_applicable is not None else meta.get("not_applicable") or {})
    exp = {role: sorted(dict.fromkeys(str(p) for p in ids)) for role, ids in (expected or {}).items()}
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

    by_role: dict[tuple[str, str], list[PromptResult]] = {}
    for r in results:
        by_role.setdefault((r.label, r.role), []).append(r)
    base_values: dict[str, dict[str, float | None]] = {}

    def values(label: str, col: Column) -> dict[str, float | None]:
        if label == BASE_LABEL and col.key in base_values:  # asked again for every other row
            return base_values[col.key]
        out = {r.prompt_id: r.metrics.get(col.metric) for r in by_role.get((label, col.role), [])}
        if label == BASE_LABEL:
            base_values[col.key] = out
        return out

    def coverage(label: str) -> dict[str, dict[str, Any]]:
        out = {}
        for role, ids in exp.items():
            have = {r.prompt_id for r in by_row.get(label, []) if r.role == role}
            want = set(ids)
            out[role] = {"expected": len(want), "present": len(have & want),
                         "missing": sorted(want - have), "extra": len(have - want)}
        return out

    rows: list[Row] = []
    reference, ref_row = _reference(targets, targets_source, meta, columns)
    if ref_row is not None:
        rows.append(ref_row)

    order = {"computed_reference": -1, "base": 0, "baseline": 1, "stored": 2, "method": 3}
    present = [lab for lab in kinds if kinds[lab] != "reference" and (lab in by_row or exp)]
    labels = sorted((lab for lab in present if kinds[lab] != "method"), key=lambda lab: (order[kinds[lab]], lab))
    labels += [lab for lab in present if kinds[lab] == "method"]  # the user's methods in the order given

    base_cov = coverage(BASE_LABEL) if (BASE_LABEL in by_row or exp) else {}
    for label in labels:
        rs = by_row.get(label, [])
        cov = coverage(label)
        if kinds[label] == "computed_reference":  # a reference covers the scenarios it measures
            cov = {role: c for role, c in cov.items() if c["present"] or c["extra"]}
        if label in na:  # the method has nothing to act on in this family: no prompts expected
            cov = {}
        cells: dict[str, Cell] = {}
        for col in columns:
            if label in na:
                cells[col.key] = Cell(reason=na[label])
                continue
            base_vals = values(BASE_LABEL, col) if label != BASE_LABEL and BASE_LABEL in by_row else None
            comparable = _role_ok(cov, col.role) and _role_ok(base_cov, col.role)
            cells[col.key] = _cell(col, values(label, col), base_vals, comparable, cov.get(col.role), unavailable,
                                   bootstrap_for)
        n_prompts = {role: sum(1 for r in rs if r.role == role) for role in ROLES}
        method = rs[0].method if rs else label.split()[0]
        params = dict(rs[0].params) if rs else {}
        oracle = bool(((meta.get("methods") or {}).get(label) or {}).get("oracle"))
        rows.append(Row(label, kinds[label], method, params, cells, n_prompts, cov, oracle))

    boot = {"n_resamples": n_resamples, "seed": seed, "confidence": confidence, "cluster_method": cluster_method,
            "interval": "percentile", "resampling_unit": "cluster of prompts sharing memorized images",
            "few_clusters_below": MIN_CLUSTERS}
    return Leaderboard(suite, rows, columns, meta, unavailable, boot, results, reference, exp)


def _role_ok(cov: dict[str, dict[str, Any]], role: str) -> bool:
    c = cov.get(role)
    return c is None or (not c["missing"] and not c["extra"])


def _reference(targets, source: str, meta: dict[str, Any], columns: tuple[Column, ...]
               ) -> tuple[dict[str, Any], Row | None]:
    """The reference row (None when no target is declared or none is comparable) and its JSON record."""
    if not targets:
        return {}, None
    if isinstance(targets, ReferenceTargets):
        source = source or targets.source
        checks = check_targets(targets, meta, {c.key: c.metric for c in columns})
        if not checks:
            return {}, None
        shown = {k: c.value for k, c in checks.items() if c.comparable}
        withheld = {k: c for k, c in checks.items() if not c.comparable}
        info: dict[str, Any] = {"source": source, "checked": True,
                                "targets": {k: c.to_dict() for k, c in checks.items()}}
    else:
        shown = {k: float(v) for k, v in targets.items() if v is not None}
        withheld = {}
        info = {"source": source, "checked": False,  # the caller vouches the targets are comparable
                "targets": {k: {"value": v, "measured_with": {}, "comparable": True, "reason": None}
                            for k, v in shown.items()}}
    keys = {c.key for c in columns}
    if not any(k in keys for k in shown):
        titles = {c.key: c.title for c in columns}
        why = "; ".join(f"{titles.get(k, k)}: {c.reason}" for k, c in withheld.items())
        info.update(row_shown=False, note=(f"Reference row ({source or 'published targets'}) not shown: no "
                                           f"published target is comparable with this run ({why})."))
        return info, None
    info.update(row_shown=True, note=None)
    cells = {}
    for c in columns:
        if c.key in shown:
            cells[c.key] = Cell(reference_value=shown[c.key])
        elif c.key in withheld:
            cells[c.key] = Cell(reason=withheld[c.key].reason, withheld_value=withheld[c.key].value)
        else:
            cells[c.key] = Cell()
    label = f"reference ({source})" if source else "reference"
    return info, Row(label, "reference", "reference", {}, cells)


def _cell(col, vals, base_vals, comparable: bool, cov, unavailable, bootstrap_for) -> Cell:
    if col.key in unavailable:
        return Cell(reason=unavailable[col.key])
    if not vals:
        if cov and cov["expected"]:
            return Cell(reason=f"no results for this row on any of the {cov['expected']} planned {col.role} prompts")
        return Cell(reason=f"no {col.role} prompts in this run")
    if not _all_finite(vals):
        bad = sorted(p for p, v in vals.items() if v is None or not np.isfinite(v))
        return Cell(reason=f"{col.metric} missing for {len(bad)} {col.role} prompt(s), e.g. {bad[0]}")
    ids = tuple(sorted(vals))
    est = bootstrap_for(col.role, ids).estimate([vals[p] for p in ids])
    if base_vals is None:  # base itself, or no base row
        return Cell(estimate=est)
    if not comparable or set(base_vals) != set(ids):
        return Cell(estimate=est, delta_reason=NOT_COMPARED)
    if not _all_finite(base_vals):
        return Cell(estimate=est)  # base's cell is n/a with its own reason
    delta = bootstrap_for(col.role, ids).paired_delta([vals[p] for p in ids], [base_vals[p] for p in ids])
    return Cell(estimate=est, delta=delta)


def _all_finite(vals: dict[str, float | None]) -> bool:
    """No value is None, NaN or inf: one NumPy call per cell (one ``np.isfinite`` per prompt was
    most of a 23-config sweep's leaderboard)."""
    return bool(np.isfinite(np.array([np.nan if v is None else v for v in vals.values()], dtype=np.float64)).all())


def _check_unique(by_row: dict[str, list[PromptResult]]) -> None:
    for label, rs in by_row.items():
        seen: set[tuple[str, str]] = set()
        for r in rs:
            key = (r.role, r.prompt_id)
            if key in seen:
                raise ValueError(f"row {label!r}: prompt {r.prompt_id!r} ({r.role}) appears twice")
            seen.add(key)
