"""Checks on a plugin class when it is loaded, before anything runs: a method that would silently run
as base, or a parameter outside its declared bounds, is an error naming the file and the field.

Why: the engine calls hooks by name, so ``rewrite_promt`` (a typo) was never called and the method ran
as base (exit 0, delta 0.000, images generated for nothing); ``--param p=2`` for a probability ran too.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from typing import Any

from membench_eval.mitigation import Mitigation

# How close a name must be to a hook's to be read as a misspelling of it (difflib's ratio): catches
# ``rewrite_promt``, ``edit_embedding``, ``scroe``; helpers such as ``setup_state`` stay allowed.
NEAR_MISS = 0.8
NOT_HOOKS = frozenset({"overrides"})


def hook_names(base: type) -> list[str]:
    """The hooks a plugin base class declares: its public methods (``setup``, ``rewrite_prompt``, ...)."""
    return [n for n, v in vars(base).items() if inspect.isfunction(v) and not n.startswith("_") and n not in NOT_HOOKS]


def check_class(cls: type, base: type, *, where: str, noun: str) -> list[str]:
    """The problems of plugin class ``cls`` (empty when it is fine); see the module docstring."""
    hooks = hook_names(base)
    problems = []
    for name, value in vars(cls).items():
        if name.startswith("_") or name in hooks or not inspect.isfunction(value):
            continue
        close = difflib.get_close_matches(name, hooks, n=1, cutoff=NEAR_MISS)
        if close:
            problems.append(f"{where}: {noun} {cls.name!r} defines {name!r}, which is no hook; did you mean "
                            f"{close[0]!r}? (hooks: {', '.join(hooks)})")
    if issubclass(cls, Mitigation) and not getattr(cls, "baseline", False):
        if not any(getattr(cls, h) is not getattr(Mitigation, h) for h in hooks):
            problems.append(f"{where}: {noun} {cls.name!r} overrides no hook ({', '.join(hooks)}), so it would run "
                            "as base; override one, or set `baseline = True` if it is a baseline on purpose")
    return problems


def check_bounds(obj: Any, *, where: str, noun: str) -> list[str]:
    """Fields declared with ``hyperparams.bounded`` whose value lies outside its bounds."""
    problems = []
    for f in dataclasses.fields(obj) if dataclasses.is_dataclass(obj) else ():
        low, high = f.metadata.get("bounds", (None, None))
        value = getattr(obj, f.name)
        if value is None or (low is None and high is None):
            continue
        if (low is not None and value < low) or (high is not None and value > high):
            span = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
            problems.append(f"{where}: parameter {f.name!r} of {noun} {obj.name!r} is {value!r}, outside {span}")
    return problems
