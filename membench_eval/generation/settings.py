"""Scenario settings of a generation run, in one place (MemBench's SD1.4 protocol by default).

Suites may redefine some of them (the mini suite runs at 64x64 with fewer steps): use
``GenerationSettings.for_suite(suite, **overrides)`` so the suite's own definition applies first
and explicit overrides (CLI flags, tests) last.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from membench_eval.suites.types import Role, Suite


@dataclass(frozen=True)
class GenerationSettings:
    """What every image of a run is generated with. Fields that change pixels enter the store key
    (steps, guidance, size, the per-image seed); ``batch_size`` does not, by design."""

    num_inference_steps: int = 50
    guidance_scale: float = 7.5
    height: int = 512
    width: int = 512
    # MemBench: 10 images per trigger prompt, 1 per COCO (general) prompt.
    trigger_images_per_prompt: int = 10
    general_images_per_prompt: int = 1
    # Run seed: every image's own seed is derived from it (see generation.seeding.image_seed).
    seed: int = 0
    # Images per pipeline call; results do not depend on it.
    batch_size: int = 10
    # ``--batch-size auto``: on CUDA the engine replaces ``batch_size`` by the largest batch that
    # fits in free memory (``generation.acceleration.fit_batch_size``); ignored off CUDA.
    auto_batch_size: bool = False

    def __post_init__(self) -> None:
        for name in ("num_inference_steps", "height", "width", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"GenerationSettings.{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("trigger_images_per_prompt", "general_images_per_prompt"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"GenerationSettings.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.height % 8 or self.width % 8:
            raise ValueError(f"height and width must be multiples of 8, got {self.height}x{self.width}")

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **overrides: Any) -> "GenerationSettings":
        """A copy with ``overrides`` applied; ``None`` values are ignored (handy for CLI flags)."""
        values = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(set(values) - set(self.field_names()))
        if unknown:
            raise ValueError(f"unknown generation setting(s) {unknown}; known: {list(self.field_names())}")
        types = {f.name: f.type for f in dataclasses.fields(self)}
        coerced = {k: (float(v) if types[k] in (float, "float") else bool(v) if types[k] in (bool, "bool") else int(v))
                   for k, v in values.items()}
        return dataclasses.replace(self, **coerced)

    @classmethod
    def for_suite(cls, suite: "Suite", **overrides: Any) -> "GenerationSettings":
        """Defaults, then the suite's images per prompt and ``generation_defaults``, then ``overrides``."""
        settings = cls()
        from_suite: dict[str, Any] = {}
        if suite.trigger is not None:
            from_suite["trigger_images_per_prompt"] = suite.trigger.images_per_prompt
        if suite.general is not None:
            from_suite["general_images_per_prompt"] = suite.general.images_per_prompt
        from_suite.update(suite.generation_defaults)
        try:
            settings = settings.replace(**from_suite)
        except ValueError as exc:
            raise ValueError(f"suite {suite.name!r} generation_defaults: {exc}") from None
        return settings.replace(**overrides)

    def images_per_prompt(self, role: "Role") -> int:
        if role == "trigger":
            return self.trigger_images_per_prompt
        if role == "general":
            return self.general_images_per_prompt
        raise ValueError(f"unknown prompt role {role!r}")
