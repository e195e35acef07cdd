"""Models an evaluation loads once: the pipeline, SSCD, the reference gallery.

Why a cache object of its own: a failure (missing weights) is remembered and raised again at once,
so thousands of pytest items do not each retry a download; and two evaluations (a test's fresh
store beside a module's loaded models, a benchmark's warm run) can share one by handing it over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from membench_eval.errors import MembenchError


class ModelCache:
    """Name -> a loaded model, or the MembenchError its loading raised."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Any, MembenchError | None]] = {}

    def get(self, name: str, load: Callable[[], Any]) -> Any:
        """The model ``name``, loaded by ``load()`` on first use; a remembered failure is raised."""
        if name not in self._entries:
            try:
                self._entries[name] = (load(), None)
            except MembenchError as exc:
                self._entries[name] = (None, exc)
        value, error = self._entries[name]
        if error is not None:
            raise error
        return value

    def put(self, name: str, value: Any) -> None:
        """Use ``value`` as the model ``name`` (a model loaded elsewhere, or a stand-in in tests)."""
        self._entries[name] = (value, None)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
