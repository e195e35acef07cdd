"""Leaderboard building and rendering from hand-made per-prompt results."""

from __future__ import annotations

import json

import numpy as np
import pytest

from membench_eval.report import PromptResult, build_leaderboard, to_markdown, write_leaderboard
from membench_eval.stats import ClusterBootstrap, cluster_labels

MEMS = {"t0": ("A",), "t1": ("A",), "t2": ("B",), "t3": ("C", "B"), "t4": ("D",)}


def _results(label: str, shift: float, clip: float | None = None) -> list[PromptResult]:
    out = []
    for i, (pid, mems) in enumerate(sorted(MEMS.items())):
        top1 = 0.4 + 0.1 * i + shift
        out.append(PromptResult(
            label=label, method=label.split()[0], role="trigger", prompt_id=pid, n_images=4,
            metrics={"top1_sscd": top1, "top3_sscd": top1 - 0.05, "sscd_gt_05": float(top1 > 0.5),
                     "top1_any": top1 + 0.01, "clip": clip, "aesthetic": None},
            params={} if label == "base" else {"n": 1}, memorized_ids=mems))
    for j in range(3):
        out.append(PromptResult(label=label, method=label.split()[0], role="general", prompt_id=f"g{j}",
                                n_images=1, metrics={"top1_any": 0.1 * j, "clip": clip, "aesthetic": None}))
    return out


def _board(**kw):
    # targets as a plain mapping: the caller vouches they are comparable (shown as given); a
    # suite's ReferenceTargets are checked against the run (tests/report/test_report_honesty.py).
    results = _results("base", 0.0) + _results("rna n=1", -0.2)
    return build_leaderboard(
        results, suite="toy", kinds={"base": "base", "rna n=1": "method"},
        targets={"top1_sscd": 0.088, "clip": 0.310}, targets_source="paper",
        unavailable={"clip": "no CLIP weights offline", "aesthetic": "no CLIP weights offline",
                     "coco_clip": "no CLIP weights offline", "coco_aesthetic": "no CLIP weights offline"},
        metadata={"model": "toy-model", "sscd_backend": "disc_mixup_onnx"}, n_resamples=500, **kw)


def test_numbers_equal_recomputation_from_per_prompt_values() -> None:
    board = _board()
    rna = board.row("rna n=1").cells["top1_sscd"]
    vals = [0.2 + 0.1 * i for i in range(5)]
    assert rna.estimate.mean == pytest.approx(np.mean(vals))
    ids = sorted(MEMS)
    boot = ClusterBootstrap(cluster_labels(ids, [MEMS[p] for p in ids]), n_resamples=500,
                            seed=board.bootstrap["seed"])
    again = boot.estimate(vals)
    assert (rna.estimate.low, rna.estimate.high) == pytest.approx((again.low, again.high), abs=1e-12)
    # t2 and t3 share B; t0 and t1 share A -> 3 clusters.
    assert rna.estimate.n_clusters == 3
    assert rna.delta.mean == pytest.approx(-0.2) and rna.delta.low == pytest.approx(-0.2)
    assert board.row("base").cells["top1_sscd"].delta is None


def test_rows_order_reference_base_then_methods() -> None:
    board = _board()
    assert [r.kind for r in board.rows] == ["reference", "base", "method"]
    assert board.rows[0].cells["top1_sscd"].value == 0.088
    assert not board.rows[0].cells["top3_sscd"].available


def test_unavailable_metrics_are_na_with_reason_never_numbers() -> None:
    board = _board()
    cell = board.row("rna n=1").cells["clip"]
    assert cell.estimate is None and cell.reason == "no CLIP weights offline"
    md = to_markdown(board)
    assert "n/a [^1]" in md and "[^1]: no CLIP weights offline" in md
    assert md.count("[^1]:") == 1


def test_missing_per_prompt_value_makes_cell_unavailable() -> None:
    results = _results("base", 0.0, clip=0.3)
    results[0] = PromptResult(**{**results[0].__dict__, "metrics": {**results[0].metrics, "clip": None}})
    board = build_leaderboard(results, suite="toy", kinds={"base": "base"}, n_resamples=50)
    assert "missing for 1 trigger prompt" in board.row("base").cells["clip"].reason
    assert board.row("base").cells["coco_clip"].estimate.mean == pytest.approx(0.3)


def test_result_order_does_not_change_the_leaderboard() -> None:
    results = _results("base", 0.0) + _results("rna n=1", -0.2)
    a = build_leaderboard(results, suite="t", kinds={"base": "base", "rna n=1": "method"}, n_resamples=200)
    b = build_leaderboard(results[::-1], suite="t", kinds={"base": "base", "rna n=1": "method"}, n_resamples=200)
    assert to_markdown(a) == to_markdown(b)


def test_duplicate_prompt_and_undeclared_row_are_errors() -> None:
    results = _results("base", 0.0)
    with pytest.raises(ValueError, match="appears twice"):
        build_leaderboard(results + results[:1], suite="t", kinds={"base": "base"})
    with pytest.raises(ValueError, match="no declared kind"):
        build_leaderboard(results, suite="t", kinds={})


def test_markdown_and_json_written(tmp_path) -> None:
    board = _board()
    md_path, json_path = write_leaderboard(board, tmp_path)
    assert md_path.name == "toy.md" and json_path.name == "toy.json"
    md = md_path.read_text()
    header = next(line for line in md.splitlines() if line.startswith("| method"))
    for title in ("Top-1 SSCD", "Top-3 SSCD", "SSCD>0.5", "CLIP", "Aesthetic", "COCO CLIP", "COCO Aesthetic"):
        assert title in header
    assert "| rna n=1" in md and "| base" in md and "0.088" in md
    # 3 clusters (< 5): the interval carries the few-clusters mark, explained once.
    assert "Paired difference to base" in md and "-0.200 [-0.200, -0.200]†" in md
    assert md.count("† interval from N < 5 memorized-image clusters") == 1
    data = json.loads(json_path.read_text())
    assert data["metadata"]["model"] == "toy-model"
    assert len(data["per_prompt"]) == 16
    rna = next(r for r in data["rows"] if r["label"] == "rna n=1")
    assert rna["metrics"]["clip"] == {"available": False, "reason": "no CLIP weights offline"}
    assert rna["metrics"]["top1_sscd"]["delta_to_base"]["mean"] == pytest.approx(-0.2)
    assert rna["metrics"]["top1_sscd"]["few_clusters"] is True and rna["complete"] is True
    assert not list(tmp_path.glob(".*tmp"))
