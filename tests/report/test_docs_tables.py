"""The docs' numbers tables come from leaderboard JSONs (docs/hooks/leaderboard_tables.py, a MkDocs hook),
so a quoted number cannot drift from the leaderboard: the rendered cells are the JSON's, rounded."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

from membench_eval.report import to_json
from tests.report.test_report_synthetic import synthetic_run

HOOK = Path(__file__).resolve().parents[2] / "docs" / "hooks" / "leaderboard_tables.py"


def _hook():
    spec = importlib.util.spec_from_file_location("leaderboard_tables", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_marker_becomes_the_json_table_and_a_missing_json_is_flagged(tmp_path: Path, caplog) -> None:
    import json

    hook = _hook()
    data = to_json(synthetic_run(tmp_path).board(n_resamples=50))
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "mini.json").write_text(json.dumps(data))
    page = SimpleNamespace(file=SimpleNamespace(src_path="methods.md"))
    md = hook.on_page_markdown("intro\n<!-- membench-table: results/mini.json -->\nafter\n", page,
                               {"docs_dir": str(tmp_path)}, None)
    row = next(r for r in data["rows"] if r["label"] == "wen l=2")["metrics"]
    top1, delta = row["top1_sscd"], row["top1_sscd"]["delta_to_base"]
    line = next(x for x in md.splitlines() if x.startswith("| wen l=2 |"))
    assert f"| {top1['mean']:.3f} [{top1['low']:.3f}, {top1['high']:.3f}] |" in line
    assert f"| {delta['mean']:+.3f} [{delta['low']:+.3f}, {delta['high']:+.3f}] |" in line
    assert md.startswith("intro\n| method |") and md.endswith("\nafter\n")
    assert len([x for x in md.splitlines() if x.startswith("| ")]) == 1 + len(data["rows"])
    out = hook.on_page_markdown("<!-- membench-table: results/gone.json -->", page, {"docs_dir": str(tmp_path)}, None)
    assert "not available" in out and "gone.json" in caplog.text  # a warning: `mkdocs build --strict` fails
