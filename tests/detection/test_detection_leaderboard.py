"""The detection leaderboard: ROC AUC / TPR intervals, paired differences, files, and the CLI."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from membench_eval.detection.prompt_sets import DetectionSet
from membench_eval.detection.run import DetectionResult
from membench_eval.suites.types import Prompt

N_RESAMPLES = 400


def _set(n_images: int = 6, per_image: int = 3, n_non: int = 30, name: str = "toy") -> DetectionSet:
    mem = tuple(Prompt(f"t{i:03d}", f"memorized {i}", (f"m{i // per_image}",)) for i in range(n_images * per_image))
    non = tuple(Prompt(f"g{i:03d}", f"general {i}") for i in range(n_non))
    return DetectionSet(name, "toy", mem, non, f"toy set: {len(mem)} vs {len(non)}")


def _result(name: str, dset: DetectionSet, scores, **params) -> DetectionResult:
    n = len(dset.prompts)
    return DetectionResult(
        label=name + "".join(f" {k}={v}" for k, v in params.items()), name=name, params=params, source_path=None,
        source_sha256="0" * 64, prompt_ids=[p.prompt_id for p in dset.prompts],
        prompts=[p.text for p in dset.prompts], seeds=[0] * n, scores=[float(s) for s in scores],
        unet_rows=[2.0] * n, seconds=[0.01] * n,
    )


def _board(dset, results, **kw):
    from membench_eval.detection.leaderboard import build_detection_leaderboard

    return build_detection_leaderboard(dset, results, n_resamples=N_RESAMPLES, **kw)


def test_weighted_bootstrap_with_unit_weights_is_sklearns_auc_and_roc_py_tpr():
    from sklearn.metrics import roc_auc_score

    from membench_eval.detection.bootstrap import RocBootstrap
    from membench_eval.detection.roc import tpr_at_fpr

    rng = np.random.default_rng(0)
    labels = np.array([1] * 40 + [0] * 160)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounded: plenty of ties
    boot = RocBootstrap(labels, np.arange(200), n_resamples=3, seed=1)
    boot.pos_w, boot.neg_w = np.ones((1, 40)), np.ones((1, 160))
    assert boot.auc_replicates(scores)[0] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    for f in (0.01, 0.03, 0.1):
        assert boot.tpr_replicates(scores, f)[0] == pytest.approx(tpr_at_fpr(labels, scores, f), abs=1e-12)


def test_a_perfect_detector_gets_auc_1_with_interval_1_1():
    dset = _set()
    board = _board(dset, [_result("perfect", dset, dset.labels())])
    row = board.rows[0]
    assert (row.auc.mean, row.auc.low, row.auc.high) == (1.0, 1.0, 1.0)
    assert all((t.mean, t.low, t.high) == (1.0, 1.0, 1.0) for t in row.tpr.values())
    assert board.n_memorized_clusters == 6 and row.auc.n_clusters == 6 + 30  # clusters by shared image
    assert row.delta_auc is None and board.reference is None
    assert (row.mean_unet_rows, row.mean_seconds) == (2.0, 0.01)


def test_a_random_detector_is_near_half_with_an_interval_containing_it():
    dset = _set(n_images=20, per_image=3, n_non=60)
    scores = np.random.default_rng(3).normal(size=len(dset.prompts))
    auc = _board(dset, [_result("random", dset, scores)]).rows[0].auc
    assert abs(auc.mean - 0.5) < 0.15 and auc.low < 0.5 < auc.high
    # Prompts of one memorized image score alike: resampling by cluster is wider than treating
    # every memorized prompt as independent (which the same prompts without image ids do).
    rng = np.random.default_rng(4)
    alike = np.concatenate([np.repeat(rng.normal(size=20), 3) + rng.normal(0, 0.1, 60), rng.normal(size=60)])
    flat = DetectionSet("flat", "toy", tuple(Prompt(p.prompt_id, p.text) for p in dset.memorized), dset.nonmemorized)
    clustered = _board(dset, [_result("alike", dset, alike)]).rows[0].auc
    independent = _board(flat, [_result("alike", flat, alike)]).rows[0].auc
    assert independent.mean == clustered.mean
    assert independent.high - independent.low < 0.8 * (clustered.high - clustered.low)


def test_paired_difference_to_wen_single_has_the_right_sign():
    dset = _set()
    y = dset.labels()
    noisy = y + np.random.default_rng(5).normal(0, 0.6, size=y.size)
    results = [_result("perfect", dset, y), _result("wen_single", dset, noisy), _result("inverted", dset, -noisy),
               _result("copy", dset, noisy)]
    board = _board(dset, results)
    rows = {r.name: r for r in board.rows}
    assert board.reference == "wen_single" and rows["wen_single"].is_reference and rows["wen_single"].delta_auc is None
    assert 0.6 < rows["wen_single"].auc.mean < 1.0
    up, down, same = rows["perfect"].delta_auc, rows["inverted"].delta_auc, rows["copy"].delta_auc
    assert up.mean > 0 and up.low > 0 and down.mean < 0 and down.high < 0
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0)  # same resamples: paired


def test_one_class_reads_needs_both_and_files_are_written(tmp_path):
    from membench_eval.detection.render import write_detection_leaderboard

    dset = _set()
    one = DetectionSet("toy.one", "toy", dset.memorized, ())
    board = _board(one, [_result("wen_single", one, np.arange(len(one.prompts)))])
    assert board.rows[0].auc is None and board.rows[0].reason == "needs memorized and non-memorized prompts"
    paths = write_detection_leaderboard(board, tmp_path / "lb")
    assert "needs memorized and non-memorized prompts" in paths["md"].read_text()
    data = json.loads(paths["json"].read_text())
    assert data["detectors"][0]["available"] is False and len(data["detectors"][0]["scores"]) == 18
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_markdown_json_and_png_of_a_two_class_board(tmp_path):
    from membench_eval.detection.render import write_detection_leaderboard

    dset = _set()
    y = dset.labels()
    results = [_result("wen_single", dset, y + np.random.default_rng(1).normal(0, 0.5, y.size)),
               _result("perfect", dset, y, k=2)]
    paths = write_detection_leaderboard(_board(dset, results), tmp_path)
    assert sorted(p.name for p in paths.values()) == ["toy.detect.json", "toy.detect.md", "toy.roc.png"]
    md = paths["md"].read_text()
    assert "| detector" in md and "ΔAUC vs wen_single" in md and "wen_single (reference)" in md
    assert "| perfect k=2 " in md and "1.000 [1.000, 1.000]" in md and "TPR@1%FPR" in md and "TPR@3%FPR" in md
    data = json.loads(paths["json"].read_text())
    perfect = data["detectors"][1]
    assert perfect["auc"]["mean"] == 1.0 and perfect["delta_auc"]["mean"] > 0 and perfect["params"] == {"k": 2}
    assert [s["score"] for s in perfect["scores"]] == [float(v) for v in y]
    assert perfect["scores"][0]["memorized_ids"] == ["m0"] and perfect["tpr_at_fpr"]["0.03"]["mean"] == 1.0
    assert paths["png"].stat().st_size > 5000


TEXT_DETECTOR = '''
from membench_eval.detector import Detector


class Length(Detector):
    """Characters in the prompt: a text-only baseline."""
    name = "length"
    needs_model = False
    scale: float = 1.0

    def score(self, pipe, ctx):
        return [self.scale * len(p) for p in ctx.prompts]
'''


def test_cli_end_to_end_on_the_mini_suite_with_a_text_only_detector(tmp_path, capsys):
    from membench_eval.cli import main

    det = tmp_path / "length.py"
    det.write_text(textwrap.dedent(TEXT_DETECTOR))
    argv = ["detect", "--suite", "mini", "--detector", str(det), "--param", "scale=1,2", "--store",
            str(tmp_path / "store"), "--out", str(tmp_path / "lb"), "--no-progress"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "length scale=1.0: 46 prompt(s) scored, 0 reused" in err and "| length scale=2.0" in out
    data = json.loads((tmp_path / "lb" / "mini.detect.json").read_text())
    assert [d["label"] for d in data["detectors"]] == ["length scale=1.0", "length scale=2.0"]
    assert (data["n_memorized"], data["n_nonmemorized"]) == (16, 30) and data["n_memorized_clusters"] >= 1
    a, b = data["detectors"]
    assert a["auc"]["mean"] == b["auc"]["mean"] and len(a["scores"]) == 46  # a monotone rescaling
    assert (tmp_path / "lb" / "mini.roc.png").is_file() and (tmp_path / "lb" / "mini.detect.md").is_file()
    assert main(argv + ["--json"]) == 0
    out, err = capsys.readouterr()
    assert "0 prompt(s) scored, 46 reused" in err and json.loads(out)["detectors"][0]["label"] == "length scale=1.0"
    assert main(["detect", "--suite", "mini", "--param", "scale=2"]) == 2  # --param needs --detector
    assert "--param needs --detector" in capsys.readouterr().err
