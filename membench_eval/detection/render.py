"""The detection leaderboard as files: ``<out>/<name>.detect.md``, ``.detect.json``, ``.roc.png``.

Markdown (tabulate, github) for people: one row per detector configuration with ROC AUC, TPR at
1% / 3% FPR and the AUC difference to the reference, each ``value [95% interval]``, and the cost per
prompt. JSON for tools: everything, including every per-prompt score, so a board can be checked or
re-plotted without the store. PNG: every detector's ROC curve on one plot (matplotlib's object API
on the Agg canvas, no pyplot).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from membench_eval.detection.leaderboard import FPRS, DetectionLeaderboard, DetectorRow
from membench_eval.report.text import fmt_number, md_table
from membench_eval.stats import Estimate


def _est(est: Estimate | None, signed: bool = False) -> str:
    if est is None:
        return "-"
    f = lambda v: fmt_number(v, 3, signed)  # noqa: E731
    return f"{f(est.mean)} [{f(est.low)}, {f(est.high)}]"


def _row_cells(board: DetectionLeaderboard, row: DetectorRow) -> list[str]:
    label = row.label + (" (reference)" if row.is_reference else "")
    cost = [f"{row.mean_unet_rows:.1f}", f"{row.mean_seconds:.3g}"]
    delta = [] if board.reference is None else ["-" if row.auc is None or row.is_reference
                                                else _est(row.delta_auc, signed=True)]
    if row.auc is None:
        return [label, row.reason or "n/a", *("-" for _ in FPRS), *delta, *cost]
    return [label, _est(row.auc), *(_est(row.tpr.get(f)) for f in FPRS), *delta, *cost]


def to_markdown(board: DetectionLeaderboard) -> str:
    pct = int(round(100 * board.bootstrap.get("confidence", 0.95)))
    delta = [] if board.reference is None else [f"ΔAUC vs {board.reference} [{pct}% CI]"]
    headers = ["detector", f"ROC AUC [{pct}% CI]", *(f"TPR@{f:.0%}FPR [{pct}% CI]" for f in FPRS), *delta,
               "UNet rows/prompt", "s/prompt"]
    table = md_table([_row_cells(board, r) for r in board.rows], headers)
    lines = [
        f"# Memorization detection: {board.name}", "",
        f"{board.description}.", "",
        f"{board.n_memorized} memorized prompts in {board.n_memorized_clusters} clusters of shared memorized "
        f"images; {board.n_nonmemorized} non-memorized prompts.", "",
        table, "",
        f"Intervals: {pct}% percentile bootstrap ({board.bootstrap.get('n_resamples')} resamples, seed "
        f"{board.bootstrap.get('seed')}), memorized prompts resampled by cluster, non-memorized prompts one by "
        "one; ΔAUC is paired (same resamples for both detectors). Cost: UNet forward rows and wall seconds per "
        "prompt, measured when the score was computed (setup excluded).",
    ]
    if board.reference is None:
        lines += ["", "No reference detector (`wen_single`) in this run, so no AUC differences."]
    return "\n".join(lines) + "\n"


def to_json(board: DetectionLeaderboard) -> dict[str, Any]:
    def est(e: Estimate | None) -> dict[str, Any] | None:
        return None if e is None else e.to_dict()

    return {
        "name": board.name, "suite": board.suite, "description": board.description,
        "n_memorized": board.n_memorized, "n_nonmemorized": board.n_nonmemorized,
        "n_memorized_clusters": board.n_memorized_clusters, "reference": board.reference,
        "bootstrap": board.bootstrap, "metadata": board.metadata,
        "detectors": [
            {"label": r.label, "name": r.name, "params": r.params, "source_path": r.source_path,
             "source_sha256": r.source_sha256, "reference": r.is_reference, "available": r.auc is not None,
             "reason": r.reason, "auc": est(r.auc), "tpr_at_fpr": {f"{f:g}": est(r.tpr.get(f)) for f in FPRS},
             "delta_auc": est(r.delta_auc), "mean_unet_rows": r.mean_unet_rows, "mean_seconds": r.mean_seconds,
             "setup_seconds": r.setup_seconds, "scores": r.scores}
            for r in board.rows
        ],
    }


def plot_roc(board: DetectionLeaderboard, path: str | Path) -> Path:
    """Every detector's ROC curve on one plot (or the reason there is none)."""
    import numpy as np
    from matplotlib.figure import Figure
    from sklearn.metrics import roc_curve

    path = Path(path)
    fig = Figure(figsize=(6, 5.4), dpi=100, layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1, label="chance")
    drawn = 0
    for i, row in enumerate(board.rows):
        if row.auc is None:
            continue
        y = np.array([s["memorized"] for s in row.scores], dtype=int)
        fpr, tpr, _ = roc_curve(y, np.array([s["score"] for s in row.scores], dtype=float))
        ax.plot(fpr, tpr, color=f"C{i % 10}", linewidth=1.6 if row.is_reference else 1.2,
                label=f"{row.label} (AUC {row.auc.mean:.3f})")
        drawn += 1
    if not drawn:
        reason = board.rows[0].reason if board.rows else "no detector"
        ax.text(0.5, 0.5, f"no ROC: {reason}", ha="center", va="center", transform=ax.transAxes,
                bbox={"boxstyle": "round", "facecolor": "#f4f4f4", "edgecolor": "#999999"})
    for f in FPRS:
        ax.axvline(f, color="#cccccc", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false-positive rate (non-memorized prompts flagged)")
    ax.set_ylabel("true-positive rate (memorized prompts caught)")
    ax.set_title(f"ROC, {board.name}: {board.n_memorized} memorized vs {board.n_nonmemorized} non-memorized")
    ax.legend(loc="lower right", fontsize=8)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_detection_leaderboard(board: DetectionLeaderboard, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the three files atomically; returns ``{"md", "json", "png"}`` paths."""
    from membench_eval.store.atomic import write_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / f"{board.name}.detect.md", "json": out / f"{board.name}.detect.json",
             "png": out / f"{board.name}.roc.png"}
    write_atomic(paths["json"], json.dumps(to_json(board), indent=1, ensure_ascii=False) + "\n")
    write_atomic(paths["md"], to_markdown(board))
    plot_roc(board, paths["png"])
    return paths
