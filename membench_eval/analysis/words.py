"""A prompt's words and BPE tokens, and the prompt variants that attribution scores.

Why a module of its own: attribution (``attribution.py``), the minimal-trigger search
(``minimal.py``) and caption statistics (``duplication.py``) must agree on what a "word" is, or a
word's trigger effect could not be put next to its duplication score. A word is a run of ``\\w``
characters (``bricks25`` is one word, ``falcon 9`` two), compared lower-cased; punctuation is kept
in the text but is not a word. Tokens are the real CLIP BPE pieces of each word
(``models.tokenizer``): the text encoder sees ``<|startoftext|>`` then these pieces, so token ``j``
of the prompt sits at position ``j + 1`` of the conditioning sequence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from membench_eval.errors import DataError

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

_WORD = re.compile(r"\w+", re.UNICODE)
_PIECE = re.compile(r"\w+|[^\w\s]+", re.UNICODE)


@dataclass(frozen=True)
class Word:
    """One word of a prompt: its text as written, its character span, its BPE token indices."""

    index: int
    text: str
    start: int
    end: int
    tokens: tuple[int, ...] = ()

    @property
    def key(self) -> str:
        """The word as counted in caption statistics (lower case)."""
        return self.text.lower()


@dataclass(frozen=True)
class Token:
    """One BPE token of a prompt (``index`` among the prompt's tokens, 0 = the first after BOS)."""

    index: int
    text: str
    word: int | None  # index of the word it belongs to; None for punctuation
    raw: str = ""  # the vocabulary string (end-of-word pieces carry ``</w>``)


def words_of(text: str) -> list[str]:
    """The lower-cased words of ``text`` (what caption statistics count)."""
    return [m.group(0).lower() for m in _WORD.finditer(text)]


def split_prompt(text: str, tokenizer: "CLIPTokenizer | None" = None) -> tuple[list[Word], list[Token]]:
    """Words and BPE tokens of ``text``; raises DataError for a prompt of fewer than two words
    (removing its only word leaves nothing to compare with)."""
    matches = list(_WORD.finditer(text))
    if len(matches) < 2:
        raise DataError("prompt", f"{text!r} has {len(matches)} word(s); attribution needs at least two "
                        "(each word's effect is measured by removing it)")
    words = [Word(i, m.group(0), m.start(), m.end()) for i, m in enumerate(matches)]
    if tokenizer is None:
        return words, []
    tokens: list[Token] = []
    by_start = {w.start: w for w in words}
    for piece in _PIECE.finditer(text):
        word = by_start.get(piece.start())
        for tok in tokenizer.tokenize(piece.group(0)):
            tokens.append(Token(len(tokens), tok.replace("</w>", ""), None if word is None else word.index, tok))
    words = [Word(w.index, w.text, w.start, w.end, tuple(t.index for t in tokens if t.word == w.index)) for w in words]
    return words, tokens


def _tidy(text: str) -> str:
    """Collapse the spaces a removal leaves, and a space before punctuation."""
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    return re.sub(r"^[,.;:!?]\s*", "", text)


def without_words(text: str, words: list[Word], drop: set[int]) -> str:
    """``text`` with the words whose indices are in ``drop`` removed (punctuation kept)."""
    out, pos = [], 0
    for w in words:
        if w.index in drop:
            out.append(text[pos:w.start])
            pos = w.end
    out.append(text[pos:])
    return _tidy("".join(out))


def replaced_word(text: str, word: Word, neutral: str) -> str:
    """``text`` with ``word`` replaced by ``neutral``."""
    return text[:word.start] + neutral + text[word.end:]


def without_token(tokenizer: "CLIPTokenizer", tokens: list[Token], drop: int) -> str:
    """The prompt's BPE tokens without token ``drop``, decoded back to text (a piece removed from
    inside a word joins its neighbours, as the text encoder would see them without it)."""
    ids = tokenizer.convert_tokens_to_ids([t.raw for t in tokens if t.index != drop])
    return _tidy(tokenizer.decode(ids))
