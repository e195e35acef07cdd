"""Text building blocks every leaderboard format shares: number formatting, footnotes, tables.

Kept apart from ``render`` so the section modules (bands, paper) and the exporters use them without
importing the renderer that lists those sections (no import circle).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from membench_eval.report.leaderboard import MIN_CLUSTERS

FEW_CLUSTERS_MARK = "†"


def md_cell(text: object) -> str:
    """``text`` safe in one Markdown table cell: HTML escaped (a label is text, not markup), ``|``
    escaped (else it splits the cell) and line breaks as ``<br>`` (else they end the row)."""
    import html
    import re

    escaped = html.escape(str(text), quote=False).replace("|", "\\|")
    return re.sub(r"\r\n|\r|\n", "<br>", escaped)


def md_table(rows: list[list[str]], headers: list[str]) -> str:
    """A GitHub Markdown table of ``rows`` (cells escaped with :func:`md_cell`) under our own
    ``headers`` (written by the harness, kept as they are)."""
    from tabulate import tabulate

    return tabulate([[md_cell(c) for c in row] for row in rows], headers=headers, tablefmt="github",
                    disable_numparse=True)


def fmt_number(x: float, decimals: int, signed: bool = False) -> str:
    """``x`` with ``decimals`` places; ``signed`` adds ``+`` to positive values (deltas).

    A value that rounds to zero prints as plain ``0.000`` (no ``-``, and no ``+`` even when
    ``signed``): ``-0.0004`` -> ``0.000``, never ``-0.000``.
    """
    text = f"{x:.{decimals}f}"
    if float(text) == 0.0:
        return f"{0.0:.{decimals}f}"
    return f"{x:+.{decimals}f}" if signed else text


@dataclass
class Notes:
    """Footnotes collected while rendering: reasons (numbered) and few-cluster interval sizes."""

    reasons: dict[str, int] = field(default_factory=dict)
    few: set[int] = field(default_factory=set)

    def ref(self, reason: str) -> str:
        return f"[^{self.reasons.setdefault(reason, len(self.reasons) + 1)}]"

    def lines(self) -> list[str]:
        out = []
        if self.few:
            ns = ", ".join(str(n) for n in sorted(self.few))
            out.append(f"{FEW_CLUSTERS_MARK} interval from N < {MIN_CLUSTERS} memorized-image clusters (N = {ns} "
                       "here; a general prompt is a cluster of its own): resampling so few clusters understates "
                       "the uncertainty.")
        out += [f"[^{n}]: {reason}" for reason, n in self.reasons.items()]
        return out



# The name the renderers have always used.
_Notes = Notes


@dataclass
class Table:
    """One section: ``heading`` (without ``#``), paragraphs before and after, and the table itself."""

    key: str  # stable id (HTML anchors, tests), e.g. "memorization-trigger"
    heading: str
    headers: list[str]
    rows: list[list[str]]
    intro: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    level: int = 2  # markdown heading level

    def markdown_lines(self) -> list[str]:
        out = [f"{'#' * self.level} {self.heading}", ""]
        for text in self.intro:
            out += [text, ""]
        if self.rows:
            out += [md_table(self.rows, self.headers), ""]
        for text in self.after:
            out += [text, ""]
        return out
