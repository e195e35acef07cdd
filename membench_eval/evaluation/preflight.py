"""Fail fast: before any generation, check that the run can write what it will write.

Why: a read-only store with one image missing, or an unwritable ``--out`` folder, used to let the
whole evaluation run (an hour on a GPU) and then end in a raw PermissionError. These checks write
and remove a probe file (``os.access`` is not enough: it says yes to root on a read-only mount),
and raise ``StoreError`` (exit status 3) naming the folder.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from membench_eval.errors import StoreError


def check_writable(folder: str | os.PathLike, what: str) -> Path:
    """Create ``folder`` if needed and prove a file can be written there; returns the path."""
    path = Path(folder).expanduser()
    probe = path / f".membench-write-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as fh:
            fh.write(b"probe")
        probe.unlink()
    except OSError as exc:
        raise StoreError(f"{path}: the {what} is not writable ({exc.strerror or exc}); "
                         "nothing was generated") from None
    return path
