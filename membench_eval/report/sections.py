"""Leaderboard sections beyond the paper's table, as plain tables that every format renders.

A :class:`Table` is a heading, text around it and rows of cell text (footnote references in the
markdown form ``[^n]``, numbered by the shared ``render._Notes``); ``render.to_markdown`` prints
them with tabulate, ``report.html`` as HTML tables. :func:`extra_tables` lists them in page order:
the AMS/UMS bands per prompt set (``report.bands``), then the paper beside ours where the suite has
published numbers (``report.paper``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from membench_eval.report.text import Table

if TYPE_CHECKING:
    from membench_eval.report.leaderboard import Leaderboard
    from membench_eval.report.text import _Notes

__all__ = ["Table", "extra_tables"]


def extra_tables(board: "Leaderboard", notes: "_Notes") -> list[Table]:
    """The sections after the paper's tables, in page order (``notes`` collects their footnotes)."""
    from membench_eval.report.attack_section import attack_tables
    from membench_eval.report.bands import memorization_tables
    from membench_eval.report.memorization_types import type_tables
    from membench_eval.report.paper import paper_tables

    return (memorization_tables(board, notes) + type_tables(board, notes) + paper_tables(board, notes)
            + attack_tables(board, notes))
