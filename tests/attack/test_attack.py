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
from membench_eval.plugins.mitigations import load_mitigation

ROOT = Path(__file__).resolve().parents[2]
pytest_plugins = ("pytester",)


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
    # Two images per fixed trigger prompt and per pipeline call (the suite's 10 would only make the
    # tests slower: every call is padded to the batch shape).
    ev.settings = ev.settings.replace(trigger_images_per_prompt=2, batch_size=2)
    _ = ev.pipeline, ev.sscd, ev.reference_embeddings  # loaded once for the module
    return ev


def _fresh(ev, tmp_path):  # noqa: ANN001, ANN202
    """An Evaluation sharing ``ev``'s loaded models with an empty store of its own."""
    from membench_eval.evaluation import EvalOptions, Evaluation

    other = Evaluation(EvalOptions(suite="mini", store_dir=str(tmp_path / "store"), device="cpu"))
    other.settings, other.models = ev.settings, ev.models
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
    from membench_eval.evaluation.plan import MethodSpec
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
    seeded.settings = mini_ev.settings.replace(seed=1)
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


# Measured by the slow test below (README "Adaptive attack"): RNA n=6 on 8 of the 16 mini images
# (evenly spaced), budget 200, 2 attack prompts x 2 images vs 4 images of the fixed trigger prompt,
# run seed 0, one thread: (fixed, attacked, attacked - fixed, its 95% interval, re-extracted).
RECORDED_RNA_DELTA = (0.207, 0.23, 0.023, -0.031, 0.073, 0.125)


@pytest.mark.slow
def test_rna_at_its_strongest_under_attack_on_mini(mini_ev, tmp_path):
    """The issue's measurement: RNA n=6's attacked minus fixed-prompt Top-1 SSCD over mini images,
    with its paired interval; recorded above and in the README (its interval includes zero)."""
    from membench_eval.attack.table import run_attack, write_table
    from membench_eval.evaluation.plan import MethodSpec

    ev = _fresh(mini_ev, tmp_path)  # the module's loaded models, an empty store
    ev.settings = mini_ev.settings.replace(trigger_images_per_prompt=4, batch_size=8)
    rna = load_mitigation(ROOT / "mitigations" / "rna.py", None, {"n": 6})
    spec = MethodSpec(rna.label(), "method", "rna", rna.params(), "mitigations/rna.py", rna)
    table = run_attack(ev, [spec], AttackOptions(budget=200, images_per_prompt=2, max_images=8))
    md_path, json_path = write_table(table, tmp_path / "out", "mini")
    row = table.rows[0].estimates
    delta = row["delta"]
    measured = (round(row["fixed_top1"].mean, 3), round(row["attacked_top1"].mean, 3), round(delta.mean, 3),
                round(delta.low, 3), round(delta.high, 3), round(row["re_extracted"].mean, 3))
    print(f"rna n=6, 8 mini images, budget 200 (fixed, attacked, delta, low, high, re-extracted): {measured}")
    assert table.metadata["n_images"] == 8 and table.metadata["prompts_per_image"] == 2
    assert all(0 < r.candidates <= 200 for r in table.rows[0].images)
    assert "Top-1 SSCD under attack" in md_path.read_text() and json.loads(json_path.read_text())["rows"][0]["delta"]
    assert RECORDED_RNA_DELTA is not None, f"record the measurement: {measured}"
    np.testing.assert_allclose(measured, RECORDED_RNA_DELTA, atol=0.02)


