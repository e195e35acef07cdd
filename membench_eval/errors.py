"""Errors shown to users: one line naming the file, row and field (or model, prompt, image)."""

from __future__ import annotations

from collections.abc import Iterable

# Exit status, the same under ``membench`` and ``pytest --membench`` (README, "Exit status"). pytest owns
# 0-5, so the method's own exception takes 6, which pytest never returns; a usage error under pytest
# keeps pytest's own code (PYTEST_USAGE) because pytest reports its own bad options with it too.
EXIT_OK = 0
EXIT_GATE_FAILED = 1  # the numbers are right; the method misses its target
EXIT_USAGE = 2  # a bad flag, method file, parameter, gate or data file
EXIT_ENVIRONMENT = 3  # the store, an output folder or a model file is missing, damaged or unwritable
PYTEST_USAGE = 4  # EXIT_USAGE under pytest (pytest.ExitCode.USAGE_ERROR)
EXIT_METHOD_RAISED = 6  # the method (or detector, extraction method) under test raised
EXIT_INTERNAL = 70  # a bug in membench-eval
EXIT_INTERRUPTED = 130  # Ctrl-C (under pytest: pytest's 2)


class MembenchError(Exception):
    """Base class: the CLI prints these as one line and exits with ``exit_code`` (2: usage or bad
    input; ``StoreError`` 3: a store or environment fault; 6 set on an error that wraps the method's
    own exception)."""

    exit_code = EXIT_USAGE


class DataError(MembenchError, ValueError):
    """Bad upstream data. The message names the file, and the row and field where known."""

    def __init__(self, path: object, message: str, *, row: object | None = None, field: str | None = None):
        where = str(path)
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {message}")
        self.path, self.row, self.field = path, row, field


class StoreError(MembenchError):
    """The run store or an output folder is damaged, unwritable or of an unknown format: an
    environment fault (exit status 3), not bad input."""

    exit_code = EXIT_ENVIRONMENT


class MissingWeightsError(MembenchError, FileNotFoundError):
    """A model file is absent; the message names the file and how to get it (an environment
    fault: exit status 3)."""

    exit_code = EXIT_ENVIRONMENT


class MitigationError(MembenchError):
    """A mitigation failed; the message names the method, the hook, the prompt and the image index.

    ``details`` holds the traceback of the user's code (the frames in the method's own files),
    shown under the one-line message by the CLI and the pytest plugin."""

    def __init__(self, message: str, *, details: str = ""):
        super().__init__(message)
        self.details = details


class DetectorError(MitigationError):
    """A detector failed, or returned scores that are not one finite float per prompt; the message
    names the detector and the prompt ids (``details``: the traceback of the user's frames)."""


class ExtractionError(MitigationError):
    """An extraction method failed, or was given bad input (a model that is not an unconditional
    diffusers pipeline, a bad setting); the message names the method, the model or the setting."""


class MetricUnavailable(MembenchError):
    """Raised by a metric's loader when this run cannot compute it (e.g. weights not cached on a
    suite that allows that); the message is the reason shown in the metric's n/a cells."""


def user_traceback(exc: BaseException, files: "Iterable[str]") -> str:
    """The traceback of ``exc`` cut to the frames in ``files`` (the user's method files), then the
    exception line: what a user needs to find the failing line of their own code."""
    import traceback
    from pathlib import Path

    wanted = {str(Path(f).resolve()) for f in files}
    te = traceback.TracebackException.from_exception(exc)
    frames = [f for f in te.stack if str(Path(f.filename).resolve()) in wanted]
    lines = ["Traceback (frames in the method's files; `membench --debug` or pytest --tb=long shows all):\n"]
    lines += traceback.StackSummary.from_list(frames).format()
    lines += list(te.format_exception_only())
    return "".join(lines).rstrip()
