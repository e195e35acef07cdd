"""The declared-fields base of every plugin face (``Mitigation``, ``Detector``, ``ExtractionMethod``).

Why one base: a plugin's hyperparameters are its dataclass fields (typed, with defaults), and the
same three things follow from them for every kind: the loader validates and converts ``--param``
values by the field types, ``params()`` enters the store / cache keys, and ``label()`` names the
leaderboard or table row. Every subclass is made a dataclass automatically, so ``n: int = 1`` on a
plugin class declares a parameter.

Labels enter leaderboard rows and store keys, so each face keeps its own format (``label_style``):
``"spaced"`` gives ``rna n=6`` (mitigations, detectors), ``"call"`` gives ``side(clusters=16)``
(extraction methods); a face without parameters is labelled by its ``name`` alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

LabelStyle = Literal["spaced", "call"]


def bounded(default: Any, *, low: float | None = None, high: float | None = None) -> Any:
    """A hyperparameter with bounds, checked when the plugin is loaded (before anything runs):
    ``p: float = bounded(0.1, low=0.0, high=1.0)`` makes ``--param p=2`` an error naming the field."""
    return dataclasses.field(default=default, metadata={"bounds": (low, high)})


class Hyperparameters:
    """Base of the plugin faces: ``name``, the paper's settings, and the declared fields."""

    # Identifies the plugin in the store, caches and tables.
    name: ClassVar[str] = ""
    # The paper the plugin comes from.
    paper: ClassVar[str] = ""
    # The paper's hyperparameter sweep, e.g. {"n": [1, 2, 3, 4, 5, 6]} (``--param sweep``).
    sweep: ClassVar[dict[str, list[Any]]] = {}
    # The setting the paper calls strongest (``--param strongest``).
    strongest: ClassVar[dict[str, Any]] = {}
    # Capabilities the plugin acts on (``membench_eval.models.capabilities``: "cfg",
    # "cross_attention", ...); a model family without one gets an n/a cell, not a crash. Empty: any family.
    needs: ClassVar[frozenset[str]] = frozenset()
    # How ``label`` writes the parameters (see the module docstring); set once per face.
    label_style: ClassVar[LabelStyle] = "spaced"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__dataclass_fields__" not in cls.__dict__:
            dataclasses.dataclass(cls)  # fields declared on the subclass become its hyperparameters

    def params(self) -> dict[str, Any]:
        """The hyperparameters, as declared fields (ordered)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} if dataclasses.is_dataclass(self) else {}

    def label(self) -> str:
        """The row label: ``rna n=6`` (spaced) or ``side(clusters=16)`` (call); ``name`` alone
        without parameters."""
        params = self.params()
        if not params:
            return self.name
        if self.label_style == "call":
            return f"{self.name}({', '.join(f'{k}={v}' for k, v in params.items())})"
        return self.name + " " + " ".join(f"{k}={v}" for k, v in params.items())
