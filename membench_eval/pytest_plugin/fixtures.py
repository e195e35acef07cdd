"""Session fixtures users can request in their own tests (options from the command line; the mini
suite by default)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from membench_eval.pytest_plugin.session import _session

if TYPE_CHECKING:
    from membench_eval.evaluation import Evaluation
    from membench_eval.report.records import PromptResult


@pytest.fixture(scope="session")
def membench_evaluation(pytestconfig: pytest.Config) -> "Evaluation":
    """The run's Evaluation (options from the command line; mini suite by default)."""
    return _session(pytestconfig).evaluation


@pytest.fixture(scope="session")
def membench_pipeline(membench_evaluation: "Evaluation"):
    """The diffusers pipeline of the suite's model (loaded once per session)."""
    return membench_evaluation.pipeline


@pytest.fixture(scope="session")
def membench_sscd(membench_evaluation: "Evaluation"):
    """The SSCD model of the run's backend (``.embed(images) -> (n, d)`` L2-normalised)."""
    return membench_evaluation.sscd


@pytest.fixture(scope="session")
def membench_clip(membench_evaluation: "Evaluation"):
    """The CLIP scorer, or None when its weights are not available (reason: ``.unavailable``)."""
    return membench_evaluation.clip


@pytest.fixture(scope="session")
def membench_aesthetic(membench_evaluation: "Evaluation"):
    """The aesthetic scorer, or None when its weights are not available."""
    return membench_evaluation.aesthetic


@pytest.fixture(scope="session")
def membench_reference_embeddings(membench_evaluation: "Evaluation"):
    """``{memorized image id: SSCD embedding}`` of the suite's available reference images."""
    return membench_evaluation.reference_embeddings


@pytest.fixture(scope="session")
def membench_targets(membench_evaluation: "Evaluation"):
    """The suite's reference targets (sd1: Top-1 SSCD 0.088, CLIP 0.310; mini: none)."""
    return membench_evaluation.suite.targets


@pytest.fixture(scope="session")
def membench_reference(pytestconfig: pytest.Config) -> dict[str, list["PromptResult"]]:
    """The computed reference rows of this run (the leaderboard shows the same): ``{label: per-prompt
    results}`` for mini's local-gallery reference and a saved web image-search reference."""
    session = _session(pytestconfig)
    plan, ev = session.plan(), session.evaluation
    out: dict[str, list["PromptResult"]] = {}
    for m in plan.methods:
        if m.kind == "computed_reference":
            out[m.label] = [r for role, ps in plan.prompts.items() if ps and m.measures(role)
                            for r in ev.evaluate_prompts(m, role, ps)]
    return out
