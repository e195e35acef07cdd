"""Content-addressed stage cache for extraction runs: ``<store>/extraction/<stage>/<key>.npz``.

Why: SIDE is a chain of costly stages (a pool of generations, its SSCD embeddings, a clustering, a
trained classifier, guided generations), and a rerun, a resumed run (Ctrl-C) or a second method
sharing a stage must reuse what is already paid for, and never what other settings produced.

Each entry's key is the sha256 of the canonical JSON of its ``fields`` (stage name, the runner's code
version, the method's identity, the model's identity and every setting the stage depends on). Beside
the ``.npz`` (plain arrays, read with ``allow_pickle=False``) a ``<key>.json`` holds the fields and
the ``.npz``'s sha256; on read both are checked (key == hash(fields), file hash == recorded), and a
damaged or foreign entry is recomputed and overwritten. Writes go to a temporary file first, then
``os.replace``: a killed run leaves whole entries or none.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from membench_eval.store.atomic import write_atomic
from membench_eval.store.keys import image_key
from membench_eval.store.format import open_store_root

AREA = "extraction"
CACHE_SCHEME = "membench-extraction-cache/v1"


class StageCache:
    """The extraction area of one run store. ``computed`` / ``reused`` count stages per name, so a
    caller (and a test) can see that a second run did no work; ``problems`` lists damaged entries."""

    def __init__(self, root: str | os.PathLike):
        self.root = open_store_root(root)
        self.folder = self.root / AREA
        self.computed: Counter[str] = Counter()
        self.reused: Counter[str] = Counter()
        self.problems: list[str] = []

    def paths(self, stage: str, key: str) -> tuple[Path, Path]:
        folder = self.folder / stage
        return folder / f"{key}.npz", folder / f"{key}.json"

    def get_or_compute(self, stage: str, fields: dict[str, Any],
                       compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The stored arrays of ``(stage, fields)``, or ``compute()``'s, stored first."""
        if not stage.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"stage name {stage!r}: use letters, digits, '-' and '_'")
        full = {"scheme": CACHE_SCHEME, "stage": stage, **fields}
        key = image_key(full)
        found = self._read(stage, key, full)
        if found is not None:
            self.reused[stage] += 1
            return found
        arrays = compute()
        if not isinstance(arrays, dict) or not all(isinstance(v, np.ndarray) for v in arrays.values()):
            raise TypeError(f"stage {stage!r}: compute() must return a dict of numpy arrays")
        self._write(stage, key, full, arrays)
        self.computed[stage] += 1
        return arrays

    def _read(self, stage: str, key: str, fields: dict[str, Any]) -> dict[str, np.ndarray] | None:
        data_path, meta_path = self.paths(stage, key)
        if not (data_path.is_file() and meta_path.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            blob = data_path.read_bytes()
            if meta.get("key") != key or image_key(meta.get("fields", {})) != key:
                raise ValueError("key does not match its fields")
            if hashlib.sha256(blob).hexdigest() != meta.get("npz_sha256"):
                raise ValueError("npz content does not match its recorded sha256")
            with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
                return {name: npz[name] for name in npz.files}
        except (OSError, ValueError) as exc:
            self.problems.append(f"{data_path}: {exc}; recomputed")
            return None

    def _write(self, stage: str, key: str, fields: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        data_path, meta_path = self.paths(stage, key)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        blob = buf.getvalue()
        meta = {"key": key, "fields": fields, "npz_sha256": hashlib.sha256(blob).hexdigest()}
        write_atomic(data_path, blob)
        write_atomic(meta_path, (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode("utf-8"))
