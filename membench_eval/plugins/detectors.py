"""Loading a memorization detector from a Python file, with typed, validated, sweepable parameters.

The same loader as for mitigations (``plugins.loader``), bound to ``Detector``:
``load_detectors("detectors/wen.py", ["images=1,4"])`` imports the file as its own module, finds
the one ``Detector`` subclass defined in it and returns one configured detector per parameter
combination; ``--param strongest`` / ``--param sweep`` use the class's declared settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from membench_eval.plugins import loader
from membench_eval.detector import Detector
from membench_eval.plugins.loader import DETECTOR, instantiate


def find_detector_class(path: str | Path, name: str | None = None) -> type[Detector]:
    """The one Detector class of ``path`` (or the one whose ``name`` or class name is ``name``)."""
    return loader.find_class(path, DETECTOR, name)


def load_detector(path: str | Path, name: str | None = None, params: dict[str, Any] | None = None) -> Detector:
    """The detector defined in ``path``, configured with ``params`` (text or Python values)."""
    return instantiate(find_detector_class(path, name), params, source=str(path))


def load_detectors(path: str | Path, param_items: list[str] | None = None, name: str | None = None) -> list[Detector]:
    """One configured detector per combination of ``param_items`` (CLI ``--param`` values)."""
    return loader.load_configs(path, DETECTOR, name, param_items)


def load_detector_files(paths: Sequence[str | Path], param_items: list[str] | None = None) -> list[Detector]:
    """Every configuration of every file. Each ``--param`` applies to every file (as for
    ``membench run`` with several methods); two configurations with one label are an error."""
    out: list[Detector] = []
    seen: dict[str, str] = {}
    for path in paths:
        for det in load_detectors(path, param_items):
            label = det.label()
            if label in seen:
                raise DETECTOR.error(f"{path}: detector {label!r} is also defined by {seen[label]}; "
                                     "give each detector its own name")
            seen[label] = str(path)
            out.append(det)
    return out
