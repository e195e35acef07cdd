"""One atomic file write for every store area: a temporary file beside the target, then a rename.

Why: a killed run (Ctrl-C, kill -9, a full disk) must leave each file whole or absent, and two
processes writing the same file (xdist workers, Ray actors) must not share a temporary name.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path


def write_atomic(path: Path, data: bytes | bytearray | memoryview | str | Iterable[str], what: str = "file") -> None:
    """Write ``data`` (``str``: UTF-8; an iterable of ``str``: its pieces in turn, never joined in
    memory) to ``path`` via a uniquely named temporary file in the same folder (created if missing),
    renamed over ``path``; the temporary file never outlives a failure. An OSError (a full disk)
    names ``path`` and ``what`` was being written: the OS names neither."""
    path = Path(path)
    pieces = [data] if isinstance(data, (bytes, bytearray, memoryview, str)) else data
    size = 0
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            for piece in pieces:
                blob = piece.encode("utf-8") if isinstance(piece, str) else piece
                size += len(blob)  # the bytes being written when a write fails, as the error says
                fh.write(blob)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise named_os_error(exc, path, f"writing the {what} ({size} bytes); it was left as it was") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def named_os_error(exc: OSError, path: Path, doing: str) -> OSError:
    """``exc`` again (same class and errno) with ``path`` as its file name and what was being done."""
    reason = exc.strerror or str(exc)
    if exc.errno:
        return type(exc)(exc.errno, f"{reason} ({doing})", str(path))
    return OSError(f"{path}: {reason} ({doing})")
