"""Benchmark suites by name: ``sd1`` (MemBench trigger prompts), ``coco`` (general prompts),
``mini`` (the bundled miniature benchmark) and ``mini-sd3`` (its twin on SD3's architecture), Webster's ``sd1_mem345`` and ``sd2_mem219``, merges
such as ``sd1+coco``, and a user's suite file ``path/to/suite.toml``.

Every suite is a suite file (``membench_eval.suites.suite_file``): the built-ins are
``benchmark_data/suites/<name>.toml``, ``benchmark_data/mini/suite.toml`` and
``benchmark_data/mini_sd3/suite.toml``, read by the same
code as a user's. A small explicit registry maps each name to its file; nothing is discovered
dynamically, so what a suite name means can be read in this file and the TOML it names.
"""

from __future__ import annotations

import os
from pathlib import Path
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

from membench_eval.suites.mini import MINI_SUITES  # light: paths and types

__all__ = [
    "MINI_SUITES", "MemorizedImage", "Prompt", "PromptSet", "ReferenceTargets", "Suite", "memorized_image_id",
    "SD1_MODEL", "SD1_TARGETS", "get_suite", "list_suites", "merge_suites",
]

DataDir = str | os.PathLike | None


def builtin_suite_file(name: str) -> Path:
    """Where the built-in suite ``name`` is written down (every built-in is a suite file)."""
    from membench_eval.paths import BENCHMARK_DATA
    from membench_eval.suites.mini import SUITE_FILE, mini_folder

    return mini_folder(name) / SUITE_FILE if name in MINI_SUITES else BENCHMARK_DATA / "suites" / f"{name}.toml"


def _mini(name: str) -> Callable[[DataDir], Suite]:
    # The miniature benchmarks ship in the repository; data_dir does not apply to them.
    def build(data_dir: DataDir) -> Suite:
        from membench_eval.suites.mini import load_mini_suite

        return load_mini_suite(name=name)

    return build


def _builtin_file(name: str) -> Callable[[DataDir], Suite]:
    def build(data_dir: DataDir) -> Suite:
        from membench_eval.suites.suite_file import load_suite_file

        return load_suite_file(builtin_suite_file(name), data_dir, builtin=True)

    return build


_BUILDERS: dict[str, Callable[[DataDir], Suite]] = {
    "sd1": _builtin_file("sd1"), "coco": _builtin_file("coco"), "mini": _mini("mini"),
    "mini-sd3": _mini("mini-sd3"),
    "sd1_mem345": _builtin_file("sd1_mem345"), "sd2_mem219": _builtin_file("sd2_mem219"),
    "sd2": _builtin_file("sd2"), "rv": _builtin_file("rv"), "coco_sdxl": _builtin_file("coco_sdxl"),
    "coco_sd3": _builtin_file("coco_sd3"), "coco_flux": _builtin_file("coco_flux"), "coco_if": _builtin_file("coco_if"),
}


def __getattr__(name: str) -> object:
    """``SD1_MODEL`` / ``SD1_TARGETS``: read from ``sd1.toml`` (the one place they are written)."""
    if name not in ("SD1_MODEL", "SD1_TARGETS"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from membench_eval.suites.suite_file import read_toml

    doc = read_toml(builtin_suite_file("sd1"))[1]
    return doc["model"]["id"] if name == "SD1_MODEL" else ReferenceTargets(**doc["targets"])


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
        if suite.clip_backend != first.clip_backend:
            raise DataError("suite", f"cannot merge {name!r}: CLIP backends differ")
        if suite.content_sha256 is not None:
            raise DataError("suite", f"cannot merge {name!r}: {suite.name} is a suite file with a content hash; "
                            "write one suite file holding both prompt sets instead")
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
                 generation_defaults=dict(first.generation_defaults), sscd_backend=first.sscd_backend,
                 clip_backend=first.clip_backend,
                 allow_missing_quality_weights=all(s.allow_missing_quality_weights for s in suites))
