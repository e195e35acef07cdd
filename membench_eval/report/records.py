"""Per-prompt results: the unit that flows from scoring to statistics (and between xdist workers).

A ``PromptResult`` is plain data (str/float/None/dict/list only) so it can travel through
pytest-xdist's ``workeroutput`` and into the leaderboard JSON unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Column:
    """A leaderboard column: which prompt set it averages over and which per-prompt metric."""

    key: str
    title: str
    role: str  # "trigger" or "general"
    metric: str  # key in PromptResult.metrics
    decimals: int = 3


# Exactly the paper's Table 3 columns, in its order.
PAPER_COLUMNS: tuple[Column, ...] = (
    Column("top1_sscd", "Top-1 SSCD", "trigger", "top1_sscd"),
    Column("top3_sscd", "Top-3 SSCD", "trigger", "top3_sscd"),
    Column("sscd_gt_05", "SSCD>0.5", "trigger", "sscd_gt_05"),
    Column("clip", "CLIP", "trigger", "clip"),
    Column("aesthetic", "Aesthetic", "trigger", "aesthetic", decimals=2),
    Column("coco_clip", "COCO CLIP", "general", "clip"),
    Column("coco_aesthetic", "COCO Aesthetic", "general", "aesthetic", decimals=2),
)
# Not in the paper's table but needed to judge a method: Top-1 SSCD against ANY memorized image of
# the suite (a method that swaps one memorized copy for another must show up), and the same on the
# general prompts (leakage of memorized images into unrelated prompts).
EXTRA_COLUMNS: tuple[Column, ...] = (
    Column("top1_any", "Top-1 SSCD (any memorized)", "trigger", "top1_any"),
    Column("coco_top1_any", "COCO Top-1 SSCD (any memorized)", "general", "top1_any"),
)
ALL_COLUMNS: tuple[Column, ...] = PAPER_COLUMNS + EXTRA_COLUMNS
COLUMNS_BY_KEY: dict[str, Column] = {c.key: c for c in ALL_COLUMNS}


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
        d = asdict(self)
        d["memorized_ids"] = list(self.memorized_ids)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PromptResult":
        return cls(
            label=str(d["label"]), method=str(d["method"]), role=str(d["role"]),
            prompt_id=str(d["prompt_id"]), n_images=int(d["n_images"]),
            metrics={k: (None if v is None else float(v)) for k, v in d["metrics"].items()},
            params=dict(d.get("params", {})), memorized_ids=tuple(d.get("memorized_ids", ())),
            per_image={str(k): list(v) for k, v in (d.get("per_image") or {}).items()},
        )
