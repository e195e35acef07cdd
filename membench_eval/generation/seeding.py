"""Per-image seeds: every (prompt id, image index) gets its own seed, derived from the run seed.

The reference code seeds once per run, so its images depend on prompt order and batching. Here an
image's noise comes only from ``image_seed(run_seed, prompt_id, image_index)`` through its own
``torch.Generator``, so batch size, prompt order and the worker that runs it change nothing.

Derivation (stable across Python versions and machines; never Python's salted ``hash``)::

    image_seed = int.from_bytes(sha256(f"membench-image-seed/v1|{run_seed}|{prompt_id}|{image_index}")[:8], "big") >> 1

i.e. the first 63 bits of a SHA-256, a valid ``torch.Generator.manual_seed`` value. The random
module RNG given to mitigations (``rewrite_prompt``) is seeded from a second, independent hash of
the image seed, so a method's random choices are not correlated with the initial noise.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from membench_eval.mitigation import ImageRequest
    from membench_eval.suites.types import Prompt

SEED_SCHEME = "membench-image-seed/v1"


def _hash63(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


def image_seed(run_seed: int, prompt_id: str, image_index: int) -> int:
    """The seed of one image: a 63-bit hash of (run seed, prompt id, image index)."""
    return _hash63(f"{SEED_SCHEME}|{int(run_seed)}|{prompt_id}|{int(image_index)}")


def rng_seed(seed: int) -> int:
    """Seed of the per-image ``random.Random`` handed to mitigations (independent of the noise)."""
    return _hash63(f"membench-method-rng/v1|{int(seed)}")


def make_generator(seed: int, device: "torch.device | str" = "cpu") -> "torch.Generator":
    """A generator on ``device`` (CUDA generators on CUDA, so noise is drawn where it is used)."""
    import torch

    dev = torch.device(device)
    gen = torch.Generator(device=dev if dev.type in ("cuda", "cpu", "mps", "xpu") else "cpu")
    return gen.manual_seed(int(seed))


def make_rng(seed: int) -> random.Random:
    return random.Random(rng_seed(seed))


def plan_requests(prompts: Iterable["Prompt"], images_per_prompt: int, run_seed: int) -> list["ImageRequest"]:
    """One ImageRequest per (prompt, image index), each with its own derived seed."""
    from membench_eval.mitigation import ImageRequest

    return [
        ImageRequest(prompt_id=p.prompt_id, prompt=p.text, image_index=i, seed=image_seed(run_seed, p.prompt_id, i))
        for p in prompts
        for i in range(int(images_per_prompt))
    ]