def test_table_intervals_are_paired_and_reach_the_leaderboard(tmp_path):
    from membench_eval.attack.run import ImageResult
    from membench_eval.attack.table import build_table, to_markdown, write_table
    from membench_eval.report import to_markdown as leaderboard_markdown
    from membench_eval.report.attack_section import stored_attack_summary
    from tests.report.test_report_synthetic import synthetic_run

    def results(fixed, attacked):  # noqa: ANN001, ANN202
        return [ImageResult(f"m{i}", [f"p{i}"], f, a, [{"prompt": f"q{i}", "score": 1.0, "top1": a}], 100, 107, {})
                for i, (f, a) in enumerate(zip(fixed, attacked))]

    fixed = [0.6, 0.3, 0.2, 0.55]
    same = build_table("mini", {"base": ("base", "unmitigated signal", results(fixed, fixed)),
                                "rna n=6": ("method", "x", results(fixed, [0.7, 0.52, 0.3, 0.6]))},
                       {"budget": 100, "n_images": 4, "prompts_per_image": 5, "images_per_prompt": 2,
                        "fixed_images_per_prompt": 10, "seed": 0}, n_resamples=500, seed=1)
    base, rna = (r.estimates for r in same.rows)
    assert (base["delta"].mean, base["delta"].low, base["delta"].high) == (0.0, 0.0, 0.0)  # paired: exactly zero
    assert rna["delta"].low > 0 and rna["re_extracted"].mean == 0.75 and rna["fixed_extracted"].mean == 0.5
    assert "| rna n=6 | 0.412 [" in to_markdown(same)
    write_table(same, tmp_path / "out", "mini", tmp_path / "store")
    summary = stored_attack_summary(tmp_path / "store", "mini", 0)
    assert summary is not None and stored_attack_summary(tmp_path / "store", "mini", 1) is None
    run = synthetic_run(tmp_path / "synthetic")
    page = leaderboard_markdown(run.board(metadata={**run.metadata, "adaptive_attack": summary}))
    assert "## Adaptive attack" in page and "budget 100 scored candidate prompts" in page
    assert "| rna n=6  | 0.412 [" in page or "| rna n=6 | 0.412 [" in page
    assert "## Adaptive attack" not in leaderboard_markdown(run.board())


def test_whitebox_climbs_the_signal_and_submits_the_embedding_through_the_pipeline(mini_ev):
    import torch

    from membench_eval.attack.whitebox import SubmittedEmbedding, optimise_embedding, whitebox_reason
    from membench_eval.generation.engine import generate
    from membench_eval.generation.seeding import plan_requests
    from membench_eval.suites.types import Prompt

    pipe, settings = mini_ev.pipeline, mini_ev.settings
    prompt = mini_ev.suite.trigger.prompts[1].text
    ren = load_mitigation(ROOT / "mitigations" / "ren.py", None, {"c": 1.3})
    embeds, history = optimise_embedding(pipe, ren, prompt, seed=3, settings=settings, steps=4)
    assert history[-1] > history[0]
    with torch.no_grad():
        start = pipe.encode_prompt([prompt], "cpu", 1, False)[0]
    torch.testing.assert_close(embeds[:, 0], start[:, 0])  # BOS frozen
    torch.testing.assert_close(embeds.norm(dim=-1), start.norm(dim=-1), rtol=1e-4, atol=1e-4)  # norms kept
    assert whitebox_reason(load_mitigation(ROOT / "mitigations" / "rna.py", None, {"n": 6})) is not None
    assert whitebox_reason(ren) is None and whitebox_reason(Mitigation()) is None
    # Submitting the prompt's own embedding through the base pipeline gives the prompt's own pixels.
    plain = generate(pipe, plan_requests([Prompt("wb-plain", prompt)], 2, 0), Mitigation(), settings, mini_ev.store,
                     progress=False)
    wrapper = SubmittedEmbedding(method="base", method_sha256="-", embedding_sha256="own").bind(Mitigation(), {"wb-own": start})
    own = generate(pipe, plan_requests([Prompt("wb-own", prompt)], 2, 0), wrapper, settings, mini_ev.store, progress=False)
    same_seed = plan_requests([Prompt("wb-own", prompt)], 2, 0)
    plain2 = generate(pipe, same_seed, Mitigation(), settings, mini_ev.store, progress=False)
    assert own.keys != plain2.keys and plain.keys != plain2.keys
    for a, b in zip(own.keys, plain2.keys):
        assert np.array_equal(np.asarray(mini_ev.store.get_image(a)), np.asarray(mini_ev.store.get_image(b)))


def test_pytest_option_registers_the_attack_session(pytester, tmp_path):
    from tests.evaluation.test_plugin_plan import plugin_args

    pytester.makeconftest("def pytest_collection_finish(session):\n"
                          "    p = session.config.pluginmanager.get_plugin('membench-attack-session')\n"
                          "    print('ATTACK-SESSION', p is not None, session.config.getoption('membench_attack_budget'))\n")
    args = ["--membench", str(ROOT / "mitigations" / "rna.py"), "--membench-suite", "mini", "--membench-store",
            str(tmp_path / "store"), "--membench-out", str(tmp_path / "out"), "--collect-only", *plugin_args()]
    with_attack = pytester.runpytest_subprocess(*args, "--membench-attack", "--membench-attack-budget", "50")
    with_attack.stdout.fnmatch_lines(["*ATTACK-SESSION True 50*"])
