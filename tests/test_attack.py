"""Adaptive attack (``membench_eval.attack``): budget accounting, the scorer through the method's
hooks (rewrites after submission), determinism, no rework on rerun, bad input. On the mini model,
with small budgets and few images so the module runs in about half a minute."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from membench_eval.attack.budget import plan_budget
from membench_eval.attack.run import Attack, AttackOptions, attack_targets, logged_candidates
from membench_eval.attack.signal import AttackError, BudgetedScorer, mitigated_single_step_scores, scorer_identity
from membench_eval.mitigation import Mitigation
from membench_eval.mitigation_loader import load_mitigation

ROOT = Path(__file__).resolve().parents[1]


class PassThroughProcessor(Mitigation):
    """Installs diffusers' own attention processor on attn2: hooked path, unchanged maths."""

    name = "pass_through"

    def cross_attention_processor(self, pipe, ctx):  # noqa: ANN001, ANN201
        from diffusers.models.attention_processor import AttnProcessor2_0

        return AttnProcessor2_0()


@pytest.fixture(scope="module")
def mini_ev(tmp_path_factory):  # noqa: ANN001, ANN201
    import torch

    from membench_eval.evaluation import EvalOptions, Evaluation

    torch.set_num_threads(1)
    store = tmp_path_factory.mktemp("attack-store")
    ev = Evaluation(EvalOptions(suite="mini", store_dir=str(store), device="cpu"))
    # Two images per fixed trigger prompt (the suite's 10 would only make the tests slower).
    ev.__dict__["settings"] = ev.settings.replace(trigger_images_per_prompt=2)
    return ev


def _fresh(ev, tmp_path):  # noqa: ANN001, ANN202
    """An Evaluation sharing ``ev``'s loaded models with an empty store of its own."""
    from membench_eval.evaluation import EvalOptions, Evaluation

    other = Evaluation(EvalOptions(suite="mini", store_dir=str(tmp_path / "store"), device="cpu"))
    other.__dict__.update(settings=ev.settings, _loaded=ev.__dict__.setdefault("_loaded", {}))
    _ = ev.pipeline, ev.sscd
    return other


SMALL = AttackOptions(budget=60, images_per_prompt=1, prompts=2, max_images=1, top_k=10, max_steps=3)


