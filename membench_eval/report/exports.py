"""The main table (the paper's columns) as LaTeX (booktabs) and CSV, beside the markdown.

- LaTeX: a ``tabular`` to ``\\input`` into a ``table`` environment (needs ``\\usepackage{booktabs}``);
  cells as in the markdown (mean [95% CI]), footnote marks as superscripts, the reasons and the
  few-cluster note as rows under the rule.
- CSV: one row per leaderboard row, full-precision numbers for tools: for each column ``<key>``
  (mean, or the published value on the reference row), ``<key>_low`` / ``_high``, the paired delta
  to base with its interval, and ``<key>_note`` (why a cell is n/a or has no delta).
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from membench_eval.metrics.registry import columns as registered_columns

if TYPE_CHECKING:
    from membench_eval.report.leaderboard import Leaderboard

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "<": r"\textless{}", ">": r"\textgreater{}"}
_FOOTNOTE = re.compile(r"\[\^(\d+)\]")


def main_columns(board: "Leaderboard") -> tuple:
    """The registry's main-table columns (``metrics.registry``) the board has."""
    return tuple(c for c in registered_columns("main") if board.rows and c.key in board.rows[0].cells)


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _latex_cell(text: str) -> str:
    parts = _FOOTNOTE.split(text)  # text, number, text, number, ...
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(rf"\textsuperscript{{{part}}}")
        else:
            out.append(latex_escape(part).replace("†", r"\textsuperscript{\dag}").replace("−", "-"))
    return "".join(out).strip()


def to_latex(board: "Leaderboard") -> str:
    from membench_eval.report.render import _Notes, table_rows

    notes = _Notes()
    cols = main_columns(board)
    rows = table_rows(board, cols, notes, delta=False)
    conf = int(round(100 * board.bootstrap.get("confidence", 0.95)))
    n = len(cols) + 1
    lines = [f"% MemBench leaderboard, suite {board.suite} (membench-eval): mean over prompts [{conf}% CI].",
             "% Needs \\usepackage{booktabs}; \\input this inside a table environment.",
             "\\begin{tabular}{l" + "c" * len(cols) + "}", "\\toprule",
             " & ".join(["Method"] + [latex_escape(c.title) for c in cols]) + " \\\\", "\\midrule"]
    lines += [" & ".join(_latex_cell(cell) for cell in row) + " \\\\" for row in rows]
    lines.append("\\bottomrule")
    for note in notes.lines():
        m = re.match(r"\[\^(\d+)\]: (.*)", note)
        text = (rf"\textsuperscript{{{m.group(1)}}} {latex_escape(m.group(2))}" if m else _latex_cell(note))
        lines.append(f"\\multicolumn{{{n}}}{{l}}{{\\footnotesize {text}}} \\\\")
    lines.append("\\end{tabular}")
    return "\n".join(lines) + "\n"


def to_csv(board: "Leaderboard") -> str:
    cols = main_columns(board)
    header = ["method", "kind", "method_name", "params", "complete", "n_trigger_prompts", "n_general_prompts"]
    for c in cols:
        header += [c.key, f"{c.key}_low", f"{c.key}_high", f"{c.key}_delta", f"{c.key}_delta_low",
                   f"{c.key}_delta_high", f"{c.key}_note"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in board.rows:
        line: list[object] = [row.label, row.kind, row.method, json.dumps(row.params, sort_keys=True),
                              str(row.complete).lower(), row.n_prompts.get("trigger", ""),
                              row.n_prompts.get("general", "")]
        for c in cols:
            cell = row.cells[c.key]
            est, d = cell.estimate, cell.delta
            note = cell.reason or cell.delta_reason or ("published value" if cell.reference_value is not None else "")
            line += [_num(cell.value), _num(est.low if est else None), _num(est.high if est else None),
                     _num(d.mean if d else None), _num(d.low if d else None), _num(d.high if d else None), note]
        w.writerow(line)
    return buf.getvalue()


def _num(x: float | None) -> str:
    return "" if x is None else repr(float(x))


def write_exports(board: "Leaderboard", md_path: Path) -> tuple[Path, Path]:
    """``<stem>.tex`` and ``<stem>.csv`` beside ``md_path`` (``<stem>.md``), written atomically."""
    from membench_eval.store.atomic import write_atomic

    tex, csv_path = md_path.with_suffix(".tex"), md_path.with_suffix(".csv")
    write_atomic(tex, to_latex(board))
    write_atomic(csv_path, to_csv(board))
    return tex, csv_path
