"""A store-wide lock around "is this score stored yet? if not, append it".

Why: two runs on one store each scored the images they reused and both appended the rows (10-22
duplicate score rows per soak). Appends are per-writer shards, so only the check-then-append needs
to be atomic across processes: an advisory ``fcntl.lockf`` on ``scores/.write.lock`` (held for
microseconds; POSIX locks also work on NFSv4, the shared file systems the README names).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def score_write_lock(root: Path) -> Iterator[None]:
    """Hold the store's score-write lock (blocking) for the duration of the block."""
    import fcntl

    path = Path(root) / "scores" / ".write.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
