"""The labelled prompt set a detector is evaluated on: memorized vs non-memorized prompts.

A suite's set is its trigger prompts (memorized; their memorized-image ids say which prompts are
dependent, for the cluster bootstrap) against its general prompts. Prompt files (``--prompts`` /
``--against``) carry no image ids, so each memorized prompt is its own cluster; their prompt ids
are derived from the text (``mem-<sha256[:12]>``), so a prompt keeps its id, its seed and thus its
stored score wherever it sits in the file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from membench_eval.errors import DataError
from membench_eval.suites.types import Prompt

if TYPE_CHECKING:
    import numpy as np

    from membench_eval.suites.types import Suite


@dataclass(frozen=True)
class DetectionSet:
    """Memorized (positive) and non-memorized (negative) prompts, with a name for the outputs."""

    name: str  # file stem of the leaderboard: ``mini``, ``sd1.mem-vs-non``, ``mini.limit-3``
    suite: str
    memorized: tuple[Prompt, ...]
    nonmemorized: tuple[Prompt, ...]
    description: str = ""

    def __post_init__(self) -> None:
        ids = [p.prompt_id for p in self.prompts]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise DataError(self.description or self.name, f"prompt id {dup!r} appears twice in the prompt set")

    @property
    def prompts(self) -> tuple[Prompt, ...]:
        return self.memorized + self.nonmemorized

    @property
    def two_classes(self) -> bool:
        return bool(self.memorized) and bool(self.nonmemorized)

    def labels(self) -> "np.ndarray":
        """1 for memorized, 0 for non-memorized, aligned with ``prompts``."""
        import numpy as np

        return np.array([1] * len(self.memorized) + [0] * len(self.nonmemorized), dtype=np.int64)

    def clusters(self) -> "np.ndarray":
        """Cluster label per prompt: memorized prompts sharing a memorized image are one cluster
        (``stats.cluster_labels``, components); every other prompt is its own."""
        from membench_eval.stats import cluster_labels

        prompts = self.prompts
        return cluster_labels([p.prompt_id for p in prompts], [p.memorized_ids for p in prompts])


def _limit(items: tuple[Prompt, ...], limit: int | None) -> tuple[Prompt, ...]:
    return items if limit is None else items[: int(limit)]


def _stem(base: str, limit: int | None) -> str:
    return base if limit is None else f"{base}.limit-{int(limit)}"


def suite_detection_set(suite: "Suite", limit: int | None = None) -> DetectionSet:
    """The suite's trigger prompts (memorized) against its general prompts."""
    if suite.trigger is None or suite.general is None:
        raise DataError(f"suite {suite.name!r}", "lacks trigger or general prompts; pass --prompts FILE "
                        "(and --against FILE)")
    mem, non = _limit(suite.trigger.prompts, limit), _limit(suite.general.prompts, limit)
    return DetectionSet(_stem(suite.name, limit), suite.name, mem, non,
                        f"suite {suite.name}: {len(mem)} trigger prompts (memorized) vs {len(non)} general prompts")


def file_prompts(path: str | Path, prefix: str) -> tuple[Prompt, ...]:
    """The prompts of a .txt / .jsonl / .csv list, with ids from their text (a repeat gets ``~2``)."""
    from membench_eval.detection.prompt_files import read_prompt_file

    out, seen = [], {}
    for text in read_prompt_file(path):
        base = f"{prefix}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}"
        seen[base] = seen.get(base, 0) + 1
        out.append(Prompt(base if seen[base] == 1 else f"{base}~{seen[base]}", text))
    return tuple(out)


def file_detection_set(suite: str, prompts: str | Path, against: str | Path | None = None,
                       limit: int | None = None) -> DetectionSet:
    """``prompts`` (memorized) against ``against`` (non-memorized; none: a one-class set)."""
    mem = _limit(file_prompts(prompts, "mem"), limit)
    non = _limit(file_prompts(against, "non"), limit) if against is not None else ()
    stem = Path(prompts).stem + (f"-vs-{Path(against).stem}" if against is not None else "")
    desc = f"{len(mem)} prompts of {prompts} (memorized)" + (
        f" vs {len(non)} prompts of {against}" if against is not None else " (no non-memorized prompts)")
    return DetectionSet(_stem(f"{suite}.{stem}", limit), suite, mem, non, desc)
