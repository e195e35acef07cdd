"""MCMC search machinery with a fake scorer: transitions, banned tokens, logs, resume, Algorithm 2,
clustering. No diffusion model: the scorer is a plain function of the prompt text."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest, chisquare

from membench_eval.errors import DataError
from membench_eval.search.augment import AugmentConfig, augment_prompt, hamming, pick_diverse
from membench_eval.search.chainlog import read_log
from membench_eval.search.cluster import cluster_embeddings, write_clusters
from membench_eval.search.gibbs import ChainConfig, GibbsChain, softmax
from membench_eval.search.mlm import MaskedLM
from membench_eval.search.tiny_mlm import build_tiny_mlm

WORDS = "zebra apple banana cherry dog egg fish goat hat ice jam kite lamp moon nest".split()
TEXTS = [" ".join(WORDS), "a photo of the ##ing cat, on mat!"]


@pytest.fixture(scope="module")
def mlm() -> MaskedLM:
    tok, model = build_tiny_mlm(TEXTS, seed=0)
    return MaskedLM(tok, model, spec="tiny:test")


def prefers_zebra(prompts, latent_seed):  # noqa: ANN001
    return np.array([3.0 * p.split().count("zebra") for p in prompts])


def constant(prompts, latent_seed):  # noqa: ANN001
    return np.zeros(len(prompts))


def test_softmax_is_shift_invariant_and_overflow_safe():
    p = softmax(np.array([1000.0, 1000.0 + np.log(3)]), 1.0)
    np.testing.assert_allclose(p, [0.25, 0.75])
    np.testing.assert_allclose(softmax(np.array([0.1, 0.2]), 0.1), softmax(np.array([1.0, 2.0]), 1.0))


def test_banned_tokens_never_proposed(mlm):
    stop = MaskedLM(mlm.tokenizer, mlm.model, stop_words=["dog", "The"], spec="tiny:test")
    allowed = {stop.token(i) for i in np.flatnonzero(stop.allowed())}
    assert "dog" not in allowed and "the" not in allowed and "zebra" in allowed
    assert not any(t.startswith("[") or t.startswith("##") or not any(c.isalnum() for c in t) for t in allowed)
    cands = stop.propose([stop.mask_id] * 3, 1, k=1000)
    assert {stop.token(c) for c in cands} == allowed


def test_wordpiece_pieces_punctuation_and_specials_banned(tmp_path):
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", "cat", "##ing", ".", "!", "run", "9"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizer(str(tmp_path / "vocab.txt"))
    model = BertForMaskedLM(BertConfig(vocab_size=len(vocab), hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                                       intermediate_size=8))
    lm = MaskedLM(tok, model, spec="hand")
    assert [lm.token(i) for i in np.flatnonzero(lm.allowed())] == ["cat", "run", "9"]
    assert lm.decode(tok.convert_tokens_to_ids(["run", "##ing", "[MASK]", "cat"])) == "runing cat"  # WordPiece joins "##" pieces


def test_current_word_and_empty_slot_always_candidates(mlm):
    zebra = mlm.tokenizer.convert_tokens_to_ids("zebra")
    cands = mlm.propose([zebra, mlm.mask_id], 0, k=2, include=[zebra, mlm.mask_id])
    assert len(cands) == 2 and set(cands) == {zebra, mlm.mask_id}
    assert mlm.decode([mlm.mask_id, zebra, mlm.mask_id]) == "zebra"


def test_transition_samples_softmax_of_scores(mlm, tmp_path):
    """A scorer that likes one word: the chain picks it at the softmax rate, far above uniform."""
    cfg = ChainConfig(length=2, top_k=1000, temperature=1.0, seed=11)
    res = GibbsChain(mlm, prefers_zebra, cfg, tmp_path / "zebra.jsonl").run(60)
    picked = sum(s["word"] == "zebra" for s in res.steps)
    n_cands = len(res.steps[0]["candidate_ids"])
    # Expected number of zebra picks from the logged softmax probabilities of every step.
    zebra_id = mlm.tokenizer.convert_tokens_to_ids("zebra")
    expected = sum(softmax(np.array(s["candidate_scores"]), 1.0)[s["candidate_ids"].index(zebra_id)] for s in res.steps)
    assert binomtest(picked, len(res.steps), 1 / n_cands, alternative="greater").pvalue < 1e-9
    assert abs(picked - expected) < 4 * np.sqrt(expected)
    assert "zebra" in res.best_prompt and res.best_score >= 3.0
    # Same chain with a flat scorer: choices are uniform over the candidates.
    flat = GibbsChain(mlm, constant, cfg, tmp_path / "flat.jsonl").run(100)
    idx = [s["candidate_ids"].index(s["token_id"]) for s in flat.steps]
    assert chisquare(np.bincount(idx, minlength=n_cands)).pvalue > 1e-3
    assert sum(s["word"] == "zebra" for s in flat.steps) < picked / 3


def test_log_records_every_state(mlm, tmp_path):
    cfg = ChainConfig(length=3, top_k=5, temperature=0.5, seed=1)
    res = GibbsChain(mlm, prefers_zebra, cfg, tmp_path / "c.jsonl").run(4)
    header, steps = read_log(tmp_path / "c.jsonl")
    assert header["config"]["top_k"] == 5 and header["prefix"] == "Image of a" and header["mlm"] == "tiny:test"
    assert [s["iteration"] for s in steps] == [0, 1, 2, 3] == [s["iteration"] for s in res.steps]
    for s in steps:
        assert set(s) >= {"position", "word", "prompt", "score", "slots", "rng_state", "latent_seed"}
        assert s["prompt"] == mlm.decode(s["slots"]) and s["score"] == prefers_zebra([s["prompt"]], 0)[0]
    assert len({s["latent_seed"] for s in steps}) == 4  # a fresh shared latent per step (reference)


def _strip(steps):  # noqa: ANN001
    return [(s["iteration"], s["position"], s["slots"], s["score"], s["rng_state"]) for s in steps]


def test_resume_after_torn_write_continues_the_same_chain(mlm, tmp_path):
    cfg = ChainConfig(length=3, top_k=6, temperature=0.7, seed=5)
    full = GibbsChain(mlm, prefers_zebra, cfg, tmp_path / "full.jsonl").run(12)
    part = tmp_path / "part.jsonl"
    GibbsChain(mlm, prefers_zebra, cfg, part).run(5)
    with part.open("a", encoding="utf-8") as f:
        f.write('{"type": "step", "iteration": 5, "posi')  # killed mid-write
    resumed = GibbsChain(mlm, prefers_zebra, cfg, part).run(12)
    assert _strip(resumed.steps) == _strip(full.steps)
    assert _strip(read_log(part)[1]) == _strip(full.steps)
    with pytest.raises(DataError, match="temperature"):
        GibbsChain(mlm, prefers_zebra, ChainConfig(length=3, top_k=6, temperature=0.9, seed=5), part).run(13)


SLOW_CHAIN = """
import sys, time, numpy as np
from membench_eval.search.tiny_mlm import build_tiny_mlm
from membench_eval.search.mlm import MaskedLM
from membench_eval.search.gibbs import ChainConfig, GibbsChain
tok, model = build_tiny_mlm({texts!r}, seed=0)
mlm = MaskedLM(tok, model, spec="tiny:test")
def scorer(prompts, seed):
    time.sleep(float(sys.argv[2]))
    return np.array([3.0 * p.split().count("zebra") + 0.01 * len(p) for p in prompts])
