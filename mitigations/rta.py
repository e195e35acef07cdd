"""RTA: Random Token Addition.

Somepalli, Singla, Goldblum, Geiping, Goldstein. "Understanding and Mitigating Copying in
Diffusion Models". NeurIPS 2023. Evaluated as a baseline in MemBench (Hong, Oh, Sung 2024).

A random CLIP token (a random id below 49400, decoded with Stable Diffusion 1.x's tokenizer) is
inserted at a random word position, ``n`` times (MemBench sweeps n = 1..6). Ids 49400..49407 are
excluded as in the reference (they hold the last merges and the start/end tokens).

Differences from the reference, documented: the parameter is called ``n`` (the MemBench README's
flag names do not exist in its code); each image gets its own rewrite from its own seeded RNG,
where the reference drew one rewrite per prompt from a global RNG.

Families (``needs``: nothing): a text rewrite: runs on every family (the token comes from SD 1.x's
CLIP vocabulary whatever the model's tokenizer).
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import TYPE_CHECKING

from membench_eval.errors import MitigationError
from membench_eval.mitigation import Mitigation
from membench_eval.prompt_edits import insert_at_random_word

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

# The reference draws ``np.random.randint(49400)``: ids 0..49399.
TOKEN_ID_LIMIT = 49400


@lru_cache(maxsize=1)
def sd_tokenizer() -> "CLIPTokenizer":
    """SD 1.x's tokenizer, rebuilt offline once per process (the hook has no pipeline)."""
    from membench_eval.models.tokenizer import build_clip_tokenizer

    return build_clip_tokenizer()


class RandomTokenAddition(Mitigation):
    """Inserts ``n`` random decoded CLIP tokens at random word positions of the prompt."""

    name = "rta"
    paper = "Somepalli et al. 2023, Understanding and Mitigating Copying in Diffusion Models"
    sweep = {"n": [1, 2, 3, 4, 5, 6]}
    strongest = {"n": 6}

    n: int = 1

    def __post_init__(self) -> None:
        if self.n < 0:
            raise MitigationError(f"rta: n must be >= 0, got {self.n}")

    def rewrite_prompt(self, prompt: str, rng: random.Random) -> str:
        tokenizer = sd_tokenizer()
        for _ in range(self.n):
            token = tokenizer.decode([rng.randrange(TOKEN_ID_LIMIT)])
            prompt = insert_at_random_word(prompt, token, rng)
        return prompt
