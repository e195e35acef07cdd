"""Leaderboard: per-prompt records -> table with intervals -> markdown and JSON (+ HTML, figures, exports)."""

from membench_eval.report.artefacts import ReportFiles, write_report
from membench_eval.report.leaderboard import (
    BASE_LABEL,
    MIN_CLUSTERS,
    NOT_COMPARED,
    Cell,
    Leaderboard,
    Row,
    build_leaderboard,
)
from membench_eval.report.output import leaderboard_stem, to_json, write_leaderboard
from membench_eval.report.records import Column, PromptResult
from membench_eval.report.render import fmt_number, to_markdown

__all__ = [
    "ALL_COLUMNS", "BASE_LABEL", "Cell", "Column", "EXTRA_COLUMNS", "Leaderboard", "MIN_CLUSTERS", "NOT_COMPARED",
    "PAPER_COLUMNS", "PromptResult", "ReportFiles", "Row", "build_leaderboard", "fmt_number", "leaderboard_stem",
    "to_json", "to_markdown", "write_leaderboard", "write_report",
]


def __getattr__(name: str):  # ALL_COLUMNS / EXTRA_COLUMNS / PAPER_COLUMNS: the metric registry's, read now
    if name in ("ALL_COLUMNS", "EXTRA_COLUMNS", "PAPER_COLUMNS"):
        from membench_eval.report import records

        return getattr(records, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
