"""The real Stable Diffusion 1.x / OpenAI CLIP tokenizer, built offline.

SD 1.x uses OpenAI CLIP's BPE tokenizer. Its vocabulary ships inside open_clip as
``bpe_simple_vocab_16e6.txt.gz``, so the exact tokenizer can be rebuilt without a download.
Tiny pipelines (the miniature benchmark, tests) use it so token ids, lengths and the 77-token
truncation behave exactly as with the real model.
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

# Same slice as open_clip.tokenizer.SimpleTokenizer: 49152 - 256 - 2 merges.
_N_MERGES = 49152 - 256 - 2
CLIP_VOCAB_SIZE = 49408
CLIP_CONTEXT_LENGTH = 77


def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def bpe_vocab_path() -> str:
    import open_clip

    return os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")


@lru_cache(maxsize=1)
def _vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    with gzip.open(bpe_vocab_path(), "rt", encoding="utf-8") as f:
        merges = f.read().split("\n")[1 : _N_MERGES + 1]
    byte_chars = list(_bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    assert len(tokens) == CLIP_VOCAB_SIZE, len(tokens)
    return {t: i for i, t in enumerate(tokens)}, merges


def build_clip_tokenizer() -> "CLIPTokenizer":
    """Return a ``transformers.CLIPTokenizer`` identical to SD 1.x's ``tokenizer/`` folder."""
    from transformers import CLIPTokenizer

    vocab, merges = _vocab_and_merges()
    return CLIPTokenizer(vocab=dict(vocab), merges=[tuple(m.split()) for m in merges], model_max_length=CLIP_CONTEXT_LENGTH)
