"""The detection leaderboard: how well each detector configuration separates memorized prompts.

Per configuration: ROC AUC and TPR at 1% and 3% FPR (``roc.py``), each with a 95% percentile
bootstrap interval (``detection.bootstrap``: memorized prompts resampled by cluster of shared
memorized images, non-memorized prompts one by one), the paired AUC difference to the reference
detector (the first configuration named ``wen_single``, when present; same resamples) with its
interval, and the measured cost per prompt (mean UNet rows, mean wall seconds). A prompt set with
one class only has no ROC: its rows say so instead of showing a number. Rendering is
``detection.render``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from membench_eval.detection.prompt_sets import DetectionSet
from membench_eval.detection.run import DetectionResult
from membench_eval.stats import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, DEFAULT_SEED, Estimate

REFERENCE_NAME = "wen_single"
FPRS = (0.01, 0.03)
ONE_CLASS = "needs memorized and non-memorized prompts"


@dataclass(frozen=True)
class DetectorRow:
    """One detector configuration's line of the board (``None`` metrics: see ``reason``)."""

    label: str
    name: str
    params: dict[str, Any]
    source_path: str | None
    source_sha256: str
    auc: Estimate | None
    tpr: dict[float, Estimate]  # FPR -> TPR at that FPR
    delta_auc: Estimate | None  # paired AUC difference to the reference (None for it, or without one)
    mean_unet_rows: float
    mean_seconds: float
    setup_seconds: float
    scores: list[dict[str, Any]]  # per prompt: id, text, memorized, score, unet_rows, seconds
    reason: str | None = None  # why there is no AUC
    is_reference: bool = False


@dataclass
class DetectionLeaderboard:
    name: str  # file stem
    suite: str
    description: str
    n_memorized: int
    n_nonmemorized: int
    n_memorized_clusters: int
    reference: str | None  # label of the reference row
    rows: list[DetectorRow]
    bootstrap: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


def _aligned(result: DetectionResult, dset: DetectionSet) -> np.ndarray:
    """The result's scores in the order of ``dset.prompts`` (every prompt scored, none extra)."""
    by_id = dict(zip(result.prompt_ids, result.scores))
    ids = [p.prompt_id for p in dset.prompts]
    missing = [i for i in ids if i not in by_id]
    if missing or len(by_id) != len(ids):
        extra = sorted(set(by_id) - set(ids))
        raise ValueError(f"detector {result.label!r}: scores do not cover the prompt set {dset.name!r} "
                         f"(missing {missing[:3]}, extra {extra[:3]})")
    return np.array([by_id[i] for i in ids], dtype=np.float64)


def _per_prompt(result: DetectionResult, dset: DetectionSet) -> list[dict[str, Any]]:
    index = {pid: i for i, pid in enumerate(result.prompt_ids)}
    out = []
    for p, memorized in [(p, True) for p in dset.memorized] + [(p, False) for p in dset.nonmemorized]:
        i = index[p.prompt_id]
        out.append({"prompt_id": p.prompt_id, "prompt": p.text, "memorized": memorized,
                    "memorized_ids": list(p.memorized_ids), "score": result.scores[i],
                    "unet_rows": result.unet_rows[i], "seconds": result.seconds[i]})
    return out


def build_detection_leaderboard(
    dset: DetectionSet,
    results: Sequence[DetectionResult],
    *,
    reference: str = REFERENCE_NAME,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
    metadata: dict[str, Any] | None = None,
) -> DetectionLeaderboard:
    """The board of ``results`` (one per detector configuration) on ``dset``."""
    from membench_eval.detection.bootstrap import RocBootstrap
    from membench_eval.detection.roc import tpr_at_fpr

    scores = [np.zeros(len(dset.prompts)) if r.not_applicable else _aligned(r, dset) for r in results]
    labels = dset.labels()
    ref_index = next((i for i, r in enumerate(results) if r.name == reference and not r.not_applicable), None)
    boot = RocBootstrap(labels, dset.clusters(), n_resamples=n_resamples, seed=seed,
                        confidence=confidence) if dset.two_classes else None
    ref_reps = boot.auc_replicates(scores[ref_index]) if boot is not None and ref_index is not None else None
    ref_auc = _auc(labels, scores[ref_index]) if ref_reps is not None and ref_index is not None else None
    rows = []
    for i, (res, s) in enumerate(zip(results, scores)):
        auc = delta = None
        tprs: dict[float, Estimate] = {}
        if res.not_applicable:
            rows.append(DetectorRow(
                label=res.label, name=res.name, params=dict(res.params), source_path=res.source_path,
                source_sha256=res.source_sha256, auc=None, tpr={}, delta_auc=None, mean_unet_rows=0.0,
                mean_seconds=0.0, setup_seconds=0.0, scores=[], reason=res.not_applicable))
            continue
        if boot is not None:
            point = _auc(labels, s)
            reps = boot.auc_replicates(s)
            auc = boot.interval(point, reps)
            tprs = {f: boot.interval(tpr_at_fpr(labels, s, f), boot.tpr_replicates(s, f)) for f in FPRS}
            if ref_reps is not None and i != ref_index:
                delta = boot.interval(point - ref_auc, reps - ref_reps)  # type: ignore[operator]
        rows.append(DetectorRow(
            label=res.label, name=res.name, params=dict(res.params), source_path=res.source_path,
            source_sha256=res.source_sha256, auc=auc, tpr=tprs, delta_auc=delta,
            mean_unet_rows=float(np.mean(res.unet_rows)) if res.unet_rows else 0.0,
            mean_seconds=float(np.mean(res.seconds)) if res.seconds else 0.0, setup_seconds=res.setup_seconds,
            scores=_per_prompt(res, dset), reason=None if boot is not None else ONE_CLASS,
            is_reference=i == ref_index,
        ))
    mem_clusters = len(set(dset.clusters()[: len(dset.memorized)].tolist())) if dset.memorized else 0
    return DetectionLeaderboard(
        name=dset.name, suite=dset.suite, description=dset.description, n_memorized=len(dset.memorized),
        n_nonmemorized=len(dset.nonmemorized), n_memorized_clusters=mem_clusters,
        reference=results[ref_index].label if ref_index is not None else None, rows=rows,
        bootstrap={"n_resamples": n_resamples, "seed": seed, "confidence": confidence,
                   "memorized": "by cluster of shared memorized images", "nonmemorized": "by prompt"},
        metadata=dict(metadata or {}),
    )


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))
