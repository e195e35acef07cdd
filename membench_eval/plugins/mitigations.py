"""Loading a mitigation method from a Python file, with typed, validated, sweepable parameters.

``load_mitigation("mitigations/rna.py", params={"n": "6"})`` imports the file as its own module
(never through ``sys.path``), finds the ``Mitigation`` subclass DEFINED in it (classes merely
imported into it do not count), converts each parameter from text using the dataclass field's
type, and returns the configured instance. ``parse_params(["n=1,2,3", "c=1.3"])`` expands a
command-line sweep into one parameter dict per combination. The work is ``plugins.loader``'s,
shared with the detector loader; this module binds it to ``Mitigation``.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

from membench_eval.plugins import loader
from membench_eval.mitigation import Mitigation
from membench_eval.plugins.loader import MITIGATION, SPECIAL_PARAMS, convert_value, instantiate, parse_params

__all__ = [
    "SPECIAL_PARAMS", "convert_value", "find_class", "import_file", "instantiate", "load_mitigation",
    "load_mitigations", "mitigation_classes", "parse_params",
]


def import_file(path: str | Path) -> types.ModuleType:
    """Import ``path`` as a fresh module with a unique name (re-imported on every call)."""
    return loader.import_file(path, MITIGATION)


def mitigation_classes(module: types.ModuleType) -> list[type[Mitigation]]:
    """Mitigation subclasses defined in ``module`` itself, in definition order."""
    return loader.plugin_classes(module, MITIGATION)


def find_class(path: str | Path, name: str | None = None) -> type[Mitigation]:
    """The one Mitigation class of ``path`` (or the one whose ``name`` or class name is ``name``)."""
    return loader.find_class(path, MITIGATION, name)


def load_mitigation(path: str | Path, name: str | None = None, params: dict[str, Any] | None = None) -> Mitigation:
    """The configured method defined in ``path`` (see module docstring)."""
    return instantiate(find_class(path, name), params, source=str(path))


def load_mitigations(path: str | Path | None, name: str | None = None, param_items: list[str] | None = None) -> list[Mitigation]:
    """One configured method per combination of ``param_items`` (CLI ``--param`` values).

    ``path`` None is the no-op base method. ``--param strongest`` uses the class's ``strongest``
    setting and ``--param sweep`` its declared paper sweep (cartesian product of ``sweep``).
    """
    cls: type[Mitigation] = Mitigation if path is None else find_class(path, name)
    return loader.configs(cls, param_items, source=str(path) if path is not None else "base")
