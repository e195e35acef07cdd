"""Markdown cells are escaped (issue 33, case 6): a label with ``|``, a line break or HTML keeps
every row at its header's cell count and shows as text (HTML, SVG, TeX and CSV were already safe)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from membench_eval.report import to_markdown
from membench_eval.report.leaderboard import build_leaderboard
from membench_eval.report.text import md_cell
from tests.report.test_report_synthetic import GENERAL, KINDS, TRIGGER, synthetic_run

NASTY = "wen | l=2\n<b>bold</b> & co"


def _cells(line: str) -> int:
    return len(re.split(r"(?<!\\)\|", line.strip())) - 2  # outer pipes


def test_md_cell_escapes_pipes_line_breaks_and_html():
    assert md_cell("a|b\r\nc<i>") == "a\\|b<br>c&lt;i&gt;"


def test_a_label_with_pipe_newline_and_html_keeps_the_tables_whole(tmp_path: Path):
    run = synthetic_run(tmp_path)
    results = [dataclasses.replace(r, label=NASTY) if r.label == "wen l=2" else r for r in run.results]
    kinds = {(NASTY if k == "wen l=2" else k): v for k, v in KINDS.items()}
    board = build_leaderboard(results, suite="mini", kinds=kinds, metadata=run.metadata, n_resamples=50,
                              expected={"trigger": sorted(TRIGGER), "general": list(GENERAL)})
    text = to_markdown(board)
    assert "wen \\| l=2<br>&lt;b&gt;bold&lt;/b&gt; &amp; co" in text and "<b>" not in text and "\nco" not in text
    lines = text.splitlines()
    checked = 0
    for i, line in enumerate(lines):
        if line.startswith("|-") or line.startswith("|:"):  # a separator: header above, rows below
            width = _cells(lines[i - 1])
            for row in lines[i + 1:]:
                if not row.startswith("|"):
                    break
                assert _cells(row) == width, row
                checked += 1
    assert checked > 5
