"""Fixtures shared by the test folders: the untrained tiny pipeline and the memorizing mini.

Why here: a dozen modules built the same tiny pipeline with the same few lines, and three loaded
the mini the same way. Pipelines are module-scoped (or built fresh by the factory), never
session-wide, because tests install attention processors, replace the UNet or swap the scheduler:
one module's changes must not leak into another's.

Helper modules (``tests/loopback_http.py``, ``tests/mitigation_files.py``) and test modules that
others reuse (``tests/report/test_report_synthetic.py``) are imported by their dotted path from the
repository root (``tests.loopback_http``); pytest's ``pythonpath`` setting (pyproject.toml) puts the
root on ``sys.path``, so that works from every test folder and without ``python -m``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Schedule for ``pytest -n 2 --dist loadgroup`` (the README's command): slow modules first,
    and a module's tests on one worker when they share a module-scoped fixture.

    Why: under xdist's default ``load`` a module's tests are split across workers, so a shared
    module fixture (the mini mitigations run generates 960 images) is built once per worker; and a
    slow module scheduled last leaves the other worker idle at the end. Running the long modules first
    lets the short ones fill the tail (longest-first scheduling). Modules stay contiguous, so a
    module fixture is still built once per worker that runs the module. ``tryfirst``: the
    ``xdist_group`` marks must exist before xdist's own hook turns them into node-id suffixes.
    """
    slow_modules = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow_modules)  # stable: order kept within
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue  # an explicit group (the large models': one at a time, never two in 24 GiB) wins
        defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        if any(d and d[-1].scope == "module" for d in defs.values()):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


@pytest.fixture(scope="session")
def make_tiny_pipeline() -> Callable[..., Any]:
    """A factory for fresh untrained tiny SD pipelines (``build_random_tiny_pipeline`` arguments):
    for tests that change the pipeline they get, or need another seed or size."""
    import torch

    from membench_eval.models.tiny import build_random_tiny_pipeline

    def make(seed: int = 0, **kwargs: Any) -> Any:
        torch.set_num_threads(1)  # tiny models: one thread avoids OpenMP thrashing on a busy 2-core machine
        return build_random_tiny_pipeline(seed=seed, **kwargs)

    return make


@pytest.fixture(scope="module")
def pipe(make_tiny_pipeline: Callable[..., Any]) -> Any:
    """The tiny pipeline (seed 0, 64x64), one per test module. A module that needs another seed or
    size overrides ``pipe`` with ``make_tiny_pipeline``."""
    return make_tiny_pipeline(seed=0)


@pytest.fixture(scope="session")
def mini_suite() -> Any:
    """The bundled memorizing mini suite (read-only)."""
    from membench_eval.suites import get_suite

    return get_suite("mini")


@pytest.fixture(scope="module")
def mini(mini_suite: Any) -> tuple[Any, Any, Any]:
    """(suite, pipeline, generation settings) of the mini, with its own pipeline per module."""
    from membench_eval.models.loading import load_pipeline
    from membench_eval.generation.settings import GenerationSettings

    return mini_suite, load_pipeline(mini_suite.model, device="cpu"), GenerationSettings.for_suite(mini_suite)


@pytest.fixture(scope="session")
def shared_mini_store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One run store of mini generations at the suite's settings, shared by every xdist worker of
    the session: for tests that read what the engine made (images, scores), never for tests that
    count what a run generated or reused, nor for tests that write into the store by hand.

    Why: the mini mitigations run (the first 5 images of each of the 16 trigger prompts), the
    mini CLIP trade-off test (all 10 of the first 8 prompts) and the suite-file test's built-in run
    (all 10 of the first 3) generate base and RNA n=6 under the same keys; the store is
    content-addressed and takes concurrent writers (claims), so whichever test comes later, on
    either worker, reuses those images instead of making them again. Under xdist every worker's base temp folder
    (``popen-gwN``) sits in the session's, which is where the store goes."""
    import os

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    return root / "shared-mini-store"


TINY_SUITE_TOML = """name = "tiny"
description = "the mini's model at 32x32, one trigger prompt, one image: whole runs of both shells, cheaply"
[model]
path = "model"
[trigger]
file = "t.csv"
references = "refs"
id_prefix = "tiny"
images_per_prompt = 1
[generation]
height = 32
width = 32
num_inference_steps = 2
[scoring]
sscd_backend = "disc_mixup_onnx"
allow_missing_quality_weights = true
"""


@pytest.fixture(scope="session")
def tiny_suite_file(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A suite file (``--suite PATH``) over the mini's model at 32x32: one prompt, one image, two steps, for
    tests that run ``membench run`` / ``pytest --membench`` end to end in about a second (no model to build)."""
    import shutil

    from membench_eval import paths

    root = tmp_path_factory.mktemp("tiny_suite")
    (root / "model").symlink_to(paths.MINI_DIR / "model", target_is_directory=True)
    (root / "refs").mkdir()
    shutil.copy(paths.MINI_DIR / "references" / "coffee.png", root / "refs" / "coffee.png")
    (root / "t.csv").write_text(",prompt,urls\nt0,a cup of espresso on a red saucer,coffee.png\n", encoding="utf-8")
    (root / "suite.toml").write_text(TINY_SUITE_TOML, encoding="utf-8")
    return root / "suite.toml"
