"""The mini suite's proposal masked LM (``mini-mlm``): shipped small and checksum-verified, loads
offline, has clearly more words than the search's top-k, knows every mini word, proposes words
that fit the context, and predicts held-out COCO words far better than word frequency does."""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from membench_eval.errors import MissingWeightsError
from membench_eval.search.mini_mlm import (
    MINI_MLM_DIR,
    MINI_MLM_SPEC,
    load_mini_mlm,
    verify_mini_mlm,
)

REBUILD = "re-run `python benchmark_data/mini/mlm_stage.py`"
COCO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco" / "captions_val2017.json"


@pytest.fixture(scope="module")
def metrics() -> dict:
    return json.loads((MINI_MLM_DIR / "metrics.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def mlm():
    import torch

    from membench_eval.search.mlm import load_masked_lm

    torch.set_num_threads(1)
    return load_masked_lm(MINI_MLM_SPEC, device="cpu")


def test_is_the_mini_default_and_has_clearly_more_words_than_the_search_top_k(mlm):
    from membench_eval.search.mlm import default_mlm
    from membench_eval.search.gibbs import ChainConfig
    from membench_eval.search.tiny_mlm import suite_texts

    assert default_mlm("mini") == MINI_MLM_SPEC and default_mlm("sd1") != MINI_MLM_SPEC
    k = ChainConfig().top_k
    assert mlm.n_allowed() >= 10 * k, (mlm.n_allowed(), k)
    # Every word the mini model was trained on or is prompted with can be proposed.
    tok = mlm.tokenizer
    unknown = [t for t in suite_texts("mini") if tok.unk_token_id in tok(t, add_special_tokens=False)["input_ids"]]
    assert not unknown, f"mini texts with words outside the MLM vocabulary: {unknown[:3]}; {REBUILD}"


def test_folder_is_small_and_loads_offline_as_fp32(monkeypatch):
    import torch
    from safetensors import safe_open

    files = [f for f in MINI_MLM_DIR.iterdir() if f.is_file()]
    assert sum(f.stat().st_size for f in files) <= 5 * 2**20
    with safe_open(MINI_MLM_DIR / "model.safetensors", "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}  # noqa: SIM118 (shipped as fp16)

    def no_network(*args, **kwargs):
        raise AssertionError("the mini MLM must load without the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    tokenizer, model = load_mini_mlm()
    assert type(model).__name__ == "BertForMaskedLM" and next(model.parameters()).dtype == torch.float32
    assert tokenizer.mask_token == "[MASK]" and len(tokenizer) == model.config.vocab_size


def test_missing_or_corrupted_files_are_one_line_errors_naming_the_file(tmp_path: Path):
    copy = tmp_path / "mlm"
    shutil.copytree(MINI_MLM_DIR, copy)
    sums = json.loads((copy / "checksums.json").read_text())
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(sums)
    assert verify_mini_mlm(copy) == copy
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(MissingWeightsError, match=rf"^{re.escape(str(weights))}: mini MLM file is corrupted \(sha256 .*, "
                                                  rf"expected {sums[weights.name]}\); rebuild it with"):
        load_mini_mlm(copy)
    weights.unlink()
    with pytest.raises(MissingWeightsError, match=rf"^{re.escape(str(weights))}: mini MLM file missing "
                                                  rf"\(expected sha256 {sums[weights.name]}\)"):
        load_mini_mlm(copy)
    (copy / "checksums.json").unlink()
    with pytest.raises(MissingWeightsError) as err:
        load_mini_mlm(copy)
    assert "\n" not in str(err.value) and str(copy / "checksums.json") in str(err.value)


@pytest.mark.parametrize("context, fitting", [
    ("man riding a [MASK]", {"horse", "bike", "bicycle", "skateboard", "surfboard", "motorcycle", "wave", "elephant"}),
    ("cat sitting on a [MASK]", {"couch", "bed", "chair", "table", "desk", "laptop", "car", "bench", "toilet", "sofa"}),
    ("plate of [MASK] on a table", {"food", "pizza", "vegetables", "broccoli", "meat", "fries", "sandwich", "cake"}),
])
def test_proposals_fit_the_context(mlm, context, fitting):
    """Through the search's own proposal call (prefix "Image of a", banned tokens): the top 20 of
    4198 words, a tenth of the search's k. Measured: horse 4th for the rider, couch 5th for the cat.
    (The cup is checked against the k = 200 candidates below: coffee is 61st there, 12th with the
    LM trained on v1's texts; COCO has only 17 "cup of coffee" captions.)"""
    slots = mlm.encode_words(context)
    top = [mlm.token(i) for i in mlm.propose(slots, slots.index(mlm.mask_id), k=20)]
    assert fitting & set(top), (context, top)


def test_a_word_is_a_candidate_where_it_fits_and_not_elsewhere(mlm):
    """Among the search's k = 200 candidates, context decides: coffee is a candidate for a cup (61st)
    and not for a rider; horse is a top-20 word for the rider and not a candidate for the cup (a
    random model fails this)."""
    from membench_eval.search.gibbs import ChainConfig

    def candidates(context: str) -> list[str]:
        slots = mlm.encode_words(context)
        return [mlm.token(i) for i in mlm.propose(slots, slots.index(mlm.mask_id), k=ChainConfig().top_k)]

    cup, ride = candidates("cup of [MASK] on a table"), candidates("man riding a [MASK]")
    assert "coffee" in cup and "coffee" not in ride, (cup[:20], "coffee" in ride)
    assert "horse" in ride[:20] and "horse" not in cup, (ride[:20], "horse" in cup)


def test_beats_the_unigram_baseline_on_held_out_captions(mlm, metrics):
    """The recorded validation figures, then a fresh check on 100 held-out COCO captions: every
    word masked in turn, top-1 against always guessing the most frequent training word."""
    import torch

    v = metrics["validation"]
    assert v["model"]["top1"] >= v["unigram"]["top1"] + 0.15 and v["model"]["top10"] >= v["unigram"]["top10"] + 0.15
    assert v["model"]["perplexity"] <= v["unigram"]["perplexity"] / 3, v
    assert metrics["data"]["val_rule"] == "image_id % 10 == 0"
    if not COCO.is_file():
        pytest.skip(f"{COCO} not found: recorded figures checked, recomputation skipped")
    annotations = json.loads(COCO.read_text(encoding="utf-8"))["annotations"]
    captions = [a["caption"] for a in annotations if a["image_id"] % 10 == 0][:100]
    tok, model = mlm.tokenizer, mlm.model
    rows, targets = [], []
    for ids in tok(captions)["input_ids"]:
        for pos in range(1, len(ids) - 1):
            if ids[pos] != tok.unk_token_id:
                rows.append((ids[:pos] + [tok.mask_token_id] + ids[pos + 1:], pos))
                targets.append(ids[pos])
    hits = []
    with torch.inference_mode():
        for start in range(0, len(rows), 128):
            chunk = rows[start:start + 128]
            width = max(len(r) for r, _ in chunk)
            ids = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r, _ in chunk])
            att = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r, _ in chunk])
            logits = model(input_ids=ids, attention_mask=att).logits
            hits += logits[torch.arange(len(chunk)), [p for _, p in chunk]].argmax(-1).tolist()
    model_top1 = float(np.mean(np.array(hits) == np.array(targets)))
    unigram_top1 = float(np.mean(np.array(targets) == tok.convert_tokens_to_ids(v["unigram_top1_word"])))
    assert model_top1 >= unigram_top1 + 0.15, (model_top1, unigram_top1)
    assert abs(model_top1 - v["model"]["top1"]) <= 0.07, (model_top1, v["model"]["top1"])
