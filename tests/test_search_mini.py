"""The MCMC search on the trained miniature model, with the tiny word-level BERT (mini vocabulary)."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def mini():
    from membench_eval.models.loading import load_pipeline
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.suites import get_suite

    suite = get_suite("mini")
    return suite, load_pipeline(suite.model, device="cpu"), GenerationSettings.for_suite(suite)


def test_search_climbs_the_detection_score_beyond_random_prompts(mini, tmp_path):
    """The sampler climbs Wen's score on the real mini model with the shipped proposal model
    (mini-mlm, 4198 words: top-k = 16 really selects), above random prompts of its vocabulary."""
    from membench_eval.search.gibbs import ChainConfig, GibbsChain, diffusion_scorer
    from membench_eval.search.mlm import load_masked_lm

    suite, pipe, st, *_ = mini
    mlm = load_masked_lm("mini-mlm", device="cpu")
    assert mlm.allowed().sum() > 16 * 20
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
def test_a_chain_reaches_a_prompt_that_regenerates_a_memorized_image(mini, tmp_path):
    """Issue criterion: within 8 steps (L = 4, k = 24, mini-mlm), at least one of 3 chains finds a
    prompt whose 10 generations have SSCD > 0.5 to some memorized image.

    Read it against the rate for random prompts, which is high on mini. Measured here: 3 of 3
    chains ("black with grass" 0.767, "purple horse in field" 0.721, "horse standing them" 0.839);
    with experiments/search_exp.py (same L, k, steps, its own chain files) 1 of 3 chains (0.742,
    0.376, 0.319) and 6 of 10 random 4-word prompts of the same vocabulary (0.28-0.76) exceed
    0.5: half of the mini's training data are its 16 memorized photos, so its prior copies them
    (benchmark_data/mini/README.md, what limits the quality). On mini the
    search is exercised end to end; that it beats chance at finding copies is not shown.
    """
    import torch

    from membench_eval.metrics.sscd import load_sscd
    from membench_eval.search.gibbs import ChainConfig, GibbsChain, diffusion_scorer
    from membench_eval.search.mlm import load_masked_lm

    suite, pipe, st = mini
    mlm = load_masked_lm("mini-mlm", device="cpu")
    scorer = diffusion_scorer(pipe, height=st.height, width=st.width)
    sscd = load_sscd(suite.sscd_backend)
    refs = sscd.embed([suite.memorized[i].source for i in suite.memorized])

    def best_match(prompt: str) -> float:
        gens = [torch.Generator().manual_seed(1000 + i) for i in range(10)]
        images = pipe([prompt] * 10, num_inference_steps=st.num_inference_steps, guidance_scale=st.guidance_scale,
                      height=st.height, width=st.width, generator=gens, output_type="np").images
        images = [(np.clip(im, 0, 1) * 255).round().astype(np.uint8) for im in images]
        return float((sscd.embed(images) @ refs.T).max())

    found = []
    for seed in range(3):
        res = GibbsChain(mlm, scorer, ChainConfig(length=4, top_k=24, temperature=0.1, seed=seed),
                         tmp_path / f"chain{seed}.jsonl").run(8)
        found.append((res.best_prompt, best_match(res.best_prompt)))
    print("\nmini search, best prompt and its best SSCD to any memorized image:", found)
    assert max(s for _, s in found) > 0.5, found



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