def test_budget_plan_never_exceeds_the_budget_and_prefers_width():
    for budget in (14, 100, 399, 2000, 10**6):
        for chains in (1, 7, 13):
            if budget < 2 * chains:
                continue
            plan = plan_budget(budget, chains, top_k=200, max_steps=50)
            assert plan.max_candidates <= budget
            assert plan.top_k == min(200, budget // chains)
    assert plan_budget(10**6, 7).as_dict()["max_candidates"] == 7 * 50 * 200  # the reference's full shape
    with pytest.raises(AttackError, match="--budget >= 14"):
        plan_budget(13, 7)


def test_bad_options_are_one_line_errors():
    with pytest.raises(AttackError, match="budget must be >= 1"):
        AttackOptions(budget=0)
    with pytest.raises(AttackError, match="images-per-prompt"):
        AttackOptions(images_per_prompt=0)
    with pytest.raises(AttackError, match="max-images"):
        AttackOptions(max_images=0)
    from membench_eval.suites.types import Suite

    with pytest.raises(AttackError, match="no trigger prompts"):
        attack_targets(Suite(name="x", model="m"), [])


def test_targets_are_an_evenly_spaced_subset_in_suite_order(mini_ev):
    paths, _ = mini_ev.references
    every = attack_targets(mini_ev.suite, list(paths))
    assert len(every) == 16 and all(len(t.prompts) == 1 for t in every)
    four = attack_targets(mini_ev.suite, list(paths), max_images=4)
    assert [t.image_id for t in four] == [every[i].image_id for i in (0, 5, 10, 15)]


def test_rewrites_act_after_submission_and_hooks_act_on_the_scorer(mini_ev):
    from membench_eval.detection.signal import single_step_scores

    pipe, settings = mini_ev.pipeline, mini_ev.settings
    prompts = [p.text for p in mini_ev.suite.trigger.prompts[:4]] + ["a red circle on a blue background"]
    plain = single_step_scores(pipe, prompts, seed=7, height=settings.height, width=settings.width)
    rna = load_mitigation(ROOT / "mitigations" / "rna.py", None, {"n": 6})
    # RNA: the attacker scores what it submits; the rewrite is not in the score, so RNA shares base's search.
    np.testing.assert_array_equal(mitigated_single_step_scores(pipe, rna, prompts, seed=7, settings=settings), plain)
    assert scorer_identity(rna) == scorer_identity(Mitigation())
    # The hooked path itself (CFG rows, processor installed) reproduces the signal...
    same = mitigated_single_step_scores(pipe, PassThroughProcessor(), prompts, seed=7, settings=settings)
    np.testing.assert_allclose(same, plain, rtol=1e-4)
    # ...and Ren's processor changes it, independently of which candidates share the call.
    ren = load_mitigation(ROOT / "mitigations" / "ren.py", None, {"c": 1.3})
    through = mitigated_single_step_scores(pipe, ren, prompts, seed=7, settings=settings)
    assert not np.allclose(through, plain, rtol=1e-2)
    alone = mitigated_single_step_scores(pipe, ren, prompts[1:3], seed=7, settings=settings)
    np.testing.assert_allclose(alone, through[1:3], rtol=1e-4)
    assert scorer_identity(ren)["method"] == "ren"


def test_scorer_charges_the_budget_and_counts_unet_rows(mini_ev):
    scorer = BudgetedScorer(mini_ev.pipeline, Mitigation(), mini_ev.settings, budget=5)
    scorer(["a cat", "a dog", "a cup"], 0)
    assert scorer.used == 3 and scorer.unet_rows == 4  # 3 conditional rows + one shared unconditional
    with pytest.raises(AttackError, match="budget exceeded"):
        scorer(["a", "b", "c"], 1)


def test_rna_attack_generates_rewritten_prompts_and_rerun_does_no_work(mini_ev):
    from membench_eval.evaluation_plan import MethodSpec
    from membench_eval.generation.batch import count_unet_rows

    rna = load_mitigation(ROOT / "mitigations" / "rna.py", None, {"n": 6})
    spec = MethodSpec(rna.label(), "method", "rna", rna.params(), "mitigations/rna.py", rna)
    attack = Attack(mini_ev, SMALL)
    target = attack.targets()[0]
    first = attack.attack_image(spec, target)
    assert first.searched_now and 0 < first.candidates <= SMALL.budget
    assert first.candidates == logged_candidates(mini_ev.store.root / "attacks" / "search" / first.searches[0][:2]
                                                 / first.searches[0])
    assert len(first.attack_prompts) == 2 and all(a["prompt"] != target.prompts[0].text for a in first.attack_prompts)
    # Submitted prompt != prompt the pipeline used: RNA rewrote it inside the mitigated pipeline.
    used = {r["prompt"]: r["prompt_used"] for r in mini_ev.store.records() if r.get("method") == "rna"}
    assert set(a["prompt"] for a in first.attack_prompts) <= set(used)
    assert all(used[a["prompt"]] != a["prompt"] for a in first.attack_prompts)
    # Rerun: the search, images and scores all come from the store, no UNet call at all.
    again = Attack(mini_ev, SMALL)
    generated = mini_ev.counts["generated"]
    with count_unet_rows(mini_ev.pipeline) as counter:
        second = again.attack_image(spec, target)
    assert counter.rows == 0 and mini_ev.counts["generated"] == generated and not second.searched_now
    assert second.to_dict() | {"searched_now": True} == first.to_dict()
    # Base shares RNA's search (same unmitigated scorer): reused, not rerun.
    base = again.attack_image(MethodSpec("base", "base", "base", {}, None, Mitigation()), target)
    assert base.searches == first.searches and again.counts["searches_run"] == 0


def test_search_is_deterministic_from_the_run_seed(mini_ev, tmp_path):
    base = Mitigation()
    target = Attack(mini_ev, SMALL).targets()[0]
    a, cost_a = Attack(mini_ev, SMALL).search(base, target)
    other = _fresh(mini_ev, tmp_path)
    b, cost_b = Attack(other, SMALL).search(base, target)
    assert cost_b["searched_now"] and a == b and cost_a["candidates"] == cost_b["candidates"]
    seeded = _fresh(mini_ev, tmp_path / "s1")
    seeded.__dict__["settings"] = mini_ev.settings.replace(seed=1)
    c, cost_c = Attack(seeded, SMALL).search(base, target)
    assert cost_c["searches"] != cost_a["searches"] and c != a


def test_cli_rejects_bad_input_in_one_line(tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "membench_eval.cli", "attack", *args, "--store", str(tmp_path / "s"),
                               "--out", str(tmp_path / "o")], capture_output=True, text=True, cwd=ROOT, timeout=60)

    missing = run(str(tmp_path / "nope.py"), "--suite", "mini")
    assert missing.returncode == 2 and "nope.py" in missing.stderr and "Traceback" not in missing.stderr
    budget = run("mitigations/rna.py", "--suite", "mini", "--budget", "0")
    assert budget.returncode == 2 and "budget must be >= 1" in budget.stderr
