"""Issue 19 without a model: prompt words and tokens, caption files, G^2 / PMI, the rank
correlation, the results area, the minimal-trigger search's logic and the CLI's bad-input errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from membench_eval.errors import DataError


@pytest.fixture(scope="module")
def tokenizer():
    from membench_eval.models.tokenizer import build_clip_tokenizer

    return build_clip_tokenizer()


def test_words_and_tokens_match_the_clip_tokenizer(tokenizer):
    from membench_eval.analysis.words import split_prompt, without_token, without_words

    text = "immunohistochemistry staining, of colonic glands"
    words, tokens = split_prompt(text, tokenizer)
    assert [w.text for w in words] == ["immunohistochemistry", "staining", "of", "colonic", "glands"]
    assert [t.raw for t in tokens] == tokenizer.tokenize(text)  # the encoder's own pieces, in order
    assert len(words[0].tokens) == 4 and all(tokens[j].word == 0 for j in words[0].tokens)
    assert tokens[words[1].tokens[-1] + 1].word is None  # the comma belongs to no word
    assert without_words(text, words, {1}) == "immunohistochemistry, of colonic glands"
    assert without_words(text, words, {0}) == "staining, of colonic glands"
    # Removing one BPE piece from inside a word joins its neighbours, as the encoder would see it.
    assert without_token(tokenizer, tokens, 1).startswith("immunstochemistry staining")


def test_one_word_prompt_is_a_one_line_error():
    from membench_eval.analysis.words import split_prompt

    with pytest.raises(DataError, match="'astronaut' has 1 word"):
        split_prompt("astronaut")


def test_caption_formats(tmp_path):
    from membench_eval.analysis.duplication import load_captions

    (tmp_path / "c.txt").write_text("a cat\n\nthe dog\n", encoding="utf-8")
    (tmp_path / "c.jsonl").write_text('"a cat"\n{"caption": "the dog", "url": "u1"}\n', encoding="utf-8")
    (tmp_path / "c.json").write_text(json.dumps({"memorized": {"cat": ["a cat"]}, "general": ["the dog"]}), encoding="utf-8")
    for name in ("c.txt", "c.jsonl", "c.json"):
        got = load_captions(tmp_path / name)
        assert got.captions == ("a cat", "the dog"), name
    assert load_captions(tmp_path / "c.jsonl").groups == (None, "u1")
    assert load_captions(tmp_path / "c.json").groups == ("cat", None)
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    pd.DataFrame({"TEXT": ["a cat", "the dog"], "url": ["u0", "u1"]}).to_parquet(tmp_path / "c.parquet")
    assert load_captions(tmp_path / "c.parquet").groups == ("u0", "u1")


def test_unknown_or_bad_caption_file_names_the_file(tmp_path):
    from membench_eval.analysis.duplication import load_captions

    bad = tmp_path / "captions.csv"
    bad.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"captions\.csv: unknown caption file format '\.csv'"):
        load_captions(bad)
    broken = tmp_path / "captions.jsonl"
    broken.write_text('"ok"\n{"nope": 1}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"captions\.jsonl, row 2"):
        load_captions(broken)


def test_g2_and_pmi_match_their_definitions():
    from scipy.stats import chi2_contingency

    from membench_eval.analysis.duplication import CaptionList, word_association

    caps = ["red cup on table", "red cup", "cup of tea", "blue sky", "blue sea", "red sky"]
    mask = np.array([True, True, True, False, False, False])
    scores = word_association(CaptionList(tuple(caps), (None,) * 6, "test"), mask)
    # "cup": in 3/3 of the image's captions and 0/3 of the others.
    table = np.array([[3, 0], [0, 3]])
    g2 = chi2_contingency(table, correction=False, lambda_="log-likelihood").statistic
    assert scores["cup"]["g2"] == pytest.approx(g2)
    assert scores["cup"]["pmi"] == pytest.approx(math.log((3 / 3) / (3 / 6)))
    assert scores["blue"]["g2"] < 0 and scores["blue"]["pmi"] is None  # tied to the other captions
    red = chi2_contingency(np.array([[2, 1], [1, 2]]), correction=False, lambda_="log-likelihood").statistic
    assert scores["red"]["g2"] == pytest.approx(red) and red > 0  # 2 of 3 vs 1 of 3: positive, weak


def test_rank_correlation_and_interval():
    from membench_eval.analysis.duplication import rank_correlation

    x = np.arange(12.0)
    up = rank_correlation(x, x ** 2)
    assert up["rho"] == pytest.approx(1.0) and up["low"] == pytest.approx(1.0)
    noisy = rank_correlation(x, np.random.default_rng(0).normal(size=12))
    assert noisy["low"] < noisy["rho"] < noisy["high"] and noisy["low"] < 0 < noisy["high"]


def test_results_area_roundtrip_and_tamper(tmp_path):
    from membench_eval.store.results import ResultStore

    store = ResultStore(tmp_path, "attribution")
    fields = {"prompt": "a cat", "k": 4}
    path = store.put(fields, {"top1": 0.5})
    assert store.get(fields) == {"top1": 0.5}
    assert store.get({"prompt": "a cat", "k": 5}) is None
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["result"]["top1"] = 0.9
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert store.get(fields) is None  # an edited result is never reused


class _FakeScorer:
    """Top-1 of a text: 0.9 while it keeps the word 'cat', else 0.1; counts the texts asked."""

    def __init__(self, batch_size: int = 8):
        self.settings = type("S", (), {"batch_size": batch_size})()
        self.asked: list[str] = []

    def own_top1(self, texts, base_id, k, refs):  # noqa: ANN001
        self.asked += list(texts)
        return np.array([[0.9 if "cat" in t.split() else 0.1] * k for t in texts])


def _result(text: str, sscd_drops: list[float]) -> dict:
    words = [{"word": w, "removed": {"sscd": {"mean": d}, "signal": {"mean": 0.0}}} for w, d in zip(text.split(), sscd_drops)]
    return {"prompt": text, "prompt_id": "p", "references": ["m"], "config": {"images": 2},
            "base": {"top1": 0.9}, "words": words}


@pytest.mark.parametrize("batch_size", [2, 8])
def test_minimal_trigger_keeps_only_the_trigger_word(batch_size):
    from membench_eval.analysis.minimal import minimal_trigger

    scorer = _FakeScorer(batch_size)
    # Least important first: 'tabby' (0.0), 'cat' (0.01: fails, kept), 'a', 'photo'.
    out = minimal_trigger(scorer, _result("a photo of tabby cat", [0.3, 0.2, 0.1, 0.0, 0.01]))
    assert out["trigger"] == "cat" and out["n_words"] == 1 and out["top1"] == pytest.approx(0.9)
    assert [s["word"] for s in out["steps"] if not s["dropped"]] == ["cat"]
    below = minimal_trigger(scorer, {**_result("a dog", [0, 0]), "base": {"top1": 0.2}})
    assert below["reached"] is False and below["trigger"] == "a dog"


def test_cli_bad_inputs_are_one_line_errors(tmp_path, capsys):
    from membench_eval.cli import main

    out = str(tmp_path / "out")
    assert main(["attribute", "--suite", "mini", "--prompt-id", "mini-t999", "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--prompt-id: 'mini-t999' is not a prompt of suite 'mini'" in err[0]
    assert main(["attribute", "--suite", "mini", "--prompt", "astronaut", "--out", out]) == 2
    assert "'astronaut' has 1 word" in capsys.readouterr().err
    bad = tmp_path / "caps.xml"
    bad.write_text("<x/>", encoding="utf-8")
    assert main(["attribute", "--suite", "mini", "--prompt-id", "mini-t000", "--captions", str(bad), "--out", out]) == 2
    assert "caps.xml: unknown caption file format '.xml'" in capsys.readouterr().err


def test_probe_pairs_each_neutral_prompt_with_its_keyword_version():
    from membench_eval.analysis.probe import probe_items
    from membench_eval.suites import get_suite

    suite = get_suite("mini")
    n_general = len(suite.general.prompts)
    items = probe_items(suite, " astronaut ", n_general + 2)
    assert len(items) == n_general + 2 and len({base for base, _, _ in items}) == n_general + 2  # own seeds each
    assert all(kw == f"{text}, astronaut" for _, text, kw in items)
    assert items[n_general][1] == items[0][1]  # cycled: the same neutral prompt, a new seed
    with pytest.raises(DataError, match="empty keyword"):
        probe_items(suite, "  ", 2)


def test_common_words_of_prompts_sharing_a_memorized_image():
    from membench_eval.analysis.minimal import common_words
    from membench_eval.suites.types import MemorizedImage, Prompt, PromptSet, Suite

    prompts = (Prompt("p0", "The Starry Night by Van Gogh", ("m1",)), Prompt("p1", "van gogh starry night poster", ("m1", "m2")),
               Prompt("p2", "a red poster", ("m2",)))
    suite = Suite("t", "model", trigger=PromptSet("trigger", prompts, 1),
                  memorized={m: MemorizedImage(m, f"{m}.png") for m in ("m1", "m2")})
    got = common_words(suite, ["m1", "m2", "m3"])
    assert got["m1"] == {"n_prompts": 2, "words": ["starry", "night", "van", "gogh"]}
    assert got["m2"] == {"n_prompts": 2, "words": ["poster"]}
    assert got["m3"] == {"n_prompts": 0, "words": []}
