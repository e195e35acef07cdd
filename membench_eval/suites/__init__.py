"""Benchmark suites by name: ``sd1`` (MemBench trigger prompts), ``coco`` (general prompts),
``mini`` (the bundled miniature benchmark), Webster's ``sd1_mem345`` and ``sd2_mem219`` (suite
files in ``benchmark_data/suites``), merges such as ``sd1+coco``, and a user's suite file
``path/to/suite.toml`` (``membench_eval.suites.suite_file``).

A small explicit registry: each name maps to one builder function below; nothing is discovered
dynamically, so what a suite name means can be read in this file.
"""

from __future__ import annotations

import os
from typing import Callable

from membench_eval.errors import DataError
from membench_eval.suites.types import (
    MemorizedImage,
    Prompt,
    PromptSet,
    ReferenceTargets,
    Suite,
    memorized_image_id,
)

__all__ = [
    "MemorizedImage", "Prompt", "PromptSet", "ReferenceTargets", "Suite", "memorized_image_id",
    "SD1_MODEL", "SD1_TARGETS", "get_suite", "list_suites", "merge_suites",
]

SD1_MODEL = "CompVis/stable-diffusion-v1-4"
# MemBench's "Reference (image search)" row: the numbers a perfect mitigation would approach.
# Measured with Meta's sscd_disc_large and open_clip ViT-g-14 / laion2b_s12b_b42k (the paper's
# Table 3 setup; the same names as metrics.sscd's backends and metrics.clip_score's defaults).
SD1_TARGETS = ReferenceTargets(top1_sscd=0.088, clip=0.310, source="MemBench paper, image-search reference",
                               sscd_backend="disc_large", clip_model="ViT-g-14", clip_pretrained="laion2b_s12b_b42k")

DataDir = str | os.PathLike | None


def _sd1(data_dir: DataDir) -> Suite:
    from membench_eval.suites.download import resolve_file
    from membench_eval.suites.loaders import load_trigger_prompts

    trigger, images = load_trigger_prompts(resolve_file("sd1_trigger_csv", data_dir))
    return Suite(name="sd1", model=SD1_MODEL, trigger=trigger, memorized=images,
                 targets=SD1_TARGETS, sscd_backend="disc_large")


def _coco(data_dir: DataDir) -> Suite:
    from membench_eval.suites.download import resolve_file
    from membench_eval.suites.loaders import load_coco_prompts

    general = load_coco_prompts(resolve_file("coco_captions_val2017", data_dir))
    return Suite(name="coco", model=SD1_MODEL, general=general, sscd_backend="disc_large")


def _mini(data_dir: DataDir) -> Suite:
    # The miniature benchmark ships in the repository; data_dir does not apply to it.
    from membench_eval.suites.mini import load_mini_suite

    return load_mini_suite()


def _builtin_file(name: str) -> Callable[[DataDir], Suite]:
    """A suite the package ships as a suite file (``benchmark_data/suites/<name>.toml``)."""

    def build(data_dir: DataDir) -> Suite:
        from membench_eval.paths import BENCHMARK_DATA
        from membench_eval.suites.suite_file import load_suite_file

        return load_suite_file(BENCHMARK_DATA / "suites" / f"{name}.toml", data_dir, builtin=True)

    return build


_BUILDERS: dict[str, Callable[[DataDir], Suite]] = {
    "sd1": _sd1, "coco": _coco, "mini": _mini,
    # Webster's lists (suite files: membench_eval.suites.suite_file; provenance in manifest.json).
    "sd1_mem345": _builtin_file("sd1_mem345"), "sd2_mem219": _builtin_file("sd2_mem219"),
}


def list_suites() -> list[str]:
    """Names accepted by :func:`get_suite` (besides ``a+b`` merges of them)."""
    return list(_BUILDERS)


def get_suite(name: str | os.PathLike, data_dir: DataDir = None) -> Suite:
    """Build the suite ``name`` (``sd1``, ``coco``, ``mini``, a merge like ``sd1+coco``, or a suite
    file ``path/to/suite.toml``: ``membench_eval.suites.suite_file``).

    ``data_dir`` is a local copy of the upstream files (default ``$MEMBENCH_DATA_DIR``; otherwise
    the cache, or a verified download).
    """
    from membench_eval.suites.suite_file import is_suite_file, load_suite_file

    name = str(name)
    if is_suite_file(name):
        return load_suite_file(name, data_dir)
    parts = [p.strip() for p in name.split("+")]
    for part in parts:
        if part not in _BUILDERS:
            raise DataError("suite", f"unknown suite {part!r} in {name!r}; known: {', '.join(_BUILDERS)}, "
                            "or a suite file path/to/suite.toml")
    if len(set(parts)) != len(parts):
        raise DataError("suite", f"suite {name!r} names a part twice")
    suites = [_BUILDERS[p](data_dir) for p in parts]
    return suites[0] if len(suites) == 1 else merge_suites(suites)


def merge_suites(suites: list[Suite]) -> Suite:
    """One suite holding each part's prompt sets; parts must share the model and scoring setup."""
    name = "+".join(s.name for s in suites)
    first = suites[0]
    trigger: PromptSet | None = None
    general: PromptSet | None = None
    memorized: dict[str, MemorizedImage] = {}
    targets = ReferenceTargets()
    reference_dir = None
    for suite in suites:
        if suite.model != first.model:
            raise DataError("suite", f"cannot merge {name!r}: {first.name} is for {first.model}, "
                            f"{suite.name} for {suite.model}")
        if suite.sscd_backend != first.sscd_backend:
            raise DataError("suite", f"cannot merge {name!r}: SSCD backends differ "
                            f"({first.sscd_backend} vs {suite.sscd_backend})")
        if suite.generation_defaults != first.generation_defaults:
            raise DataError("suite", f"cannot merge {name!r}: generation defaults differ")
        if suite.trigger is not None:
            if trigger is not None:
                raise DataError("suite", f"cannot merge {name!r}: two parts give trigger prompts")
            trigger = suite.trigger
        if suite.general is not None:
            if general is not None:
                raise DataError("suite", f"cannot merge {name!r}: two parts give general prompts")
            general = suite.general
        for image_id, image in suite.memorized.items():
            if memorized.setdefault(image_id, image) != image:
                raise DataError("suite", f"cannot merge {name!r}: image {image_id} has two sources")
        if suite.targets != ReferenceTargets():
            if targets != ReferenceTargets() and targets != suite.targets:
                raise DataError("suite", f"cannot merge {name!r}: two parts declare reference targets")
            targets = suite.targets
        if suite.reference_dir is not None:
            if reference_dir is not None and reference_dir != suite.reference_dir:
                raise DataError("suite", f"cannot merge {name!r}: two reference image dirs")
            reference_dir = suite.reference_dir
    return Suite(name=name, model=first.model, trigger=trigger, general=general, memorized=memorized,
                 targets=targets, reference_dir=reference_dir,
                 generation_defaults=dict(first.generation_defaults), sscd_backend=first.sscd_backend)
