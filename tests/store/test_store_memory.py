"""The run store's in-memory index holds rows, never image bytes or decoded images: a run's host
memory must not grow with the images it writes or reads (bench/cost_scaling.py measures the
whole run; this pins the store's part of it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from membench_eval.store.run_store import RunStore

BIG = 1024  # bytes: a 64x64 noise PNG is ~12 KiB, any row value is far below


def _reachable(obj: Any, seen: set[int] | None = None) -> Iterator[Any]:
    """Objects reachable from ``obj`` through containers and membench objects' attributes."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    if isinstance(obj, dict):
        children = [*obj.keys(), *obj.values()]
    elif isinstance(obj, (list, tuple, set, frozenset)):
        children = list(obj)
    elif type(obj).__module__.startswith("membench_eval") and hasattr(obj, "__dict__"):
        children = list(vars(obj).values())
    else:
        children = []
    for child in children:
        yield from _reachable(child, seen)


def _payloads(store: RunStore) -> list[str]:
    out = []
    for obj in _reachable(store):
        if isinstance(obj, (bytes, bytearray, memoryview)) and len(obj) >= BIG:
            out.append(f"{type(obj).__name__} of {len(obj)} bytes")
        elif isinstance(obj, Image.Image) or (isinstance(obj, np.ndarray) and obj.nbytes >= BIG):
            out.append(type(obj).__name__)
    return out


def test_index_holds_no_image_bytes_after_writes_reads_and_reopen(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    keys = [f"{i:064x}" for i in range(6)]
    with RunStore(tmp_path) as store:
        for i, key in enumerate(keys):
            store.put_image(key, Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), {"i": i})
            store.put_score(key, "sscd_similarities", "b", {"m0": 0.5})
        assert store.image_path(keys[0]).stat().st_size > 4 * BIG  # the check below could see one
        images = [store.get_image(k) for k in keys]
        assert all(store.has(k) for k in keys)
        assert _payloads(store) == []
    del images
    with RunStore(tmp_path) as fresh:  # a rerun: rows read back, every PNG verified and decoded
        assert all(fresh.has(k) for k in keys) and len(fresh) == len(keys)
        _ = [fresh.get_image(k) for k in keys]
        assert _payloads(fresh) == []
        assert fresh.get_score(keys[0], "sscd_similarities", "b") == {"m0": 0.5}


def test_the_check_sees_a_cached_payload(tmp_path: Path) -> None:
    """The walk reaches the store's attributes and the containers they hold: a PNG kept in a row
    cached in memory would be found (the index's rows live in SQLite on disk, not in RAM)."""
    rng = np.random.default_rng(1)
    with RunStore(tmp_path) as store:
        key = "a" * 64
        store.put_image(key, Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), {})
        store.row_cache = {key: {**store.record(key), "cached": store.image_path(key).read_bytes()}}
        assert _payloads(store) and "bytes" in _payloads(store)[0]
