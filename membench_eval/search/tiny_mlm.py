"""A tiny word-level BERT masked LM, built offline in a second, for tests (``tiny:<suite>``).

``bert-base-uncased`` cannot be downloaded everywhere (CI, air-gapped machines). Tests of the
search only need *some* masked LM that proposes words, so this builds one with random weights and
a vocabulary made of the words of a suite's prompts: its proposals are near-uniform over that
restricted vocabulary, and the diffusion model's score does the real work through the Gibbs step.
The mini suite's real proposal model is the trained ``mini-mlm`` (``mini_mlm``), whose vocabulary
is split the same way (``split_words``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

if TYPE_CHECKING:
    from transformers import BertForMaskedLM, BertTokenizer

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def split_words(texts: Iterable[str]) -> Iterator[list[str]]:
    """Each text's words as BERT's basic (lower-casing) tokenizer splits them: the units of a
    word-level vocabulary (also used to count words for the trained mini MLM)."""
    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer

    normalizer, pre = BertNormalizer(lowercase=True), BertPreTokenizer()
    for text in texts:
        yield [w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text))]


def word_vocabulary(texts: Iterable[str]) -> list[str]:
    """Sorted distinct words of ``texts`` as BERT's basic (lower-casing) tokenizer splits them."""
    words = {w for ws in split_words(texts) for w in ws}
    return sorted(words - set(SPECIAL_TOKENS))


def build_tiny_mlm(
    texts: Iterable[str], *, seed: int = 0, hidden_size: int = 32, num_layers: int = 2, extra_words: Iterable[str] = ("image", "of", "a")
) -> tuple["BertTokenizer", "BertForMaskedLM"]:
    """A random-weight ``BertForMaskedLM`` whose vocabulary is the words of ``texts``.

    ``extra_words`` makes sure the search prefix ("Image of a") is in the vocabulary.
    """
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    vocab = SPECIAL_TOKENS + word_vocabulary([*texts, " ".join(extra_words)])
    with tempfile.TemporaryDirectory(prefix="membench-tiny-mlm-") as tmp:
        vocab_file = Path(tmp) / "vocab.txt"
        vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
        tokenizer = BertTokenizer(str(vocab_file), do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=2,
        intermediate_size=2 * hidden_size, max_position_embeddings=128, pad_token_id=0,
    )
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = BertForMaskedLM(config).eval()
    finally:
        torch.random.set_rng_state(gen_state)
    return tokenizer, model


def nested_strings(obj: object) -> list[str]:
    """Every string in a JSON value (str, or lists / dicts of them, to any depth), in order."""
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in nested_strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in nested_strings(v)]
    return []


def suite_texts(suite_name: str) -> list[str]:
    """Vocabulary source for ``tiny:<suite>``: the suite's prompts (trigger and general) and, for
    the mini suite, the captions its model was trained on (``training_captions.json``)."""
    import json

    from membench_eval.paths import MINI_CAPTIONS
    from membench_eval.suites.mini import MINI_SUITES
    from membench_eval.suites import get_suite

    suite = get_suite(suite_name)
    texts = [p.text for s in suite.prompt_sets() for p in s.prompts]
    if suite_name in MINI_SUITES and MINI_CAPTIONS.is_file():
        texts += nested_strings(json.loads(MINI_CAPTIONS.read_text(encoding="utf-8")))
    return texts


def tiny_mlm_for_suite(suite_name: str, seed: int = 0) -> tuple["BertTokenizer", "BertForMaskedLM"]:
    """The ``tiny:<suite>`` masked LM: word vocabulary from that suite's prompts."""
    return build_tiny_mlm(suite_texts(suite_name), seed=seed)
