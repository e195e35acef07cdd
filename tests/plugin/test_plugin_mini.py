"""The pytest plugin end to end on the mini suite: base + RNA, store reuse, xdist, gates, CLI.

One test with sequential steps (they share one run store, so order matters and a split across
xdist workers would race): the first run generates; `membench run` on its store must reuse every
image, and `-n 2` on a fresh store must make the same PNG bytes; every run gives the same
leaderboard byte for byte.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from membench_eval.report.records import COLUMNS_BY_KEY
from membench_eval.stats import ClusterBootstrap, cluster_labels
from membench_eval.store.run_store import RunStore

pytest_plugins = ("pytester",)
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RNA = REPO / "mitigations" / "rna.py"
# A --limit/--subset run writes to a name that says so (never over the full leaderboard).
STEM = "mini.limit-2.subset-stratified"


def plugin_args() -> list[str]:
    import importlib.metadata

    installed = any(e.value == "membench_eval.pytest_plugin" for e in importlib.metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "membench_eval.pytest_plugin"]


def _recompute(board: dict) -> None:
    """Every interval of the JSON equals the cluster bootstrap of its own per-prompt values."""
    boot = board["bootstrap"]
    per = board["per_prompt"]
    for row in board["rows"]:
        if row["kind"] == "reference":
            continue
        for key, cell in row["metrics"].items():
            if not cell["available"]:
                continue
            col = COLUMNS_BY_KEY[key]
            rs = sorted((r for r in per if r["label"] == row["label"] and r["role"] == col.role),
                        key=lambda r: r["prompt_id"])
            ids = [r["prompt_id"] for r in rs]
            values = np.array([r["metrics"][col.metric] for r in rs])
            b = ClusterBootstrap(cluster_labels(ids, [r["memorized_ids"] for r in rs], boot["cluster_method"]),
                                 n_resamples=boot["n_resamples"], seed=boot["seed"])
            est = b.estimate(values)
            assert (cell["mean"], cell["low"], cell["high"]) == pytest.approx((est.mean, est.low, est.high), abs=1e-12)
            if row["label"] != "base":
                base = {r["prompt_id"]: r["metrics"][col.metric] for r in per
                        if r["label"] == "base" and r["role"] == col.role}
                d = b.paired_delta(values, np.array([base[i] for i in ids]))
                got = cell["delta_to_base"]
                assert (got["mean"], got["low"], got["high"]) == pytest.approx((d.mean, d.low, d.high), abs=1e-12)


def _check_per_prompt_against_store(board: dict, store_dir: Path) -> None:
    """Per-prompt Top-1 SSCD equals the max similarity stored for the prompt's images in the run store."""
    store = RunStore(store_dir, shard="reader")
    sims = {row["key"]: row["value"] for row in store.score_rows() if row["metric"] == "sscd_similarities"}
    for r in board["per_prompt"]:
        if r["role"] != "trigger" or r["method"] == "reference":  # the gallery reference is not generated
            continue
        keys = [rec["key"] for rec in store.records()
                if rec.get("label") == r["label"] and rec["prompt_id"] == r["prompt_id"]]
        assert len(keys) == r["n_images"]
        top1 = max(sims[k][m] for k in keys for m in r["memorized_ids"])
        assert r["metrics"]["top1_sscd"] == pytest.approx(top1, abs=1e-9)


USER_TEST = """
import numpy as np
from PIL import Image


def test_references_match_themselves(membench_sscd, membench_reference_embeddings, membench_evaluation):
    paths, coverage = membench_evaluation.references
    assert coverage.images_ok == len(membench_reference_embeddings) > 0
    image_id, path = sorted(paths.items())[0]
    emb = membench_sscd.embed([Image.open(path).convert("RGB")])
    assert float(emb[0] @ membench_reference_embeddings[image_id]) > 0.99


def test_targets_and_quality(membench_targets, membench_clip, membench_aesthetic):
    assert membench_targets.top1_sscd is None  # mini declares no published targets
    # mini scores CLIP with its own shipped model; the LAION aesthetic head has no offline weights.
    assert membench_clip.metadata()["clip_model"] == "mini-clip" and membench_aesthetic is None


def test_reference_fixture(membench_reference):
    (label, results), = membench_reference.items()
    assert label == "reference (local gallery, mini-clip retrieval)"
    assert {r.role for r in results} == {"trigger", "general"}
    assert all(r.metrics["top1_sscd"] < 0.5 for r in results if r.role == "trigger")
"""


