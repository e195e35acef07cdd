"""The plugin's ``--membench-*`` options (generated from ``membench_eval.evaluation.options``, the table the
``membench run`` command uses too) and the evaluation options they give."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from membench_eval.evaluation.options import DEFAULT_OUT, add_pytest_options

if TYPE_CHECKING:
    from membench_eval.evaluation import EvalOptions
    from membench_eval.evaluation.project_config import GateConfig


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("membench", "memorization-mitigation benchmark (membench-eval)")
    add_pytest_options(group)


def leaderboard_dir(config: pytest.Config) -> str:
    """``--membench-out``; its default is ./leaderboard of the working directory at start-up."""
    out = config.getoption("membench_out")
    return out if out not in (None, DEFAULT_OUT) else str(Path.cwd() / DEFAULT_OUT)


def _options(config: pytest.Config) -> "EvalOptions":
    """EvalOptions from the command line (cheap: no heavy imports)."""
    from membench_eval.evaluation import EvalOptions
    from membench_eval.evaluation.project_config import configured_store
    from membench_eval.runtime import device_for_worker

    get = config.getoption
    # An xdist worker gwN takes cuda:(N mod visible devices) unless a device index was given.
    worker = config.workerinput.get("workerid") if hasattr(config, "workerinput") else None  # type: ignore[attr-defined]
    return EvalOptions(
        suite=get("membench_suite") or "mini",
        data_dir=get("membench_data_dir"),
        model=get("membench_model"),
        store_dir=get("membench_store") or configured_store(Path(config.invocation_params.dir)),
        out_dir=leaderboard_dir(config),
        limit=get("membench_limit"),
        subset=get("membench_subset"),
        device=device_for_worker(get("membench_device"), worker),
        sscd_backend=get("membench_sscd_backend"),
        clip_model=get("membench_clip_model"),
        clip_pretrained=get("membench_clip_pretrained"),
        aesthetic_pretrained=get("membench_aesthetic_pretrained"),
        seed=get("membench_seed") if get("membench_seed") is not None else 0,
        batch_size=get("membench_batch_size"),
        stored_baselines=not get("membench_no_stored_baselines"),
        compile=bool(get("membench_compile")),
        engine=get("membench_engine") or "local",
        ray_address=get("membench_ray_address"),
        ray_actors=get("membench_ray_actors"),
    )


def gate_config(config: pytest.Config) -> "GateConfig":
    """The run's gates, found as ``membench run`` finds them: from the directory pytest was started in."""
    from membench_eval.evaluation.project_config import resolve_gates

    return resolve_gates(config.getoption("membench_gate"), config.getoption("membench_gate_file"),
                         Path(config.invocation_params.dir))
