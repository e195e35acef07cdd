"""Append-only JSONL log of one MCMC chain: the header, then one line per chain state.

Each step line carries everything needed to continue the chain exactly (the slots and the numpy
bit-generator state after the step), so a search killed at any moment resumes where it stopped and
produces the same chain an uninterrupted run would. A half-written last line (killed mid-write) is
dropped on open. Lines are flushed and fsync'ed, so what is logged survives a crash.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from membench_eval.errors import DataError

LOG_VERSION = 1


def read_log(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(header, steps) of a chain log; repairs a torn final line by truncating it away."""
    if not path.exists():
        return None, []
    raw = path.read_bytes()
    good_end = 0
    records: list[dict[str, Any]] = []
    pos = 0
    for lineno, line in enumerate(raw.split(b"\n"), 1):
        end = pos + len(line) + 1
        if line.strip():
            complete = end <= len(raw)  # a line is complete only if its newline was written
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                if complete and end < len(raw):
                    raise DataError(path, "corrupt chain log line (not JSON) before the end of the file", row=lineno) from None
                break
            if not complete:
                break
            records.append(rec)
            good_end = end
        elif end <= len(raw):
            good_end = end
        pos = end
    if good_end < len(raw):
        with path.open("r+b") as f:
            f.truncate(good_end)
    if not records:
        return None, []
    header, steps = records[0], records[1:]
    if header.get("type") != "header":
        raise DataError(path, "first line is not a chain header", row=1)
    if header.get("version") != LOG_VERSION:
        raise DataError(path, f"chain log version {header.get('version')!r}, expected {LOG_VERSION}", row=1, field="version")
    return header, steps


class ChainLog:
    """Writer for one chain's JSONL log (durable appends)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
