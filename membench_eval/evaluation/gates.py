"""CI gates: thresholds on leaderboard numbers that make a run pass or fail.

A gate is one line ``<column> <op> <rhs>``, e.g. ``top1_sscd <= 0.3`` or ``clip >= base - 0.01``:

- ``<column>``: a leaderboard column key, any registered metric's (``metrics.registry``; today
  top1_sscd, top3_sscd, sscd_gt_05, clip, coco_clip, ..., top1_any, coco_top1_any);
- ``<op>``: ``<=``, ``<``, ``>=``, ``>``;
- ``<rhs>``: a number, ``base``, or ``base + x`` / ``base - x`` (base's value in the same column).

Gates compare point estimates (the means shown in the table); the failure message gives the
numbers with their 95% intervals and, for base-relative gates, the paired difference, so a reader
can tell a real regression from noise. A gate on a metric the run could not compute fails: a gate
that cannot be checked must not pass silently; so does a gate on an incomplete row (results
missing for some of the plan's prompts: "incomplete: 12/18 trigger prompts"), or a base-relative
gate when base is incomplete. Gates come from ``--membench-gate`` / ``--gate`` or
``[tool.membench] gate = [...]`` in pyproject.toml.
"""

from __future__ import annotations

import operator
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from membench_eval.errors import MembenchError
from membench_eval.report.leaderboard import BASE_LABEL, Cell, Leaderboard, Row
from membench_eval.metrics.registry import columns_by_key
from membench_eval.report.text import fmt_number

_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}
_GATE_RE = re.compile(
    r"^\s*(?P<col>[a-z0-9_]+)\s*(?P<op><=|>=|<|>)\s*"
    r"(?:(?P<base>base)\s*(?:(?P<sign>[+-])\s*(?P<offset>\d+(?:\.\d*)?|\.\d+))?|(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)))\s*$"
)


class GateSpecError(MembenchError, ValueError):
    """A gate line that does not parse; the message shows the line and the expected form."""


@dataclass(frozen=True)
class Gate:
    column: str
    op: str
    threshold: float  # the number, or the offset added to base's value when relative
    relative_to_base: bool
    text: str

    def describe_rhs(self) -> str:
        if not self.relative_to_base:
            return f"{self.threshold:g}"
        if self.threshold == 0:
            return "base"
        return f"base {'+' if self.threshold > 0 else '-'} {abs(self.threshold):g}"


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    label: str
    passed: bool
    message: str


def parse_gate(text: str) -> Gate:
    """Parse one gate line, e.g. ``"clip >= base - 0.01"``."""
    m = _GATE_RE.match(text)
    if not m:
        raise GateSpecError(f"gate {text!r}: expected '<column> <op> <number|base|base +/- number>', "
                            f"e.g. 'top1_sscd <= 0.3' or 'clip >= base - 0.01'")
    col = m["col"]
    known = columns_by_key()
    if col not in known:
        raise GateSpecError(f"gate {text!r}: unknown column {col!r}; known: {', '.join(known)}")
    if m["base"]:
        offset = float(m["offset"] or 0.0) * (-1.0 if m["sign"] == "-" else 1.0)
        return Gate(col, m["op"], offset, True, text.strip())
    return Gate(col, m["op"], float(m["num"]), False, text.strip())


def parse_gates(lines: Sequence[str]) -> list[Gate]:
    """Parse several gates; a line may also hold several separated by ';' or ','."""
    gates: list[Gate] = []
    for line in lines:
        for part in re.split(r"[;,]", line):
            if part.strip():
                gates.append(parse_gate(part))
    return gates


def gates_from_pyproject(path: str | Path) -> list[str]:
    """``[tool.membench] gate`` from a pyproject.toml (a list of lines, or one string); [] if absent."""
    p = Path(path)
    if not p.is_file():
        return []
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise GateSpecError(f"{p}: not valid TOML: {exc}") from exc
    value = data.get("tool", {}).get("membench", {}).get("gate", [])
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise GateSpecError(f"{p}, field 'tool.membench.gate': expected a list of strings like 'top1_sscd <= 0.3'")
    return list(value)


def _fmt_cell(cell: Cell) -> str:
    e = cell.estimate
    return (f"{fmt_number(e.mean, 4)} [95% CI {fmt_number(e.low, 4)}, {fmt_number(e.high, 4)}]"
            if e is not None else "n/a")


def check_gate(gate: Gate, row: Row, board: Leaderboard) -> GateResult:
    """Evaluate one gate on one leaderboard row."""
    cell = row.cells.get(gate.column)
    head = f"{row.label}: {gate.text}"
    if not row.complete:
        return GateResult(gate, row.label, False, f"{head}: FAILED, incomplete: {row.incomplete_reason()}")
    if cell is None or cell.estimate is None:
        reason = cell.reason if cell is not None else "column not computed"
        return GateResult(gate, row.label, False, f"{head}: FAILED, {gate.column} is not available ({reason})")
    value = cell.estimate.mean
    detail = f"{gate.column} = {_fmt_cell(cell)}"
    if gate.relative_to_base:
        try:
            base_cell = board.row(BASE_LABEL).cells.get(gate.column)
        except KeyError:
            base_cell = None
        else:
            base_row = board.row(BASE_LABEL)
            if not base_row.complete:
                return GateResult(gate, row.label, False,
                                  f"{head}: FAILED, base is incomplete: {base_row.incomplete_reason()}")
        if base_cell is None or base_cell.estimate is None:
            why = base_cell.reason if base_cell is not None else "no base row"
            return GateResult(gate, row.label, False, f"{head}: FAILED, base's {gate.column} is not available ({why})")
        rhs = base_cell.estimate.mean + gate.threshold
        detail += f"; threshold {gate.describe_rhs()} = {fmt_number(rhs, 4)} (base {_fmt_cell(base_cell)})"
        if cell.delta is not None:
            d = cell.delta
            detail += (f"; paired difference to base {fmt_number(d.mean, 4, True)} "
                       f"[95% CI {fmt_number(d.low, 4, True)}, {fmt_number(d.high, 4, True)}]")
    else:
        rhs = gate.threshold
    passed = bool(_OPS[gate.op](value, rhs))
    verdict = "passed" if passed else "FAILED"
    return GateResult(gate, row.label, passed, f"{head}: {verdict}; {detail}")


def check_gates(gates: Sequence[Gate], board: Leaderboard, labels: Sequence[str]) -> dict[str, list[GateResult]]:
    """Every gate on every row in ``labels`` (the user's methods); results grouped by row label."""
    return {label: [check_gate(g, board.row(label), board) for g in gates] for label in labels}
