"""Errors shown to users: one line naming the file, row and field (or model, prompt, image)."""

from __future__ import annotations


class MembenchError(Exception):
    """Base class: the CLI prints these as one line and exits with status 2."""


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


class MissingWeightsError(MembenchError, FileNotFoundError):
    """A model file is absent; the message names the file and how to get it."""


class MitigationError(MembenchError):
    """A mitigation failed; the message names the method, the prompt and the image index."""
