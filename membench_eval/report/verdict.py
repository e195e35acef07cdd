"""The page's first lines: one verdict per method, and a banner when the run is not the whole suite.

A reader decides from the first screen. The tables below hold every number; the verdict picks the
three paired differences to base that answer "does it remove copies, does it only move them to
another memorized image, what does it cost in prompt fidelity", each with its interval, and says
in words what the interval allows (a change only where the interval excludes zero).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from membench_eval.report.text import fmt_number, md_cell

if TYPE_CHECKING:
    from membench_eval.report.leaderboard import Cell, Leaderboard, Row

# (column key, name in the verdict, what a significant decrease / increase means)
VERDICT_COLUMNS = (
    ("top1_sscd", "copies", "Top-1", "removes copies", "adds copies", "copies: no clear change"),
    ("top1_any", "any-memorized", "Top-1 any", "lower", "higher", "no change"),
    ("clip", "prompt fidelity", "CLIP", "lower", "higher", "no change"),
)
NOT_SHOWN = ("reference", "computed_reference", "base")


def _delta_text(cell: "Cell | None", decimals: int = 3) -> tuple[str, int | None]:
    """(``-0.131 [-0.170, -0.090]``, sign of a significant change or 0 or None when not compared)."""
    if cell is None or cell.delta is None:
        return ("not compared" + (f" ({cell.delta_reason})" if cell is not None and cell.delta_reason else ""), None)
    d = cell.delta
    text = (f"{fmt_number(d.mean, decimals, True)} [{fmt_number(d.low, decimals, True)}, "
            f"{fmt_number(d.high, decimals, True)}]")
    return text, (-1 if d.high < 0 else 1 if d.low > 0 else 0)


def verdict_line(row: "Row") -> str:
    """E.g. ``removes copies: Top-1 -0.131 [...]; any-memorized: no change -0.011 [...] (moves the
    copy); prompt fidelity: CLIP -0.157 [...]``."""
    parts, signs = [], {}
    for key, name, metric, down, up, flat in VERDICT_COLUMNS:
        cell = row.cells.get(key)
        if cell is None or (cell.estimate is None and cell.delta is None):
            continue
        text, sign = _delta_text(cell)
        signs[key] = sign
        if key == "top1_sscd":
            word = {-1: down, 1: up, 0: flat, None: "copies"}[sign]
            parts.append(f"{word}: {metric} {text}")
        else:
            word = {-1: down, 1: up, 0: flat, None: ""}[sign]
            parts.append(f"{name}: {(word + ' ') if word else ''}{metric} {text}")
    if signs.get("top1_sscd") == -1 and signs.get("top1_any") == 0:
        i = next(i for i, p in enumerate(parts) if p.startswith("any-memorized"))
        parts[i] += " (moves the copy)"
    return "; ".join(parts) or "no paired difference to base measured"


def verdicts(board: "Leaderboard") -> list[tuple[str, str]]:
    """(row label as displayed, verdict) for every method row (not base, not references)."""
    return [(r.display_label, verdict_line(r)) for r in board.rows if r.kind not in NOT_SHOWN]


def run_status(board: "Leaderboard", failed: bool = False) -> list[str]:
    """Why this page is not a full, clean run of the suite (empty when it is): failed, limited,
    subset, partial (rows missing prompts)."""
    meta = board.metadata
    out = []
    if failed:
        out.append("FAILED: the run had failing items; numbers cover what finished")
    if meta.get("limit") is not None:
        out.append(f"LIMITED: --limit {meta['limit']} prompts per set, not the whole suite")
    if meta.get("subset"):
        out.append(f"SUBSET: prompt subset {meta['subset']!r}, not the whole suite")
    partial = [r.display_label for r in board.rows if r.kind not in ("reference",) and not r.complete]
    if partial:
        out.append(f"PARTIAL: {len(partial)} row(s) miss prompts: {', '.join(partial)}")
    return out


def title_tag(status: list[str]) -> str:
    """`` [LIMITED, PARTIAL]`` for the page title, or ``""``."""
    return f" [{', '.join(s.split(':', 1)[0] for s in status)}]" if status else ""


def markdown_lines(board: "Leaderboard", failed: bool = False) -> list[str]:
    """The banner (a quote block) and the verdict list, for the top of the markdown."""
    lines = [f"> **{md_cell(s)}**" for s in run_status(board, failed)]
    if lines:
        lines.append("")
    v = verdicts(board)
    if v:
        lines += ["**Verdict** (paired difference to base, 95% CI):", ""]
        lines += [f"- **{md_cell(label)}**: {md_cell(text)}" for label, text in v]
        lines.append("")
    return lines
