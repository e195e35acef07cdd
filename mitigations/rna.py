"""RNA: Random Number Addition.

Somepalli, Singla, Goldblum, Geiping, Goldstein. "Understanding and Mitigating Copying in
Diffusion Models". NeurIPS 2023. Evaluated as a baseline in MemBench (Hong, Oh, Sung 2024).

A random number 0..99999 is inserted at a random word position, ``n`` times (MemBench sweeps
n = 1..6). Word positions include before the first and after the last word.

Two documented differences from the reference scripts: the parameter is called ``n`` (the flag
names in the MemBench README do not exist in its code), and the harness draws a fresh rewrite for
every image from that image's own seeded RNG, where the reference drew one rewrite per prompt
from a global RNG shared by all its images (which made every image depend on prompt order).
"""

from __future__ import annotations

import random

from membench_eval.errors import MitigationError
from membench_eval.mitigation import Mitigation
from membench_eval.prompt_edits import insert_at_random_word


class RandomNumberAddition(Mitigation):
    """Inserts ``n`` random numbers at random word positions of the prompt."""

    name = "rna"
    paper = "Somepalli et al. 2023, Understanding and Mitigating Copying in Diffusion Models"
    sweep = {"n": [1, 2, 3, 4, 5, 6]}
    strongest = {"n": 6}

    n: int = 1

    def __post_init__(self) -> None:
        if self.n < 0:
            raise MitigationError(f"rna: n must be >= 0, got {self.n}")

    def rewrite_prompt(self, prompt: str, rng: random.Random) -> str:
        for _ in range(self.n):
            prompt = insert_at_random_word(prompt, str(rng.randrange(100_000)), rng)
        return prompt
