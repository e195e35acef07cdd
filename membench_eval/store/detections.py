"""Detector scores in the run store: ``<store>/detections/<shard>.jsonl``, one row per scored prompt.

Why in the store: a detector over a few thousand prompts on SD costs GPU hours, so a rerun, a
resumed run (Ctrl-C, a killed job) or a leaderboard rebuild must reuse every score already paid for,
and must never reuse one that a different detector, parameter, code or model produced.

Each row is content-addressed like an image: its ``key`` is the sha256 of the canonical JSON of
``fields`` (``detection_key_fields``: the detector's name, parameters and source hash, the runner's
code version, the model identity, the settings, the prompt text and the prompt's seed), and carries
``row_sha256``, the hash of its own content. On read both are checked, and the score must be a
finite number; a row failing any check is ignored (the prompt is scored again) and reported in
``problems``. Rows are appended one whole line per write (``store.jsonl``), each writer to its own
shard, so a killed run leaves every finished batch readable; the first valid row of a key wins.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from membench_eval.errors import DataError
from membench_eval.store.jsonl import AppendOnlyJsonl, read_new_rows, dumps_line
from membench_eval.store.keys import image_key
from membench_eval.store.format import default_shard_id, open_store_root, row_checksum

DETECTION_KEY_SCHEME = "membench-detection-key/v1"
AREA = "detections"


def detection_key_fields(
    *,
    detector: str,
    params: dict[str, Any],
    detector_source: str,
    runner: str,
    model: dict[str, Any] | None,
    prompt: str,
    seed: int,
    num_inference_steps: int,
    guidance_scale: float,
    height: int,
    width: int,
) -> dict[str, Any]:
    """The dict a detection key is the hash of. ``model`` is None for a text-only detector (its
    scores do not depend on a model, so they are shared by every model)."""
    return {
        "scheme": DETECTION_KEY_SCHEME,
        "detector": str(detector),
        "params": dict(params),
        "detector_source": str(detector_source),
        "runner": str(runner),
        "model": None if model is None else dict(model),
        "prompt": str(prompt),
        "seed": int(seed),
        "num_inference_steps": int(num_inference_steps),
        "guidance_scale": float(guidance_scale),
        "height": int(height),
        "width": int(width),
    }


def detection_key(fields: dict[str, Any]) -> str:
    """64 hex characters: sha256 of the canonical JSON of ``fields``."""
    return image_key(fields)


class DetectionStore:
    """The detection rows of one run store; ``refresh`` reads what other writers appended."""

    def __init__(self, root: str | os.PathLike, *, shard: str | None = None):
        self.root = open_store_root(root)
        self.shard = shard or default_shard_id()
        self.folder = self.root / AREA
        self._file = AppendOnlyJsonl(self.folder / f"{self.shard}.jsonl")
        self._rows: dict[str, dict[str, Any]] = {}
        self._offsets: dict[Path, tuple[int, int]] = {}
        # Damaged rows found by this process: one line each, for the run's summary.
        self.problems: list[str] = []
        self.refresh()

    def refresh(self) -> None:
        """Read the rows appended since the last refresh (incremental per shard)."""
        for path in sorted(self.folder.glob("*.jsonl")):
            for number, row in self._new_rows(path):
                why = _damage(row)
                if why is not None:
                    self.problems.append(f"{path}, row {number}: {why}; ignored (that prompt is scored again), "
                                         f"key {row.get('key')}")
                    continue
                self._rows.setdefault(row["key"], row)

    def _new_rows(self, path: Path) -> list[tuple[int, dict[str, Any]]]:
        """(line number, row) of the complete lines appended to ``path`` since the last read."""
        return read_new_rows(path, self._offsets)

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored row of ``key`` (checked when read), or None."""
        return self._rows.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def rows(self) -> list[dict[str, Any]]:
        return list(self._rows.values())

    def put_many(self, rows: Iterable[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Append ``(key, row)`` pairs (each row holds ``fields`` and ``score``); a key already
        stored is kept as it is (the first wins). Returns the rows as they will read back."""
        out = []
        for key, row in rows:
            if key in self._rows:
                out.append(self._rows[key])
                continue
            full = {"key": key, **row, "shard": self.shard, "time": time.time()}
            try:
                full = _roundtrip(full)
            except (TypeError, ValueError) as exc:
                raise DataError(self._file.path, f"detection row of prompt {row.get('prompt_id')!r} is not "
                                f"JSON-serialisable ({exc})") from None
            full["row_sha256"] = row_checksum(full)
            why = _damage(full)
            if why is not None:  # a caller bug: never write a row a reader would reject
                raise ValueError(f"refusing to store a detection row that fails its own check: {why}")
            self._file.append(full)
            self._rows[key] = full
            out.append(full)
        return out

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "DetectionStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _roundtrip(row: dict[str, Any]) -> dict[str, Any]:
    """The row exactly as it will read back from JSON (so its checksum matches on read)."""
    import json

    return json.loads(dumps_line(row))


def _damage(row: dict[str, Any]) -> str | None:
    """Why a read row cannot be trusted, or None."""
    key, fields, score = row.get("key"), row.get("fields"), row.get("score")
    if not isinstance(key, str) or not isinstance(fields, dict):
        return "row without a 'key' or 'fields'"
    if row.get("row_sha256") != row_checksum(row):
        return "checksum mismatch (edited or damaged row)"
    try:
        if detection_key(fields) != key:
            return "key is not the hash of the row's fields"
    except ValueError as exc:
        return f"unhashable fields ({exc})"
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        return f"score {score!r} is not a finite number"
    return None
