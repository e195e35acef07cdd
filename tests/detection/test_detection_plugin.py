"""``pytest --membench-detect``: the detection leaderboard from a pytest run, serial and under xdist,
with the same numbers; a bad detector file is a usage error before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

DETECTORS = Path(__file__).resolve().parents[2] / "detectors"


def test_detect_plugin_writes_the_leaderboard_serial_and_under_xdist(pytester: pytest.Pytester, tmp_path: Path):
    store = tmp_path / "store"
    # As a shell expands detectors/*.py: several files after one --membench-detect.
    common = ["-p", "no:cacheprovider", "--membench-detect", str(DETECTORS / "token_count.py"),
              str(DETECTORS / "wen_single.py"), "--membench-suite", "mini",
              "--membench-store", str(store)]
    r1 = pytester.runpytest_subprocess(*common, "--membench-out", str(tmp_path / "serial"))
    assert r1.ret == 0, r1.stdout.str()
    r1.stdout.fnmatch_lines(["*membench detection leaderboard (mini)*", "*wen_single seed=0 (reference)*", "*2 passed*"])
    serial = json.loads((tmp_path / "serial" / "mini.detect.json").read_text())
    assert (tmp_path / "serial" / "mini.roc.png").stat().st_size > 1000
    # Under xdist the items run on workers; the scores come back from the store (reused) and the
    # leaderboard's numbers are the serial run's.
    r2 = pytester.runpytest_subprocess(*common, "-n", "2", "--membench-out", str(tmp_path / "xdist"))
    assert r2.ret == 0, r2.stdout.str()
    xdist = json.loads((tmp_path / "xdist" / "mini.detect.json").read_text())

    def aucs(board):
        return {d["label"]: d["auc"] for d in board["detectors"]}

    assert aucs(serial) == aucs(xdist)
    assert aucs(serial)["wen_single seed=0"]["mean"] > 0.9  # mini: 0.952 measured


def test_a_bad_detector_file_is_a_usage_error(pytester: pytest.Pytester, tmp_path: Path):
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--membench-detect", str(bad))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*membench:*bad.py*"])