def test_plugin_on_mini_base_and_rna(pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    store = tmp_path_factory.mktemp("store")
    # Two prompts of two different memorized images (two bootstrap clusters), base + RNA n=6.
    common = [*plugin_args(), "-p", "no:cacheprovider", "--membench", str(RNA), "--membench-suite", "mini",
              "--membench-limit", "2", "--membench-subset", "stratified", "--membench-param", "n=6",
              "--membench-store", str(store)]
    out1, out2, out3 = (tmp_path_factory.mktemp(f"lb{i}") for i in range(3))
    pytester.makepyfile(test_user=USER_TEST)

    # 1. First run: generates, passes (no gate), writes the leaderboard. A user test file given
    #    beside it runs too and can request the plugin's session fixtures.
    r1 = pytester.runpytest_subprocess(*common, "--membench-out", str(out1), "test_user.py")
    assert r1.ret == 0, r1.stdout.str()
    r1.assert_outcomes(passed=3 * 4 + 3)  # (gallery reference, base, rna) x 2 scenarios x 2 prompts + 3
    r1.stdout.fnmatch_lines(["*membench: * images generated, 0 reused from the store*", "*membench leaderboard (mini)*"])
    md = (out1 / (STEM + ".md")).read_text()
    rows: dict[str, str] = {}
    for line in md.splitlines():  # first table: the paper's columns
        if line.startswith("| "):
            rows.setdefault(line.split("|")[1].strip(), line)
    assert "base" in rows and "rna n=6" in rows
    # mini's computed reference: its local image-search gallery, scored like a method, with intervals.
    ref = rows["reference (local gallery, mini-clip retrieval)"]
    assert ref.count("[") >= 4
    assert rows["rna n=6"].count("[") >= 3  # SSCD columns carry intervals
    assert "n/a [^" in rows["base"]  # aesthetic: no weights offline, reported as such
    assert rows["base"].split("|")[4].strip().count("[") == 1  # CLIP: mini-clip, with its interval
    board = json.loads((out1 / (STEM + ".json")).read_text())
    assert board["metadata"]["sscd_backend"] == "disc_mixup_onnx" and "coverage" in board["metadata"]
    assert "clip" not in board["unavailable"] and "mini-clip" in board["metadata"]["clip_model"]
    assert board["unavailable"]["aesthetic"].startswith("aesthetic score not available")
    base_top1 = next(r for r in board["rows"] if r["label"] == "base")["metrics"]["top1_sscd"]
    assert base_top1["n_prompts"] == 2 and base_top1["n_clusters"] == 2
    _recompute(board)
    _check_per_prompt_against_store(board, store)

    # 2. `membench run` (no pytest) on the same store: nothing generated, the same leaderboard from
    #    the same library. (A subprocess: pytester restores sys.modules after the test, so libraries
    #    first imported in-process here would be dropped and re-imported half-way by later tests.)
    done = subprocess.run([sys.executable, "-m", "membench_eval.cli", "run", str(RNA), "--suite", "mini", "--limit",
                           "2", "--subset", "stratified", "--param", "n=6", "--store", str(store), "--out", str(out2),
                           "--no-progress"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "membench: 0 images generated, " in done.stdout and " reused from the store" in done.stdout, done.stdout
    assert (out2 / (STEM + ".md")).read_text() == md

    # 3. pytest-xdist on a FRESH store generates the same PNG bytes under the same keys, and the
    #    same leaderboard bytes, as the serial run (fixed-shape batches; chunks kept on one worker);
    #    the leaderboard is written once, by the controller, and a failing gate fails the run with
    #    the numbers and their intervals.
    fresh = tmp_path_factory.mktemp("fresh-store")
    fresh_args = [a if a != str(store) else str(fresh) for a in common]
    r3 = pytester.runpytest_subprocess(*fresh_args, "--membench-out", str(out3), "-n", "2",
                                       "--membench-gate", "top1_sscd < -1", "--membench-gate", "top1_sscd <= 1.0")
    assert r3.ret == 1, r3.stdout.str()
    r3.stdout.fnmatch_lines(["*membench gate failed:*",
                             "*rna n=6: top1_sscd < -1: FAILED; top1_sscd = *[[]95% CI *",
                             "*rna n=6: top1_sscd <= 1.0: passed*",
                             "*membench: * images generated, 0 reused from the store*",
                             "*1 failed, 12 passed*"])
    assert (out3 / (STEM + ".md")).read_text() == md
    assert json.loads((out3 / (STEM + ".json")).read_text()) == board
    serial, parallel = RunStore(store, shard="reader"), RunStore(fresh, shard="reader")
    assert {r["key"] for r in parallel.records()} == {r["key"] for r in serial.records()}
    for row in serial.records():
        assert parallel.image_path(row["key"]).read_bytes() == serial.image_path(row["key"]).read_bytes()
