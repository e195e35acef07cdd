"""SIGTERM handled like Ctrl-C: what a CI runner or a batch scheduler sends on timeout.

Why: the default action killed the run at once, with no message and a claim file left behind that
another host waited 60 s to take over. ``Terminated`` is a KeyboardInterrupt, so every path that
already drains, stores and releases on Ctrl-C does the same on SIGTERM; the generation loop
(``generation.engine``) turns the first SIGTERM into "finish this batch, then stop", and the CLI
exits 143 (128 + SIGTERM) with a message.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

EXIT_TERMINATED = 128 + int(signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """The process got SIGTERM; everything finished so far is stored."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated("SIGTERM")


def raise_on_sigterm() -> bool:
    """From now on SIGTERM raises :class:`Terminated` in the main thread (only where SIGTERM still
    has its default action, so an embedding application's own handler is kept). True if installed."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, _raise_terminated):
        return False
    signal.signal(signal.SIGTERM, _raise_terminated)
    return True


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """:func:`raise_on_sigterm` for the duration of a block (the CLI's ``main``), then the default
    action again: a caller embedding ``main`` (a test) keeps its own process as it was."""
    installed = raise_on_sigterm()
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def is_ours(handler: Any) -> bool:
    """Whether ``handler`` is a SIGTERM action this module may take over (default or its own)."""
    return handler in (signal.SIG_DFL, _raise_terminated)


def was_terminated(exc: BaseException) -> bool:
    """Whether an interrupt came from SIGTERM (directly, or the engine's drained stop)."""
    return isinstance(exc, Terminated) or bool(getattr(exc, "terminated", False)) or isinstance(
        exc.__cause__, Terminated)
