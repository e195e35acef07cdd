"""Append-only JSON-lines files: one whole line per write, tolerant of a torn last line.

Each process appends to its own file, so a line can only be torn at the end of a file whose writer
was killed; such a line is skipped. A bad line anywhere else is real corruption and is reported
with the file and line number.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from membench_eval.errors import DataError


def json_default(value: Any) -> Any:
    """JSON for numpy/torch values and sets (the store's one serialiser)."""
    if hasattr(value, "tolist"):  # numpy / torch scalars and arrays
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps_line(row: dict[str, Any]) -> bytes:
    return (json.dumps(row, ensure_ascii=False, allow_nan=False, default=json_default, separators=(",", ":")) + "\n").encode()


class AppendOnlyJsonl:
    """An O_APPEND file written one complete line per ``os.write`` call."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def append(self, row: dict[str, Any]) -> None:
        data = dumps_line(row)
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        written = os.write(self._fd, data)
        if written != len(data):  # a short write on a regular file means the disk is full
            raise OSError(f"{self.path}: short write ({written} of {len(data)} bytes)")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of ``path``; a torn final line (no newline, not valid JSON) is skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    lines = data.split(b"\n")
    last = len(lines) - 1
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except ValueError:
            if number - 1 == last:  # no trailing newline: a writer killed mid-line
                continue
            raise DataError(path, "corrupt JSON line (not a torn final line)", row=number) from None
        if not isinstance(row, dict):
            raise DataError(path, "expected a JSON object per line", row=number)
        yield row
