"""What a benchmark suite is: prompts, the memorized images they point at, reference targets.

These types are plain data (no torch), shared by every stage: generation reads prompts, scoring
reads memorized-image ids, reports read reference targets.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Role = Literal["trigger", "general"]


def memorized_image_id(url: str) -> str:
    """Stable id of a memorized image, derived from its URL alone (not from row order)."""
    return "m" + hashlib.sha256(url.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class Prompt:
    prompt_id: str
    text: str
    # Ids of the memorized images this prompt is known to reproduce (empty for general prompts).
    memorized_ids: tuple[str, ...] = ()
    # The suite's label of how it is memorized (sd2_mem.jsonl's ``overfit_type``: MV = matching
    # verbatim, TV = template verbatim); the leaderboard adds per-type rows where prompts have one.
    memorization_type: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class MemorizedImage:
    image_id: str
    # Where the image comes from: an http(s) URL (MemBench) or a local file (the mini suite).
    source: str

    @property
    def is_local(self) -> bool:
        return not self.source.startswith(("http://", "https://"))


@dataclass(frozen=True)
class PromptSet:
    """One scenario of a suite: MemBench's trigger prompts, or general (COCO-role) prompts."""

    role: Role
    prompts: tuple[Prompt, ...]
    images_per_prompt: int
    source_file: str = ""

    def __len__(self) -> int:
        return len(self.prompts)


@dataclass(frozen=True)
class ReferenceTargets:
    """Numbers a method is compared against (MemBench's 'reference' row); None = not declared.

    A published number is only comparable with a run that measures it the same way, so the targets
    say what they were measured with: ``sscd_backend`` (a ``membench_eval.metrics.sscd`` backend
    name, e.g. ``"disc_large"``) for ``top1_sscd``, and the open_clip ``clip_model`` /
    ``clip_pretrained`` (e.g. ``"ViT-g-14"`` / ``"laion2b_s12b_b42k"``) for ``clip``. The
    leaderboard withholds a target whose measurement differs from the run's (or is not declared).
    """

    top1_sscd: float | None = None
    clip: float | None = None
    source: str = ""
    sscd_backend: str | None = None  # SSCD backend top1_sscd was published with
    clip_model: str | None = None  # open_clip model name clip was published with
    clip_pretrained: str | None = None  # open_clip pretrained tag clip was published with


@dataclass(frozen=True)
class Suite:
    """A benchmark: the model it is defined for, its prompt sets, and its memorized images.

    ``sd1`` holds MemBench's trigger prompts, ``coco`` the COCO general prompts; ``sd1+coco``
    merges both. ``mini`` holds both roles for the bundled miniature model.
    """

    name: str
    model: str
    trigger: PromptSet | None = None
    general: PromptSet | None = None
    memorized: dict[str, MemorizedImage] = field(default_factory=dict)
    targets: ReferenceTargets = ReferenceTargets()
    # For local suites: directory holding memorized reference images (mini).
    reference_dir: Path | None = None
    # Scenario defaults this suite is defined with, overriding the SD1.4 ones
    # (e.g. {"height": 64, "width": 64, "num_inference_steps": 20} for mini).
    generation_defaults: dict[str, object] = field(default_factory=dict)
    # SSCD backend the suite's numbers are defined with ("disc_large" for sd1, "disc_mixup_onnx" for mini).
    sscd_backend: str = "disc_large"
    # CLIP-score backend (open_clip model name, pretrained tag or checkpoint file); None = the
    # paper's ViT-g-14. The mini suite ships its own ("mini-clip", benchmark_data/mini/clip/...).
    clip_backend: tuple[str, str] | None = None
    # A local image-search gallery (folder with manifest.json) for a computed reference row (mini).
    reference_gallery: Path | None = None
    # Hub revision of ``model`` (suite files); None = the default branch.
    revision: str | None = None
    # Suite files (``membench_eval.suites.suite_file``): the file, and the sha256 of it and every
    # file it reads. None for built-in suites, whose keys and result files stay as they were.
    source_file: str | None = None
    content_sha256: str | None = None
    # Missing CLIP/aesthetic weights reported as unavailable instead of an error (mini; suite files).
    allow_missing_quality_weights: bool = False
    # What to pass to --suite to get this suite again: a user's suite file path; None = ``name``.
    argument: str | None = None

    @property
    def result_key(self) -> str:
        """What results stored BY SUITE are filed under: the name, plus the content hash for a suite
        file, so two different suites with one name never share them."""
        return self.name if self.content_sha256 is None else f"{self.name}@{self.content_sha256[:12]}"

    @property
    def cli_name(self) -> str:
        """This suite as a --suite value (in hints such as "fetch them with ...")."""
        return self.argument or self.name

    def prompt_sets(self) -> list[PromptSet]:
        return [s for s in (self.trigger, self.general) if s is not None]
