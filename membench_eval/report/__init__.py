"""Leaderboard: per-prompt records -> table with intervals -> markdown and JSON."""

from membench_eval.report.leaderboard import BASE_LABEL, Cell, Leaderboard, Row, build_leaderboard
from membench_eval.report.records import ALL_COLUMNS, EXTRA_COLUMNS, PAPER_COLUMNS, Column, PromptResult
from membench_eval.report.render import to_json, to_markdown, write_leaderboard

__all__ = [
    "ALL_COLUMNS", "BASE_LABEL", "Cell", "Column", "EXTRA_COLUMNS", "Leaderboard", "PAPER_COLUMNS",
    "PromptResult", "Row", "build_leaderboard", "to_json", "to_markdown", "write_leaderboard",
]
