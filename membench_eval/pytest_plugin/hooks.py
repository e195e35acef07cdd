"""``pytest_configure``: registers the benchmark session (``--membench``), the detection benchmark
(``--membench-detect``) and the adaptive attack (``--membench-attack``), and fails fast on a bad
method file, parameter, gate or suite before anything runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from membench_eval.pytest_plugin.options import _options, gate_config
from membench_eval.pytest_plugin.session import _PLUGIN_NAME, MembenchSession

if TYPE_CHECKING:
    from membench_eval.evaluation.project_config import GateConfig


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "membench_item: a benchmark item of pytest --membench (added by the plugin)")
    if config.getoption("membench_detect"):
        from membench_eval.pytest_plugin.detect import PLUGIN_NAME as DETECT_PLUGIN
        from membench_eval.pytest_plugin.detect import DetectSession

        detect = DetectSession(config)
        config.pluginmanager.register(detect, DETECT_PLUGIN)
        if not detect.is_worker:
            detect.detectors()  # a bad detector file or parameter: usage error before anything runs
    if config.getoption("membench") and config.getoption("membench_attack"):
        from membench_eval.pytest_plugin.attack import PLUGIN_NAME as ATTACK_PLUGIN, AttackSession

        config.pluginmanager.register(AttackSession(config, _options), ATTACK_PLUGIN)
    if config.getoption("membench"):
        from membench_eval.generation.termination import raise_on_sigterm

        raise_on_sigterm()  # SIGTERM (a CI timeout) like Ctrl-C: drain the batch, release claims, exit 143
        session = MembenchSession(config)
        config.pluginmanager.register(session, _PLUGIN_NAME)
        if not session.is_worker:
            # Fail fast, before any generation, and in the controller: under xdist a bad method
            # file, parameter, gate or suite is reported exactly as in a serial run (exit 4).
            session.gate_config = _gates_or_usage_error(config)
            session.gates = list(session.gate_config.gates)
            if config.getoption("membench_engine") == "ray" and getattr(config.option, "dist", "no") != "no":
                raise pytest.UsageError("membench: --membench-engine ray spreads the work over the Ray cluster "
                                        "itself; run it without -n / --dist")
            session.plan()
            _preflight_or_exit(session)
            if getattr(config.option, "dist", "no") == "load":
                # -n N: whole batches go to one worker (an @chunk suffix on the node ids), so
                # workers run full pipeline calls, as the serial path does.
                config.option.dist = "loadgroup"


def _preflight_or_exit(session: "MembenchSession") -> None:
    """Store and leaderboard folders writable before any item runs; else exit status 3."""
    from membench_eval.errors import EXIT_ENVIRONMENT, MembenchError

    try:
        session.evaluation.preflight()
    except MembenchError as exc:
        if exc.exit_code != EXIT_ENVIRONMENT:
            raise pytest.UsageError(f"membench: {exc}") from None
        pytest.exit(f"membench: {exc}", returncode=EXIT_ENVIRONMENT)


def _gates_or_usage_error(config: pytest.Config) -> "GateConfig":
    from membench_eval.errors import MembenchError

    try:
        return gate_config(config)
    except MembenchError as exc:
        raise pytest.UsageError(f"membench: {exc}") from None