GibbsChain(mlm, scorer, ChainConfig(length=3, top_k=6, temperature=0.5, seed=9), sys.argv[1]).run(10)
"""


@pytest.mark.slow
def test_sigkill_and_resume_equals_uninterrupted_run(tmp_path):
    script = tmp_path / "chain.py"
    script.write_text(SLOW_CHAIN.format(texts=TEXTS), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    ref, killed = tmp_path / "ref.jsonl", tmp_path / "killed.jsonl"
    subprocess.run([sys.executable, str(script), str(ref), "0"], check=True, env=env, timeout=300)
    proc = subprocess.Popen([sys.executable, str(script), str(killed), "0.3"], env=env)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and (not killed.exists() or len(read_log(killed)[1]) < 3):
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    n_before = len(read_log(killed)[1])
    assert 3 <= n_before < 10, "the chain should have been killed midway"
    subprocess.run([sys.executable, str(script), str(killed), "0"], check=True, env=env, timeout=300)
    assert _strip(read_log(killed)[1]) == _strip(read_log(ref)[1])


def test_augmentation_keeps_top_and_diverse_with_changed_word_counts(mlm, tmp_path):
    prompt = "apple banana cherry dog"
    cfg = AugmentConfig(steps=6, top_k=8, temperature=1.5, keep_top=10, n_diverse=4, early_stop_threshold=None)
    res = augment_prompt(mlm, prefers_zebra, prompt, tmp_path / "aug", cfg, progress=False)
    assert len(res["chains"]) == 4 and all(c["steps"] == 6 for c in res["chains"])
    # chain p resamples position p first
    for p in range(4):
        assert read_log(tmp_path / "aug" / "chains" / f"position_{p:02d}.jsonl")[1][0]["position"] == p
    top = res["top"]
    assert 0 < len(top) <= 10 and len(res["diverse"]) == min(4, len(top))
    assert [t["score"] for t in top] == sorted((t["score"] for t in top), reverse=True)
    origin = prompt.split()
    for item in top:
        words = item["prompt"].split()
        assert item["changed_words"] == sum(a != b for a, b in zip(words, origin)) + abs(len(words) - len(origin))
        assert item["changed_words"] >= 1
    assert "zebra" in top[0]["prompt"]
    assert json.loads((tmp_path / "aug" / "augment.json").read_text())["diverse"] == res["diverse"]


def test_pick_diverse_is_greedy_max_min():
    items = [{"slots": s} for s in ([1, 1, 1], [1, 1, 2], [1, 2, 2], [2, 2, 2], [9, 9, 9])]
    chosen = [it["slots"] for it in pick_diverse(items, 3)]
    assert chosen[0] == [1, 1, 1] and chosen[1] == [2, 2, 2]  # 3 differing words, the better scored of the two
    assert hamming((1, 1, 1), (9, 9, 9)) == 3


def test_early_stop_on_low_scores(mlm, tmp_path):
    cfg = ChainConfig(length=2, top_k=4, temperature=1.0, early_stop_threshold=1.0, early_stop_patience=3)
    res = GibbsChain(mlm, constant, cfg, tmp_path / "stop.jsonl").run(20)
    assert len(res.steps) == 3 and res.stopped_early
    assert len(GibbsChain(mlm, constant, cfg, tmp_path / "stop.jsonl").run(20).steps) == 3  # stays stopped


def test_dbscan_clusters_on_one_minus_sscd(tmp_path):
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(2, 64))
    rows = [centers[0] + 0.05 * rng.normal(size=64) for _ in range(5)]
    rows += [centers[1] + 0.05 * rng.normal(size=64) for _ in range(4)]
    rows += list(rng.normal(size=(6, 64)))  # unrelated images: noise
    emb = np.array(rows)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    clusters = cluster_embeddings(emb)
    assert clusters == [[0, 1, 2, 3, 4], [5, 6, 7, 8]]
    assert cluster_embeddings(emb[:2]) == []  # min_samples 3
    from PIL import Image

    images = [Image.new("RGB", (8, 8), (i * 10, 0, 0)) for i in range(len(emb))]
    man = write_clusters(tmp_path / "c", prompt="p", score=4.5, images=images, clusters=clusters, seeds=range(len(emb)))
    assert man["cluster_sizes"] == [5, 4] and json.loads((tmp_path / "c" / "manifest.json").read_text()) == man
    assert sorted(p.name for p in (tmp_path / "c" / "cluster_1").iterdir()) == ["5.png", "6.png", "7.png", "8.png"]
    assert len(list((tmp_path / "c" / "images").iterdir())) == len(emb)
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.pickle"))


def test_augmentation_rejects_words_outside_the_vocabulary(mlm, tmp_path):
    with pytest.raises(DataError, match="vocabulary"):
        augment_prompt(mlm, prefers_zebra, "zebra xylophone", tmp_path, AugmentConfig(steps=1), progress=False)
