"""Base: no mitigation. The row every method is compared against (MemBench's "Base").

Generation runs exactly as the suite defines it (for SD1: DDIM, 50 steps, guidance 7.5, 512x512).
"""

from membench_eval.mitigation import Mitigation


class Base(Mitigation):
    """Changes nothing; every hook keeps its default."""

    name = "base"
    paper = "MemBench (Hong, Oh, Sung 2024), baseline row"
    baseline = True  # overrides no hook on purpose
