"""Per-prompt results: the unit that flows from scoring to statistics (and between xdist workers).

A ``PromptResult`` is plain data (str/float/None/dict/list only) so it can travel through
pytest-xdist's ``workeroutput`` and into the leaderboard JSON unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from membench_eval.metrics import registry
from membench_eval.metrics.registry import Column

__all__ = ["ALL_COLUMNS", "COLUMNS_BY_KEY", "Column", "EXTRA_COLUMNS", "PAPER_COLUMNS", "PromptResult"]


# The columns are the metric registry's (``metrics.registry``): PAPER_COLUMNS is its main table
# (MemBench's Table 3, in its order, plus any metric registered into it), EXTRA_COLUMNS its "also
# measured" table (Top-1 SSCD against any memorized image, on trigger and general prompts). Read
# at access time, so a metric registered later is a column everywhere.
_COLUMN_SETS: dict[str, Callable[[], Any]] = {
    "PAPER_COLUMNS": lambda: registry.columns("main"),
    "EXTRA_COLUMNS": lambda: registry.columns("extra"),
    "ALL_COLUMNS": registry.columns,
    "COLUMNS_BY_KEY": registry.columns_by_key,
}


def __getattr__(name: str) -> Any:
    if name in _COLUMN_SETS:
        return _COLUMN_SETS[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class PromptResult:
    """Scores of one method on one prompt (aggregated over the prompt's generated images)."""

    label: str  # leaderboard row, e.g. "rna n=6"
    method: str  # mitigation name, e.g. "rna"
    role: str  # "trigger" or "general"
    prompt_id: str
    n_images: int
    # Per-prompt metric values; None where the metric is unavailable in this run.
    metrics: dict[str, float | None]
    params: dict[str, Any] = field(default_factory=dict)
    memorized_ids: tuple[str, ...] = ()
    # Per generated image, in image-index order (plain lists; empty in results from older versions):
    # "best_sscd" / "best_ref": best SSCD over ALL available references and that reference's id (the
    # gamma of AMS/UMS); "own_sscd" / "own_ref" (trigger prompts): the same over the prompt's own
    # references (Top-1 = max own_sscd; the worst-copy gallery); "seed": each image's seed;
    # "unet_evals": UNet forward rows per image of its generation call (the method's measured cost).
    per_image: dict[str, list[Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # What ``asdict`` gave, field by field: its recursive copy of every per-image value was most
        # of writing a sweep's JSON (805,000 images).
        return {"label": self.label, "method": self.method, "role": self.role, "prompt_id": self.prompt_id,
                "n_images": self.n_images, "metrics": dict(self.metrics), "params": copy.deepcopy(self.params),
                "memorized_ids": list(self.memorized_ids),
                "per_image": {k: list(v) for k, v in self.per_image.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PromptResult":
        return cls(
            label=str(d["label"]), method=str(d["method"]), role=str(d["role"]),
            prompt_id=str(d["prompt_id"]), n_images=int(d["n_images"]),
            metrics={k: (None if v is None else float(v)) for k, v in d["metrics"].items()},
            params=dict(d.get("params", {})), memorized_ids=tuple(d.get("memorized_ids", ())),
            per_image={str(k): list(v) for k, v in (d.get("per_image") or {}).items()},
        )
