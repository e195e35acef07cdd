"""Scorer weights are checked before any generation (issue 33, case 10): an offline run on a user's
suite failed with exit 3 only after generating every image, and never named the suite option that
reports the quality columns as n/a."""

from __future__ import annotations

from pathlib import Path

import pytest

from membench_eval.errors import MissingWeightsError
from membench_eval.evaluation import EvalOptions, Evaluation
from tests.plugin.test_plugin_failures import tiny_suite


def test_missing_quality_weights_fail_preflight_naming_the_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as on an offline cluster node: nothing can be fetched
    suite = tiny_suite(tmp_path)
    strict = suite.read_text().replace("allow_missing_quality_weights = true\n", "")
    suite.write_text(strict)  # the default CLIP (ViT-g-14) and aesthetic weights: not in this cache
    ev = Evaluation(EvalOptions(suite=str(suite), store_dir=str(tmp_path / "store"), out_dir=str(tmp_path / "out")))
    with pytest.raises(MissingWeightsError, match="allow_missing_quality_weights") as info:
        ev.preflight()
    assert "nothing was generated" in str(info.value) and info.value.exit_code == 3
    assert not list((tmp_path / "store").rglob("*.png")) and "pipeline" not in ev.models
    suite.write_text(strict.replace("[scoring]\n", "[scoring]\nallow_missing_quality_weights = true\n"))
    Evaluation(EvalOptions(suite=str(suite), store_dir=str(tmp_path / "store"), out_dir=str(tmp_path / "out"))).preflight()
