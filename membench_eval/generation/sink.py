"""Work that follows a batch off the denoising thread: PNG encoding, store writes, scoring.

Why: on a GPU the UNet should never wait for zlib, sha256 or the scorers. The engine hands each
finished batch to a ``BatchSink``: one worker thread behind a bounded queue (``depth`` batches; a
full queue makes the generating thread wait, so memory stays bounded), which stores the batch,
releases its claim and calls the run's ``on_stored`` callback (the evaluation scores the images
there, from the arrays already in memory, on its own CUDA stream on GPUs).

Nothing is lost: ``close`` (always called, also on Ctrl-C or a failing method) drains the queue,
so every batch handed over is stored. The worker's first error is raised in the generating thread
at the next ``submit`` or at ``close``; after an error the worker drops later work (its claims are
still released) so a broken disk does not keep the GPU busy.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

# Batches that may wait for the worker: 2 keeps the GPU fed while one batch is being written.
DEFAULT_DEPTH = 2


class BatchSink:
    """A bounded queue of jobs run in order by one daemon thread (``threaded=False``: inline)."""

    def __init__(self, *, depth: int = DEFAULT_DEPTH, threaded: bool = True, name: str = "membench-sink"):
        self.threaded = threaded
        self._error: BaseException | None = None
        self._queue: queue.Queue[tuple[Callable[[], Any], Callable[[], Any] | None] | None] = queue.Queue(maxsize=depth)
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._work, name=name, daemon=True)
            self._thread.start()

    def submit(self, job: Callable[[], Any], *, always: Callable[[], Any] | None = None) -> None:
        """Run ``job`` in the worker (blocks while the queue is full). ``always`` runs after it even
        when the job fails or is dropped (a claim's release)."""
        self.raise_error()
        if not self.threaded:
            self._run(job, always)
            self.raise_error()
            return
        self._queue.put((job, always))

    def close(self) -> None:
        """Wait for every submitted job, stop the worker, then raise its first error (if any)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self.raise_error()

    def raise_error(self) -> None:
        """Raise the worker's first error (again at every later call: the sink stays failed)."""
        if self._error is not None:
            raise self._error

    def _run(self, job: Callable[[], Any], always: Callable[[], Any] | None) -> None:
        try:
            if self._error is None:
                job()
        except BaseException as exc:  # handed to the generating thread
            if self._error is None:
                self._error = exc
        finally:
            if always is not None:
                try:
                    always()
                except BaseException as exc:
                    if self._error is None:
                        self._error = exc

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._run(*item)

    def __enter__(self) -> "BatchSink":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # already failing: drain (nothing handed over is lost), keep the original error
            self.close()
        except BaseException:
            pass
