"""Which prompts are statistically dependent: clusters for the bootstrap.

MemBench's trigger prompts are not independent draws: many prompts point at the same memorized
image (SD1: 3000 prompts, 151 images), and some prompts point at several images. Resampling prompts
as if they were independent would give intervals that are too narrow. We resample *clusters*:

- ``components`` (default): connected components of the graph "two prompts are linked when they
  share a memorized image". Every dependence through a shared image stays inside one cluster, so
  the bootstrap is honest (conservative when a few prompts bridge large groups). On SD1_final.csv
  this gives 53 clusters (largest 791 prompts).
- ``first``: each prompt belongs to its first listed memorized image (130 clusters on SD1). Finer,
  but prompts listing several images leak dependence across clusters.

Prompts with no memorized image (general/COCO prompts) are each their own cluster.
Labels are deterministic: clusters are numbered by their smallest prompt id, so the same set of
prompts gives the same labels in any order (serial and xdist runs agree).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

ClusterMethod = Literal["components", "first"]
CLUSTER_METHODS: tuple[str, ...] = ("components", "first")


def cluster_labels(
    prompt_ids: Sequence[str],
    memorized_ids: Sequence[Sequence[str]],
    method: ClusterMethod = "components",
) -> np.ndarray:
    """One integer cluster label per prompt (aligned with ``prompt_ids``)."""
    if len(prompt_ids) != len(memorized_ids):
        raise ValueError(f"{len(prompt_ids)} prompt ids but {len(memorized_ids)} memorized-id lists")
    if method not in CLUSTER_METHODS:
        raise ValueError(f"unknown cluster method {method!r}; choose one of {CLUSTER_METHODS}")

    parent: dict[str, str] = {}

    def find(x: str) -> str:
        root = x
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    keys: list[str] = []
    for pid, mids in zip(prompt_ids, memorized_ids):
        node = "p:" + str(pid)
        find(node)
        if mids:
            images = ["i:" + m for m in mids] if method == "components" else ["i:" + mids[0]]
            for image in images:
                union(node, image)
        keys.append(node)

    roots = [find(k) for k in keys]
    # Number clusters by their smallest prompt id so labels do not depend on input order.
    smallest: dict[str, str] = {}
    for root, pid in zip(roots, prompt_ids):
        pid = str(pid)
        if root not in smallest or pid < smallest[root]:
            smallest[root] = pid
    order = {root: i for i, root in enumerate(sorted(smallest, key=smallest.__getitem__))}
    return np.array([order[r] for r in roots], dtype=np.int64)
