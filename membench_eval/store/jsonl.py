"""Append-only JSON-lines files: one whole line per write, tolerant of a torn last line.

Each process appends to its own file, so a line can only be torn at the end of a file whose writer
was killed; readers take complete lines only (``complete_rows``), so such a line is never read. A
bad complete line is real corruption and is reported with the file and line number.
"""

from __future__ import annotations

import errno
import json
import os
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

    def __init__(self, path: Path, what: str = "row"):
        self.path = path
        self.what = what  # named in an OSError: the OS names neither the file nor the row
        self._fd: int | None = None

    def append(self, row: dict[str, Any]) -> tuple[int, int, bytes]:
        """Append one line; returns (its start offset, its end offset, its bytes): the store's
        index advances its record of this shard by them (``store.index_db.advance_own_shard``)."""
        from membench_eval.store.atomic import named_os_error

        data = dumps_line(row)
        try:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            written = os.write(self._fd, data)
        except OSError as exc:
            raise named_os_error(exc, self.path, f"appending a {self.what} of {len(data)} bytes") from None
        if written != len(data):  # a short write on a regular file means the disk is full
            raise OSError(errno.ENOSPC, f"short write, {written} of {len(data)} bytes (appending a {self.what}; "
                          "the disk is probably full)", str(self.path))
        end = os.lseek(self._fd, 0, os.SEEK_CUR)  # O_APPEND: the end of our line (one writer per file)
        return end - len(data), end, data

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def complete_rows(path: Path, chunk: bytes, first_line: int) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) of the complete lines in ``chunk`` (bytes up to a newline), numbered from
    ``first_line`` + 1. A last line without its newline is not in ``chunk``: its writer is still
    appending it, or was killed mid-line (a torn line). A bad complete line is corruption, named by
    file and line."""
    out = []
    for number, raw in enumerate(chunk.split(b"\n")[:-1], start=first_line + 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except ValueError:
            raise DataError(path, "corrupt JSON line (not a torn final line)", row=number) from None
        if not isinstance(row, dict):
            raise DataError(path, "expected a JSON object per line", row=number)
        out.append((number, row))
    return out


def read_new_rows(path: Path, offsets: dict[Path, tuple[int, int]]) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) of the complete lines appended to ``path`` since the last read, whose
    (byte offset, line number) ``offsets`` keeps per file. A last line without its newline is left
    for later: its writer is appending it, or was killed mid-line (a torn line, never completed:
    each writer has its own shard)."""
    start, first_line = offsets.get(path, (0, 0))
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read()
    except FileNotFoundError:
        return []
    chunk = data[: data.rfind(b"\n") + 1]
    offsets[path] = (start + len(chunk), first_line + chunk.count(b"\n"))
    return complete_rows(path, chunk, first_line)
