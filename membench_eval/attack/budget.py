"""Algorithm 2 under a fixed attacker budget: how wide and how long the chains may be.

The budget is counted in scored candidate prompts per memorized image: each is one conditional
UNet evaluation of the attacker's signal at t = 999 (plus, measured and reported beside it, the
unconditional rows and whatever extra UNet work the mitigation's own hooks cost). It is the same
for every method, so a method's row and base's are comparable.

Algorithm 2 runs one chain per word position of each origin prompt; every step scores ``top_k``
candidates. Under a budget ``B`` with ``P`` chains in all: ``top_k = min(k, B // P, vocabulary)``
(the reference's 200 when the budget allows) and ``steps = min(max_steps, B // (P * top_k))``,
so ``P * steps * top_k <= B`` always (chains may stop early and spend less).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from membench_eval.attack.signal import AttackError

# Fewest candidates a step may score: with one the softmax has nothing to choose between.
MIN_TOP_K = 2


@dataclass(frozen=True)
class BudgetPlan:
    """The chain shape a budget buys: ``chains`` chains of ``steps`` steps of ``top_k`` candidates."""

    budget: int
    chains: int
    top_k: int
    steps: int

    @property
    def max_candidates(self) -> int:
        return self.chains * self.steps * self.top_k

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "max_candidates": self.max_candidates}


def plan_budget(budget: int, chains: int, *, top_k: int = 200, max_steps: int = 50, vocabulary: int | None = None) -> BudgetPlan:
    """The widest, then longest, chains that fit ``budget`` candidates (module docstring)."""
    if chains < 1:
        raise AttackError(f"attack: no word position to search (chains {chains})")
    if top_k < MIN_TOP_K or max_steps < 1:
        raise AttackError(f"attack: --top-k must be >= {MIN_TOP_K} and steps >= 1, got top_k {top_k}, steps {max_steps}")
    width = min(top_k, budget // chains, vocabulary if vocabulary is not None else top_k)
    if width < MIN_TOP_K:
        raise AttackError(f"attack budget {budget} is too small: {chains} word positions need at least "
                          f"{MIN_TOP_K * chains} candidates (--budget >= {MIN_TOP_K * chains})")
    steps = min(max_steps, budget // (chains * width))
    return BudgetPlan(budget=int(budget), chains=int(chains), top_k=int(width), steps=int(steps))
