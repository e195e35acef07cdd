"""The MCMC search on the trained miniature model, with the tiny word-level BERT (mini vocabulary)."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def mini():
    from membench_eval.generation.pipeline import load_pipeline
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.suites import get_suite

    suite = get_suite("mini")
    return suite, load_pipeline(suite.model, device="cpu"), GenerationSettings.for_suite(suite)


def test_search_climbs_the_detection_score_beyond_random_prompts(mini, tmp_path):
    """The sampler climbs Wen's score on the real mini model, above random prompts of its vocabulary.

    Measured (not asserted, too slow for CI): 2 chains x 20 steps, L=4, k=24 reached scores 16.5 and
    13.0 ("lightning pad canaveral", "canaveral ophthalmoscope flight pad") but their generations only
    reached Top-1 SSCD 0.16 and 0.26, while 10 random 4-word prompts of the same vocabulary averaged
    0.36 (2 of 10 above 0.5): on mini the single-step score is exploitable by word salads with strong
    text conditioning, so reaching a memorized image is not asserted; see the helper's report.
    """
    from membench_eval.search.gibbs import ChainConfig, GibbsChain, diffusion_scorer
    from membench_eval.search.mlm import load_masked_lm

    suite, pipe, st, *_ = mini
    mlm = load_masked_lm("tiny:mini", device="cpu")
    scorer = diffusion_scorer(pipe, height=st.height, width=st.width)
    cfg = ChainConfig(length=4, top_k=16, temperature=0.1, seed=0)
    res = GibbsChain(mlm, scorer, cfg, tmp_path / "chain.jsonl").run(6)
    rng = np.random.default_rng(0)
    allowed = np.flatnonzero(mlm.allowed())
    random_prompts = [mlm.decode(list(rng.choice(allowed, 4))) for _ in range(24)]
    random_scores = np.concatenate([scorer(random_prompts, s["latent_seed"]) for s in res.steps[:2]])
    assert res.best_score > np.percentile(random_scores, 75), (res.best_prompt, res.best_score, np.sort(random_scores))
    # The chain's states themselves sit high: the transition samples from softmax(score / 0.1).
    assert np.mean([s["score"] for s in res.steps[2:]]) > np.median(random_scores)


@pytest.mark.slow
def test_search_cli_resumes_and_writes_clusters(mini, tmp_path):
    from membench_eval.cli import main

    common = ["search", "--suite", "mini", "--device", "cpu", "--length", "4", "--top-k", "6", "--images", "6",
              "--no-progress"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert main([*common, "--out", str(a), "--steps", "2", "--images", "0"]) == 0  # "killed" after 2 steps
    assert main([*common, "--out", str(a), "--steps", "4"]) == 0  # resumed
    assert main([*common, "--out", str(b), "--steps", "4"]) == 0  # uninterrupted
    la = [json.loads(x) for x in (a / "chains" / "chain_0000.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (b / "chains" / "chain_0000.jsonl").read_text().splitlines()]
    assert len(la) == 5 and [(s["slots"], s["position"], s["rng_state"]) for s in la[1:]] == [
        (s["slots"], s["position"], s["rng_state"]) for s in lb[1:]]
    np.testing.assert_allclose([s["score"] for s in la[1:]], [s["score"] for s in lb[1:]], rtol=1e-5)
    summary = json.loads((a / "search.json").read_text())
    chain = summary["chains"][0]
    manifest = json.loads((a / "candidates" / "chain_0000" / "manifest.json").read_text())
    assert manifest["prompt"] == chain["best_prompt"] and manifest["n_images"] == 6
    assert sum(manifest["cluster_sizes"]) <= 6 and len(list((a / "candidates" / "chain_0000" / "images").glob("*.png"))) == 6
    for k, size in enumerate(manifest["cluster_sizes"]):
        assert len(list((a / "candidates" / "chain_0000" / f"cluster_{k}").glob("*.png"))) == size >= 3
