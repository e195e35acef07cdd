"""The run store: generated images (PNG) and their metadata and score rows, content-addressed.

Layout under ``root``::

    STORE.json                    format marker
    images/<k[:2]>/<key>.png      one PNG per image key
    records/<shard>.jsonl         one metadata row per image (append-only, one file per writer)
    scores/<shard>.jsonl          per-image score rows keyed by (key, metric, backend)

Crash safety: a PNG is written to a temporary name and renamed into place, and only then is its
row appended, so a row always points at a complete PNG; a killed writer leaves at most a stray
temporary file (ignored) or a PNG without a row (regenerated, identical). Several processes (or
machines sharing a file system) may write one store at once: each appends to its own shard file,
there is no shared lock, and readers merge shards (first row of a key wins; duplicates from
concurrent writers of the same key are identical images and are dropped).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from membench_eval.errors import DataError
from membench_eval.store.jsonl import AppendOnlyJsonl, read_jsonl
from membench_eval.store.keys import image_key

if TYPE_CHECKING:
    from PIL import Image

STORE_FORMAT = "membench-run-store"
STORE_VERSION = 1
# PNG zlib level: 1 is ~5x faster to write than the default 6 for photos, ~10% larger.
PNG_COMPRESS_LEVEL = 1


def default_shard_id() -> str:
    """``<host>-<pid>-<random>``: unique per writer, readable when debugging a shared store."""
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class RunStore:
    """Images and rows of one store directory. Re-open (or ``refresh``) to see other writers' rows."""

    def __init__(self, root: str | os.PathLike, *, shard: str | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._check_format()
        self.shard = shard or default_shard_id()
        self._records_file = AppendOnlyJsonl(self.root / "records" / f"{self.shard}.jsonl")
        self._scores_file = AppendOnlyJsonl(self.root / "scores" / f"{self.shard}.jsonl")
        self._records: dict[str, dict[str, Any]] = {}
        self._scores: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.refresh()

    # --- format -------------------------------------------------------------------------------

    def _check_format(self) -> None:
        marker = self.root / "STORE.json"
        if marker.exists():
            try:
                meta = json.loads(marker.read_text())
            except ValueError as exc:
                raise DataError(marker, f"not valid JSON ({exc})") from None
            if meta.get("format") != STORE_FORMAT or meta.get("version") != STORE_VERSION:
                raise DataError(marker, f"not a {STORE_FORMAT} v{STORE_VERSION} store: {meta}")
            return
        _atomic_write(marker, json.dumps({"format": STORE_FORMAT, "version": STORE_VERSION}).encode())

    # --- reading ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read every shard (rows written by other processes since opening)."""
        records: dict[str, dict[str, Any]] = {}
        for path in sorted((self.root / "records").glob("*.jsonl")):
            for row in read_jsonl(path):
                key = row.get("key")
                if not isinstance(key, str):
                    raise DataError(path, "row without a 'key'", field="key")
                records.setdefault(key, row)
        scores: dict[tuple[str, str, str], dict[str, Any]] = {}
        for path in sorted((self.root / "scores").glob("*.jsonl")):
            for row in read_jsonl(path):
                try:
                    ident = (row["key"], row["metric"], row["backend"])
                except KeyError as exc:
                    raise DataError(path, "score row without a required field", field=str(exc.args[0])) from None
                old = scores.get(ident)
                if old is None or row.get("time", 0) >= old.get("time", 0):
                    scores[ident] = row
        self._records, self._scores = records, scores

    @staticmethod
    def key(fields: dict[str, Any]) -> str:
        """The content key of an image (see ``membench_eval.store.keys.key_fields``)."""
        return image_key(fields)

    def image_path(self, key: str) -> Path:
        return self.root / "images" / key[:2] / f"{key}.png"

    def has(self, key: str) -> bool:
        """True when the image's row exists and its PNG is in place."""
        return key in self._records and self.image_path(key).is_file()

    def __contains__(self, key: str) -> bool:
        return self.has(key)

    def __len__(self) -> int:
        return len(self._records)

    def record(self, key: str) -> dict[str, Any]:
        try:
            return self._records[key]
        except KeyError:
            raise KeyError(f"no image with key {key} in store {self.root}") from None

    def records(self) -> list[dict[str, Any]]:
        """One metadata row per stored image (duplicates from concurrent writers dropped)."""
        return list(self._records.values())

    def get_image(self, key: str) -> "Image.Image":
        """The stored image as an RGB PIL image (fully loaded, file closed)."""
        from PIL import Image

        path = self.image_path(key)
        try:
            with Image.open(path) as im:
                im.load()
                return im.convert("RGB")
        except FileNotFoundError:
            raise DataError(path, f"image of key {key} is missing from the store") from None

    def verify(self) -> list[str]:
        """Keys whose PNG is missing or does not match the sha256 in its row (should be empty)."""
        bad = []
        for key, row in self._records.items():
            path = self.image_path(key)
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except FileNotFoundError:
                bad.append(key)
                continue
            if digest != row.get("png_sha256"):
                bad.append(key)
        return bad

    # --- writing ------------------------------------------------------------------------------

    def put_image(self, key: str, image: "Image.Image", row: dict[str, Any]) -> dict[str, Any]:
        """Store ``image`` under ``key`` (PNG first, atomically), then append its metadata row."""
        buf = io.BytesIO()
        image.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        data = buf.getvalue()
        path = self.image_path(key)
        _atomic_write(path, data)
        full = {
            "key": key,
            **row,
            "png": path.relative_to(self.root).as_posix(),
            "png_sha256": hashlib.sha256(data).hexdigest(),
            "shard": self.shard,
            "time": time.time(),
        }
        self._records_file.append(full)
        self._records.setdefault(key, full)
        return full

    def put_score(self, key: str, metric: str, backend: str, value: Any, **extra: Any) -> None:
        """One score of one image; ``value`` is any JSON value (a number, a list of similarities...)."""
        self.put_scores([{"key": key, "metric": metric, "backend": backend, "value": value, **extra}])

    def put_scores(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append score rows, each with ``key``, ``metric``, ``backend`` and ``value``."""
        for row in rows:
            missing = [f for f in ("key", "metric", "backend", "value") if f not in row]
            if missing:
                raise ValueError(f"score row lacks {missing}: {row}")
            full = {**row, "shard": self.shard, "time": time.time()}
            self._scores_file.append(full)
            self._scores[(row["key"], row["metric"], row["backend"])] = full

    def has_score(self, key: str, metric: str, backend: str) -> bool:
        return (key, metric, backend) in self._scores

    def get_score(self, key: str, metric: str, backend: str, default: Any = None) -> Any:
        """The value of one score (newest row wins), or ``default``; O(1), for per-item lookups."""
        row = self._scores.get((key, metric, backend))
        return default if row is None else row["value"]

    def scores(self, metric: str | None = None, backend: str | None = None) -> dict[tuple[str, str, str], Any]:
        """``{(key, metric, backend): value}``, optionally for one metric/backend; newest row wins."""
        return {
            ident: row["value"]
            for ident, row in self._scores.items()
            if (metric is None or ident[1] == metric) and (backend is None or ident[2] == backend)
        }

    def score_rows(self) -> list[dict[str, Any]]:
        return list(self._scores.values())

    def close(self) -> None:
        self._records_file.close()
        self._scores_file.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
