"""pytest plugin: ``pytest --membench mitigations/my_method.py`` (registered via the pytest11 entry point).

A thin shell over ``membench_eval.evaluation``: it parses options, turns the evaluation plan into
test items (one per method config x scenario x prompt), collects the per-prompt results (from
pytest-xdist workers through ``workeroutput``), and, in the controller only, writes the leaderboard
and runs one gate item per method. Without ``--membench`` it does nothing but add options and
fixtures; heavy imports (torch, diffusers, scorers) happen only when an item or fixture needs them.
``--membench-detect detectors/foo.py`` adds the detection benchmark (``pytest_plugin.detect``);
``--membench-attack`` the adaptive attack (``pytest_plugin.attack``).

The plugin by role: ``options`` (the ``--membench-*`` options from ``membench_eval.evaluation.options``),
``hooks`` (``pytest_configure``), ``session`` (per-process state, leaderboard, gates), ``items``
(benchmark and gate items), ``fixtures`` (session fixtures for users' tests), ``detect`` and
``attack``. This module is the pytest11 entry point: pytest reads the hooks and fixtures from it.
"""

from __future__ import annotations

from membench_eval.pytest_plugin.fixtures import (
    membench_aesthetic,
    membench_clip,
    membench_evaluation,
    membench_pipeline,
    membench_reference,
    membench_reference_embeddings,
    membench_sscd,
    membench_targets,
)
from membench_eval.pytest_plugin.hooks import pytest_configure
from membench_eval.pytest_plugin.items import MembenchCollector, MembenchGateItem, MembenchItem, chunked_items
from membench_eval.pytest_plugin.options import _options, pytest_addoption  # noqa: F401 (_options: read by tests)
from membench_eval.pytest_plugin.session import MembenchSession

__all__ = [
    "MembenchCollector", "MembenchGateItem", "MembenchItem", "MembenchSession", "chunked_items",
    "membench_aesthetic", "membench_clip", "membench_evaluation", "membench_pipeline", "membench_reference",
    "membench_reference_embeddings", "membench_sscd", "membench_targets", "pytest_addoption", "pytest_configure",
]
