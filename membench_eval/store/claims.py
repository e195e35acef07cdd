"""Batch claims: several processes on one run store split the work instead of each doing all of it.

A process about to generate a batch creates ``claims/<batch id>.claim`` with ``O_CREAT | O_EXCL``
(atomic on local and NFSv3+ file systems), holding its pid, host and shard. While it works, a
heartbeat thread touches the file every ``HEARTBEAT_S`` seconds. Another process that finds the
claim skips the batch and comes back to it later; when the claim is gone the batch's images are in
the store (reused), and when the claim is stale (owner dead on this host, or no heartbeat for
``STALE_S`` seconds on any host) it is taken over. A takeover renames the stale file away first,
so of two processes taking over at once exactly one wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

HEARTBEAT_S = 5.0
STALE_S = 60.0


def batch_id(keys: Iterable[str]) -> str:
    """The claim name of a batch: a hash of its (sorted) image keys."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:32]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Claims:
    """The claims one process holds on one store, with their heartbeat."""

    def __init__(self, root: Path, shard: str, *, stale_s: float = STALE_S, heartbeat_s: float = HEARTBEAT_S):
        self.folder = root / "claims"
        self.shard = shard
        self.host = socket.gethostname()
        self.stale_s, self.heartbeat_s = stale_s, heartbeat_s
        self._held: set[Path] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- claiming ---------------------------------------------------------------------------

    def try_claim(self, keys: Iterable[str]) -> Path | None:
        """Claim the batch of ``keys``; None when a live claim of another process holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{batch_id(keys)}.claim"
        for _ in range(3):
            if self._create(path):
                with self._lock:
                    self._held.add(path)
                self._start_heartbeat()
                return path
            if not self.is_stale(path):
                return None
            aside = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.stale")
            try:
                os.rename(path, aside)  # one taker wins; the others see FileNotFoundError
            except FileNotFoundError:
                continue
            aside.unlink(missing_ok=True)
        return None

    def _create(self, path: Path) -> bool:
        owner = {"pid": os.getpid(), "host": self.host, "shard": self.shard, "time": time.time()}
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(owner))
        return True

    def is_stale(self, path: Path) -> bool:
        """Owner dead on this host, or no heartbeat for ``stale_s`` seconds; a vanished claim is
        not stale (its owner finished)."""
        try:
            age = time.time() - path.stat().st_mtime
            owner = json.loads(path.read_text() or "{}")
        except FileNotFoundError:
            return False
        except ValueError:  # being written right now, or torn by a crash
            return age > self.stale_s
        if owner.get("host") == self.host and isinstance(owner.get("pid"), int) and not _pid_alive(owner["pid"]):
            return True
        return age > self.stale_s

    def held_by_other(self, keys: Iterable[str]) -> bool:
        """Whether a live claim of another process covers the batch of ``keys``."""
        path = self.folder / f"{batch_id(keys)}.claim"
        return path.exists() and path not in self._held and not self.is_stale(path)

    def release(self, path: Path | None) -> None:
        if path is None:
            return
        with self._lock:
            self._held.discard(path)
        path.unlink(missing_ok=True)

    def live_claims(self) -> list[Path]:
        """Claims of any process that are not stale (a store in use)."""
        if not self.folder.is_dir():
            return []
        return [p for p in sorted(self.folder.glob("*.claim")) if not self.is_stale(p)]

    # --- heartbeat --------------------------------------------------------------------------

    def _start_heartbeat(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._beat, name="membench-claims", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._lock:
                held = list(self._held)
            for path in held:
                try:
                    os.utime(path)
                except FileNotFoundError:
                    pass

    def close(self) -> None:
        with self._lock:
            held = list(self._held)
            self._held.clear()
        for path in held:
            path.unlink(missing_ok=True)
        self._stop.set()
