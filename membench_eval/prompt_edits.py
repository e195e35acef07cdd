"""Prompt-text edits shared by prompt-rewriting mitigations (RNA, RTA, and methods built on them)."""

from __future__ import annotations

import random


def insert_at_random_word(prompt: str, word: str, rng: random.Random) -> str:
    """Insert ``word`` between words (or at either end) of ``prompt``, as the reference does."""
    words = prompt.split(" ")
    words.insert(rng.randint(0, len(words)), word)
    return " ".join(words)
