"""RNA and RTA prompt rewrites: what is inserted, reproducible per seed, different across seeds."""

from __future__ import annotations

import random
import re

import pytest

from membench_eval.errors import MitigationError
from membench_eval.mitigation import Mitigation
from tests.mitigation_files import load_module

PROMPT = "The No Limits Business Woman Podcast"
WORDS = PROMPT.split(" ")


def _is_subsequence(needle: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(word in it for word in needle)


@pytest.mark.parametrize("n", [1, 6])
def test_rna_inserts_n_numbers_between_words(n):
    method = load_module("rna").RandomNumberAddition(n=n)
    for seed in range(20):
        words = method.rewrite_prompt(PROMPT, random.Random(seed)).split(" ")
        assert len(words) == len(WORDS) + n
        added = list(words)
        for word in WORDS:
            added.remove(word)
        assert len(added) == n and all(re.fullmatch(r"\d{1,5}", w) and 0 <= int(w) <= 99_999 for w in added)
        assert _is_subsequence(WORDS, words)


def test_rna_positions_cover_both_ends():
    method = load_module("rna").RandomNumberAddition(n=1)
    firsts, lasts = set(), set()
    for seed in range(200):
        words = method.rewrite_prompt(PROMPT, random.Random(seed)).split(" ")
        firsts.add(words[0].isdigit())
        lasts.add(words[-1].isdigit())
    assert firsts == {True, False} and lasts == {True, False}


def test_rta_inserts_n_decoded_clip_tokens():
    from membench_eval.models.tokenizer import build_clip_tokenizer

    rta = load_module("rta")
    tokenizer = build_clip_tokenizer()
    decoded = {tokenizer.decode([i]) for i in range(rta.TOKEN_ID_LIMIT)}
    method = rta.RandomTokenAddition(n=6)
    for seed in range(10):
        rewritten = method.rewrite_prompt(PROMPT, random.Random(seed))
        words = rewritten.split(" ")
        assert _is_subsequence(WORDS, words)
        added = list(words)
        for word in WORDS:
            added.remove(word)
        assert len(added) == 6 and all(w in decoded for w in added), added
    # Start/end-of-text tokens (ids >= 49400) are never drawn.
    assert "<|startoftext|>" not in decoded and "<|endoftext|>" not in decoded


@pytest.mark.parametrize("module,cls", [("rna", "RandomNumberAddition"), ("rta", "RandomTokenAddition")])
def test_rewrite_is_reproducible_per_seed_and_differs_across_seeds(module, cls):
    method = getattr(load_module(module), cls)(n=3)
    rewrites = [method.rewrite_prompt(PROMPT, random.Random(seed)) for seed in range(10)]
    assert rewrites == [method.rewrite_prompt(PROMPT, random.Random(seed)) for seed in range(10)]
    assert len(set(rewrites)) == 10
    assert all(r != PROMPT for r in rewrites)


@pytest.mark.parametrize("module,cls", [("rna", "RandomNumberAddition"), ("rta", "RandomTokenAddition")])
def test_n_zero_is_identity_and_negative_n_is_rejected(module, cls):
    klass = getattr(load_module(module), cls)
    assert klass(n=0).rewrite_prompt(PROMPT, random.Random(0)) == PROMPT
    with pytest.raises(MitigationError, match="n must be >= 0"):
        klass(n=-1)


@pytest.mark.parametrize(
    "module,cls,field,sweep,strongest",
    [
        ("rna", "RandomNumberAddition", "n", [1, 2, 3, 4, 5, 6], 6),
        ("rta", "RandomTokenAddition", "n", [1, 2, 3, 4, 5, 6], 6),
        ("wen", "WenEmbeddingOptimization", "l", [7.0, 6.0, 5.0, 4.0, 3.0, 2.0], 2.0),
        ("ren", "RenCrossAttention", "c", [1.0, 1.1, 1.2, 1.3], 1.3),
    ],
)
def test_paper_sweep_and_strongest_are_declared_as_fields(module, cls, field, sweep, strongest):
    klass = getattr(load_module(module), cls)
    assert issubclass(klass, Mitigation) and klass.paper
    assert klass.sweep == {field: sweep} and klass.strongest == {field: strongest}
    method = klass(**klass.strongest)
    assert method.params() == {field: strongest}
    assert method.label() == f"{klass.name} {field}={strongest}"
    assert klass(**{field: sweep[0]}).label() != method.label()


def test_base_changes_nothing():
    base = load_module("base").Base()
    assert base.name == "base" and base.params() == {}
    assert not any(base.overrides(h) for h in ("rewrite_prompt", "edit_embeddings", "on_step_end",
                                               "cross_attention_processor", "generate"))
