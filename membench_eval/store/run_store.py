"""The run store: generated images (PNG) and their metadata and score rows, content-addressed.

Layout under ``root``::

    STORE.json                    format marker (version checked on open)
    images/<k[:2]>/<key>.png      one PNG per image key
    records/<shard>.jsonl         one metadata row per image (append-only, one file per writer)
    scores/<shard>.jsonl          per-image score rows keyed by (key, metric, backend)
    quarantine/<shard>.jsonl      damaged entries moved aside (key, reason, time)
    quarantine/files/             the damaged PNGs themselves, for inspection
    claims/<batch>.claim          batches being generated right now (``store.claims``)
    detections/<shard>.jsonl      detector scores per prompt (``store.detections.DetectionStore``)
    analysis/<kind>/<key>.json    attribution and probe results (``store.results.ResultStore``)

Crash safety: a PNG is written to a temporary name and renamed into place, and only then is its
row appended, so a row always points at a complete PNG; a killed writer leaves at most a stray
temporary file (ignored) or a PNG without a row (regenerated, identical). Several processes (or
machines sharing a file system) may write one store at once: each appends to its own shard file,
batches are claimed (``store.claims``) so no two writers generate the same batch, and readers merge
shards (the first row of a key wins; a later write of a known key is dropped).

Integrity: every row carries ``row_sha256``, the hash of its own content; image rows carry the
PNG's ``png_sha256`` and ``png_bytes``, score rows the ``png_sha256`` of the image they scored.
``has`` (what generation asks before reusing an image) and ``get_image`` check the PNG's size and
sha256 (memoised per file state). A damaged or swapped PNG is moved to ``quarantine/``, logged
with its key and path, and reported as missing, so it is regenerated and rescored: rows of a key
older than its quarantine are ignored. An edited row fails its checksum and is ignored (reported
in ``problems``); a line that does not parse is set aside (``store.damage``) and the run goes on.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from membench_eval.errors import StoreError
from membench_eval.fetch.image_files import ImageFileError, open_image
from membench_eval.store.atomic import write_atomic
from membench_eval.store.claims import Claims
from membench_eval.store.damage import DamagedLine, set_aside
from membench_eval.store.format import default_shard_id, open_store_root, row_checksum
from membench_eval.store.jsonl import AppendOnlyJsonl, read_new_rows, json_default
from membench_eval.store.keys import image_key
from membench_eval.store.locks import score_write_lock

if TYPE_CHECKING:
    from PIL import Image

# PNG zlib level: 1 is ~5x faster to write than the default 6 for photos, ~10% larger.
PNG_COMPRESS_LEVEL = 1


class RunStore:
    """Images and rows of one store directory. ``refresh`` reads what other writers appended."""

    def __init__(self, root: str | os.PathLike, *, shard: str | None = None):
        self.root = open_store_root(root)
        self.shard = shard or default_shard_id()
        self._records_file = AppendOnlyJsonl(self.root / "records" / f"{self.shard}.jsonl", "image row")
        self._scores_file = AppendOnlyJsonl(self.root / "scores" / f"{self.shard}.jsonl", "score row")
        self._quarantine_file = AppendOnlyJsonl(self.root / "quarantine" / f"{self.shard}.jsonl", "quarantine row")
        self.claims = Claims(self.root, self.shard)
        self._records: dict[str, dict[str, Any]] = {}
        self._scores: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._quarantined: dict[str, float] = {}  # key -> time of its latest quarantine
        self._offsets: dict[Path, tuple[int, int]] = {}  # shard -> (bytes read, lines read)
        self._verified: dict[str, tuple[int, int, int]] = {}  # key -> (size, mtime_ns, inode) checked
        # Damaged entries found by this process: one line each, for the run's summary.
        self.problems: list[str] = []
        self.damaged: list[DamagedLine] = []
        self._missing_reported: set[str] = set()  # the lines behind them (``verify`` / ``--repair``)
        # The engine writes images and scores from a background thread (``generation.sink``) while
        # the generating thread asks ``has``/``refresh``: index updates and appends take this lock.
        self._lock = threading.RLock()
        self.refresh()

    # --- format -------------------------------------------------------------------------------

    # --- reading ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the rows other writers appended since the last refresh (incremental per shard)."""
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        for path in sorted((self.root / "quarantine").glob("*.jsonl")):
            for _, row in self._new_rows(path):
                key = row.get("key")
                if not isinstance(key, str):
                    continue
                self._quarantined[key] = max(float(row.get("time", 0)), self._quarantined.get(key, 0.0))
                self._verified.pop(key, None)
                if self._stale(self._records.get(key)):
                    del self._records[key]
        for path in sorted((self.root / "records").glob("*.jsonl")):
            for number, row in self._new_rows(path):
                key = row.get("key")
                if not isinstance(key, str):
                    self._bad_line(path, number, json.dumps(row).encode(), "row without a 'key'")
                    continue
                if not self._checksum_ok(row, path, number, key) or self._stale(row):
                    continue
                self._records.setdefault(key, row)
        for path in sorted((self.root / "scores").glob("*.jsonl")):
            for number, row in self._new_rows(path):
                try:
                    ident = (row["key"], row["metric"], row["backend"])
                except KeyError as exc:
                    self._bad_line(path, number, json.dumps(row).encode(),
                                   f"score row without the field {exc.args[0]!r}")
                    continue
                if not self._checksum_ok(row, path, number, ident):
                    continue
                old = self._scores.get(ident)
                if old is None or row.get("time", 0) >= old.get("time", 0):
                    self._scores[ident] = row

    def _new_rows(self, path: Path) -> list[tuple[int, dict[str, Any]]]:
        """(line number, row) of the complete lines appended to ``path`` since the last read."""
        return read_new_rows(path, self._offsets, lambda n, raw, why: self._bad_line(path, n, raw, why))

    def _bad_line(self, path: Path, number: int, raw: bytes, why: str) -> None:
        """A complete line that is no usable row: skipped, copied to quarantine, reported."""
        _, note = set_aside(self.root, path, number, raw)
        self.damaged.append(DamagedLine(path, number, why))
        self.problems.append(f"{path}, line {number}: {why}; ignored ({note})")

    def _checksum_ok(self, row: dict[str, Any], path: Path, number: int, ident: object = None) -> bool:
        expected = row.get("row_sha256")
        if expected is not None and expected == row_checksum(row):
            return True
        self.damaged.append(DamagedLine(path, number, "checksum mismatch (edited or damaged row)", ident))
        self.problems.append(f"{path}, row {number}: checksum mismatch (edited or damaged row); ignored, "
                             f"key {row.get('key')}")
        return False

    def unresolved(self, line: DamagedLine) -> bool:
        """Whether a damaged line still costs something: its entry has no valid row (an edited row
        the run has since rewritten, or one beside a valid copy, is history)."""
        with self._lock:
            self._refresh()
            if isinstance(line.ident, tuple):
                return line.ident not in self._scores
            return not (isinstance(line.ident, str) and line.ident in self._records)

    def _stale(self, row: dict[str, Any] | None) -> bool:
        """A row written before its key was quarantined describes the damaged entry."""
        if row is None:
            return False
        q = self._quarantined.get(row.get("key", ""))
        return q is not None and float(row.get("time", 0)) <= q

    @staticmethod
    def key(fields: dict[str, Any]) -> str:
        """The content key of an image (see ``membench_eval.store.keys.key_fields``)."""
        return image_key(fields)

    def image_path(self, key: str) -> Path:
        return self.root / "images" / key[:2] / f"{key}.png"

    def has(self, key: str) -> bool:
        """True when the image's row exists and its PNG is in place with the recorded size and
        sha256. A damaged PNG is quarantined here (so it is regenerated) and False returned."""
        with self._lock:
            if key not in self._records:
                return False
            return self._check_image(key) is None

    def _check_image(self, key: str, data: bytes | None = None) -> str | None:
        """None when the PNG of ``key`` matches its row; else the reason (after quarantining it)."""
        row = self._records[key]
        path = self.image_path(key)
        try:
            st = path.stat()
        except FileNotFoundError:
            if key not in self._missing_reported:  # said once: has() is asked again and again
                self._missing_reported.add(key)
                self.problems.append(f"{path}: PNG missing (deleted?); key {key} will be regenerated")
            return "missing"
        state = (st.st_size, st.st_mtime_ns, st.st_ino)
        if data is None and self._verified.get(key) == state:
            return None
        reason = None
        if row.get("png_bytes") is not None and st.st_size != row["png_bytes"]:
            reason = f"size {st.st_size} bytes, recorded {row['png_bytes']}"
        else:
            digest = hashlib.sha256(path.read_bytes() if data is None else data).hexdigest()
            if digest != row.get("png_sha256"):
                reason = f"sha256 {digest[:12]}..., recorded {str(row.get('png_sha256'))[:12]}..."
        if reason is None:
            self._verified[key] = state
            return None
        self.quarantine(key, reason)
        return reason

    def quarantine(self, key: str, reason: str) -> Path | None:
        """Move the PNG of ``key`` aside and log it; its rows so far are ignored from now on."""
        path = self.image_path(key)
        aside = self.root / "quarantine" / "files" / f"{key}.{int(time.time() * 1000)}.png"
        try:
            aside.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                os.replace(path, aside)
            self._quarantine_file.append({"key": key, "reason": reason, "path": str(path), "moved_to": str(aside),
                                          "shard": self.shard, "time": time.time()})
        except OSError as exc:
            raise StoreError(f"{path}: stored image of key {key} is damaged ({reason}) and cannot be moved aside "
                             f"({exc.strerror or exc}); make the store writable or regenerate into a new --store") from None
        self._quarantined[key] = time.time()
        self._records.pop(key, None)
        self._verified.pop(key, None)
        self.problems.append(f"{path}: damaged ({reason}); moved to {aside}, key {key} will be regenerated")
        return aside

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
        """The stored image as an RGB PIL image, after checking its size and sha256."""
        path = self.image_path(key)
        if key not in self._records:
            raise StoreError(f"{path}: image of key {key} is not in the store (or was quarantined as damaged)")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"{path}: image of key {key} is missing from the store") from None
        reason = self._check_image(key, data)
        if reason is not None:
            raise StoreError(f"{path}: stored image of key {key} is damaged ({reason}); moved to quarantine, "
                             "rerun to regenerate it")
        try:
            return open_image(data, name=path, what="stored PNG")
        except ImageFileError as exc:
            self.quarantine(key, f"undecodable PNG ({exc})")
            raise StoreError(f"{path}: stored image of key {key} cannot be decoded ({exc}); moved to quarantine, "
                             "rerun to regenerate it") from None

    def verify(self, *, repair: bool = False) -> list[str]:
        """Keys whose PNG is missing or does not match its row (re-hashes every file). With
        ``repair`` the damaged ones are quarantined (the next run regenerates them)."""
        bad = []
        for key, row in list(self._records.items()):
            path = self.image_path(key)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                bad.append(key)
                continue
            if hashlib.sha256(data).hexdigest() != row.get("png_sha256") or (
                    row.get("png_bytes") is not None and len(data) != row["png_bytes"]):
                bad.append(key)
                if repair:
                    self.quarantine(key, "checksum mismatch found by verify")
        return bad

    # --- writing ------------------------------------------------------------------------------

    def put_image(self, key: str, image: "Image.Image", row: dict[str, Any]) -> dict[str, Any]:
        """Store ``image`` under ``key`` (PNG first, atomically), then append its metadata row.
        A key already stored (by this or another writer) is not written again: the first wins.
        The PNG is encoded before the store's lock is taken (encoding is the slow part)."""
        if self.has(key):
            return self._records[key]
        buf = io.BytesIO()
        image.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        data = buf.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            if self.has(key):
                return self._records[key]
            return self._write_image(key, data, digest, row)

    def _write_image(self, key: str, data: bytes, digest: str, row: dict[str, Any]) -> dict[str, Any]:
        path = self.image_path(key)
        write_atomic(path, data, f"PNG of image key {key}")
        full = {
            "key": key,
            **row,
            "png": path.relative_to(self.root).as_posix(),
            "png_sha256": digest,
            "png_bytes": len(data),
            "shard": self.shard,
            "time": time.time(),
        }
        full = json.loads(json.dumps(full, default=json_default))  # the row exactly as it will read back
        full["row_sha256"] = row_checksum(full)
        self._records_file.append(full)
        self._records.setdefault(key, full)
        return full

    def put_score(self, key: str, metric: str, backend: str, value: Any, **extra: Any) -> None:
        """One score of one image; ``value`` is any JSON value (a number, a list of similarities...)."""
        self.put_scores([{"key": key, "metric": metric, "backend": backend, "value": value, **extra}])

    def put_scores(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append score rows, each with ``key``, ``metric``, ``backend`` and ``value``; each row
        records the sha256 of the image it scored and its own checksum."""
        with self._lock:
            self._put_scores(rows)

    def _put_scores(self, rows: Iterable[dict[str, Any]]) -> None:
        """Under the store's score lock (``store.locks``), re-read the shards, then append the rows
        whose value is not stored yet: two runs scoring one image at once store its score once,
        while a re-score with another value (more references since) is appended and wins."""
        rows = list(rows)
        for row in rows:
            missing = [f for f in ("key", "metric", "backend", "value") if f not in row]
            if missing:
                raise ValueError(f"score row lacks {missing}: {row}")
        with score_write_lock(self.root):
            self._refresh()
            for row in rows:
                stored = self._score_row(row["key"], row["metric"], row["backend"])
                if stored is None or stored.get("value") != json.loads(json.dumps(row["value"], default=json_default)):
                    self._append_score(row)

    def _append_score(self, row: dict[str, Any]) -> None:
        image = self._records.get(row["key"], {})
        full = {**row, "png_sha256": image.get("png_sha256"), "shard": self.shard, "time": time.time()}
        full = json.loads(json.dumps(full, default=json_default))
        full["row_sha256"] = row_checksum(full)
        self._scores_file.append(full)
        self._scores[(row["key"], row["metric"], row["backend"])] = full

    def _score_row(self, key: str, metric: str, backend: str) -> dict[str, Any] | None:
        """The newest valid score row: of the current image of ``key`` and not older than its
        quarantine (a damaged image's scores are recomputed)."""
        row = self._scores.get((key, metric, backend))
        if row is None or self._stale(row):
            return None
        image = self._records.get(key)
        if image is not None and row.get("png_sha256") not in (None, image.get("png_sha256")):
            return None
        return row

    def has_score(self, key: str, metric: str, backend: str) -> bool:
        return self._score_row(key, metric, backend) is not None

    def get_score(self, key: str, metric: str, backend: str, default: Any = None) -> Any:
        """The value of one score (newest valid row wins), or ``default``; O(1), for per-item lookups."""
        row = self._score_row(key, metric, backend)
        return default if row is None else row["value"]

    def scores(self, metric: str | None = None, backend: str | None = None) -> dict[tuple[str, str, str], Any]:
        """``{(key, metric, backend): value}``, optionally for one metric/backend; newest row wins."""
        return {
            ident: row["value"]
            for ident in self._scores
            if (metric is None or ident[1] == metric) and (backend is None or ident[2] == backend)
            and (row := self._score_row(*ident)) is not None
        }

    def score_rows(self) -> list[dict[str, Any]]:
        return [row for ident in self._scores if (row := self._score_row(*ident)) is not None]

    def close(self) -> None:
        self._records_file.close()
        self._scores_file.close()
        self._quarantine_file.close()
        self.claims.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
