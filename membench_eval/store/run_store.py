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

Index: the log is read through a local SQLite index derived from it (``store.index_db``, placed by
``store.index_location``): opening a store reads only what was appended since the index last saw
it, and a lookup reads the rows of its own keys, so cost and memory follow what a run asks for,
not what the store holds. Deleting the index loses nothing: it is rebuilt from the log.

Integrity: every row carries ``row_sha256``, the hash of its own content; image rows carry the
PNG's ``png_sha256`` and ``png_bytes``, score rows the ``png_sha256`` of the image they scored.
``has`` (what generation asks before reusing an image) and ``get_image`` check the PNG's size and
sha256; a PNG whose sha256 matched is not read again while its (device, inode, size, mtime) stay
the same, recorded in the index's ``verified`` table, so across processes too (``verify`` re-reads
every file). A file changed less than ``RACY_NS`` before it was checked is not recorded: a coarse
file-system clock could give a same-size rewrite the same mtime (git's "racy clean" problem). A damaged or swapped PNG is moved to ``quarantine/``, logged
with its key and path, and reported as missing, so it is regenerated and rescored: rows of a key
older than its quarantine are ignored. An edited row fails its checksum and is ignored (reported
in ``problems``); a line that does not parse is set aside (``store.damage``) and the run goes on.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from membench_eval.errors import StoreError
from membench_eval.fetch.image_files import ImageFileError, open_image
from membench_eval.store import index_db
from membench_eval.store.atomic import write_atomic
from membench_eval.store.claims import Claims
from membench_eval.store.damage import DamagedLine
from membench_eval.store.format import default_shard_id, open_store_root, row_checksum
from membench_eval.store.index_location import index_path
from membench_eval.store.index_queries import IndexQueries, chunks as _chunks
from membench_eval.store.jsonl import AppendOnlyJsonl, json_default
from membench_eval.store.keys import image_key
from membench_eval.store.locks import score_write_lock

if TYPE_CHECKING:
    from PIL import Image

# PNG zlib level: 1 is ~5x faster to write than the default 6 for photos, ~10% larger.
PNG_COMPRESS_LEVEL = 1
RACY_NS = 2 * 10**9  # a PNG modified this recently is re-hashed on every check, never recorded as verified

_IMAGE_STATE = ("SELECT r.key, r.png_sha256, r.png_bytes, v.png_sha256, v.dev, v.ino, v.size, v.mtime_ns "
                "FROM records r LEFT JOIN verified v ON v.key = r.key WHERE r.key IN ({})")
_SCORE = ("SELECT s.key, s.metric, s.backend, s.row FROM scores s LEFT JOIN records r ON r.key = s.key "
          "LEFT JOIN quarantine q ON q.key = s.key WHERE (q.time IS NULL OR s.time > q.time) "
          "AND (r.png_sha256 IS NULL OR s.png_sha256 IS NULL OR s.png_sha256 = r.png_sha256)")


class RunStore(IndexQueries):
    """Images and rows of one store directory. ``refresh`` reads what other writers appended."""

    def __init__(self, root: str | os.PathLike, *, shard: str | None = None):
        self.root = open_store_root(root)
        self.shard = shard or default_shard_id()
        self._records_file = AppendOnlyJsonl(self.root / "records" / f"{self.shard}.jsonl", "image row")
        self._scores_file = AppendOnlyJsonl(self.root / "scores" / f"{self.shard}.jsonl", "score row")
        self._quarantine_file = AppendOnlyJsonl(self.root / "quarantine" / f"{self.shard}.jsonl", "quarantine row")
        self.claims = Claims(self.root, self.shard)
        self.index_file = index_path(self.root)
        self._images_dir = str(self.root / "images")
        # Damaged entries found by this process: one line each, for the run's summary.
        self.problems: list[str] = []
        self.damaged: list[DamagedLine] = []  # the lines behind them (``verify`` / ``--repair``)
        self._missing_reported: set[str] = set()
        # The engine writes images and scores from a background thread (``generation.sink``) while
        # the generating thread asks ``has``/``refresh``: index reads and writes take this lock.
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self.refresh()

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = index_db.open_index(self.index_file, self.root, self.problems, self.damaged)
        return self._conn

    # --- reading ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Ingest the rows other writers appended since the index last saw them (per shard)."""
        with self._lock:
            if self._conn is None:
                _ = self._db  # opening syncs
            else:
                index_db.sync(self._conn, self.root, self.problems, self.damaged)

    def unresolved(self, line: DamagedLine) -> bool:
        """Whether a damaged line still costs something: its entry has no valid row (an edited row
        the run has since rewritten, or one beside a valid copy, is history)."""
        with self._lock:
            self.refresh()
            if isinstance(line.ident, tuple):
                got = self._db.execute("SELECT 1 FROM scores WHERE key = ? AND metric = ? AND backend = ?",
                                       line.ident).fetchone()
            elif isinstance(line.ident, str):
                got = self._db.execute("SELECT 1 FROM records WHERE key = ?", (line.ident,)).fetchone()
            else:
                return True
            return got is None

    @staticmethod
    def key(fields: dict[str, Any]) -> str:
        """The content key of an image (see ``membench_eval.store.keys.key_fields``)."""
        return image_key(fields)

    def image_path(self, key: str) -> Path:
        return self.root / "images" / key[:2] / f"{key}.png"

    def has(self, key: str) -> bool:
        """True when the image's row exists and its PNG is in place with the recorded size and
        sha256. A damaged PNG is quarantined here (so it is regenerated) and False returned."""
        return self.has_many([key])[0]

    def has_many(self, keys: Sequence[str]) -> list[bool]:
        """``has`` of each key, one query per ``BATCH`` keys (what generation asks of a whole run)."""
        out: list[bool] = []
        images, stat = self._images_dir, os.stat
        with self._lock:
            for chunk in _chunks(keys):
                state = {r[0]: r[1:] for r in self._db.execute(_IMAGE_STATE.format(",".join("?" * len(chunk))), chunk)}
                verified: list[tuple[Any, ...]] = []
                for key in chunk:
                    got = state.get(key)
                    # A verified PNG, stat identity unchanged: inline (asked of 805,000 images in a sweep).
                    if got is not None and got[2] is not None and got[2] == got[0]:
                        try:
                            st = stat(f"{images}/{key[:2]}/{key}.png")
                            if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == got[3:]:
                                out.append(True)
                                continue
                        except FileNotFoundError:
                            pass  # reported by ``_check_image``
                    out.append(got is not None and self._check_image(key, got, verified) is None)
                if verified:
                    with index_db.transaction(self._db) as db:
                        db.executemany("INSERT OR REPLACE INTO verified VALUES (?, ?, ?, ?, ?, ?)", verified)
        return out

    def _check_image(self, key: str, state: tuple[Any, ...], verified: list[tuple[Any, ...]],
                     data: bytes | None = None) -> str | None:
        """None when the PNG of ``key`` matches its row (``state``: the row's sha256 and size, the
        recorded verification); else the reason (after quarantining it). A new verification is
        appended to ``verified`` (the caller records it)."""
        png_sha256, png_bytes, v_sha256, *v_stat = state
        try:  # a string path: pathlib's joins were a third of a cached check
            st = os.stat(os.path.join(self._images_dir, key[:2], f"{key}.png"))
        except FileNotFoundError:
            if key not in self._missing_reported:  # said once: has() is asked again and again
                self._missing_reported.add(key)
                self.problems.append(f"{self.image_path(key)}: PNG missing (deleted?); key {key} will be regenerated")
            return "missing"
        now_stat = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]
        if data is None and v_sha256 is not None and v_sha256 == png_sha256 and v_stat == now_stat:
            return None
        path = self.image_path(key)
        reason = None
        if png_bytes is not None and st.st_size != png_bytes:
            reason = f"size {st.st_size} bytes, recorded {png_bytes}"
        else:
            digest = hashlib.sha256(path.read_bytes() if data is None else data).hexdigest()
            if digest != png_sha256:
                reason = f"sha256 {digest[:12]}..., recorded {str(png_sha256)[:12]}..."
        if reason is None:
            if time.time_ns() - st.st_mtime_ns > RACY_NS:
                verified.append((key, png_sha256, *now_stat))
            return None
        self.quarantine(key, reason)
        return reason

    def quarantine(self, key: str, reason: str) -> Path | None:
        """Move the PNG of ``key`` aside and log it; its rows so far are ignored from now on."""
        path = self.image_path(key)
        aside = self.root / "quarantine" / "files" / f"{key}.{int(time.time() * 1000)}.png"
        row = {"key": key, "reason": reason, "path": str(path), "moved_to": str(aside), "shard": self.shard,
               "time": time.time()}
        with self._lock:
            try:
                aside.parent.mkdir(parents=True, exist_ok=True)
                if path.exists():
                    os.replace(path, aside)
                with index_db.transaction(self._db) as db:
                    index_db.LogIngest(db, self.problems).quarantine(key, row["time"])
                    self._append(db, self._quarantine_file, row)
            except OSError as exc:
                raise StoreError(f"{path}: stored image of key {key} is damaged ({reason}) and cannot be moved aside "
                                 f"({exc.strerror or exc}); make the store writable or regenerate into a new --store"
                                 ) from None
        self.problems.append(f"{path}: damaged ({reason}); moved to {aside}, key {key} will be regenerated")
        return aside

    def _append(self, db: sqlite3.Connection, file: AppendOnlyJsonl, row: dict[str, Any]) -> str:
        """Append ``row`` to this writer's shard ``file`` inside the index transaction that applies
        it; returns the line's text (what the index stores, serialised once)."""
        start, end, data = file.append(row)
        index_db.advance_own_shard(db, file.path, start, end, data[-index_db.TAIL:])
        return data[:-1].decode()

    def __contains__(self, key: str) -> bool:
        return self.has(key)

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0]

    def _record(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            got = self._db.execute("SELECT row FROM records WHERE key = ?", (key,)).fetchone()
        return None if got is None else json.loads(got[0])

    def record(self, key: str) -> dict[str, Any]:
        row = self._record(key)
        if row is None:
            raise KeyError(f"no image with key {key} in store {self.root}")
        return row

    def records(self) -> list[dict[str, Any]]:
        """One metadata row per stored image (duplicates from concurrent writers dropped). Reads the
        whole index: for maintenance; runs ask for their own keys (``record_digests``, ``find_records``)."""
        with self._lock:
            return [json.loads(r[0]) for r in self._db.execute("SELECT row FROM records ORDER BY rowid")]

    def get_image(self, key: str) -> "Image.Image":
        """The stored image as an RGB PIL image, after checking its size and sha256."""
        path = self.image_path(key)
        with self._lock:
            got = self._db.execute(_IMAGE_STATE.format("?"), (key,)).fetchone()
        if got is None:
            raise StoreError(f"{path}: image of key {key} is not in the store (or was quarantined as damaged)")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"{path}: image of key {key} is missing from the store") from None
        verified: list[tuple[Any, ...]] = []
        with self._lock:
            reason = self._check_image(key, got[1:], verified, data)
            if verified:
                with index_db.transaction(self._db) as db:
                    db.executemany("INSERT OR REPLACE INTO verified VALUES (?, ?, ?, ?, ?, ?)", verified)
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
        """Keys whose PNG is missing or does not match its row: re-reads the whole log (rebuilding
        the index, so every damaged row is reported) and re-hashes every file. With ``repair`` the
        damaged ones are quarantined (the next run regenerates them)."""
        with self._lock:
            index_db.sync(self._db, self.root, self.problems, self.damaged, rebuild=True)
            self.problems[:] = list(dict.fromkeys(self.problems))  # a row reported at open and again
            self.damaged[:] = list(dict.fromkeys(self.damaged))
            rows = self._db.execute("SELECT key, png_sha256, png_bytes FROM records ORDER BY rowid").fetchall()
        bad = []
        for key, png_sha256, png_bytes in rows:
            try:
                data = self.image_path(key).read_bytes()
            except FileNotFoundError:
                bad.append(key)
                continue
            if hashlib.sha256(data).hexdigest() != png_sha256 or (png_bytes is not None and len(data) != png_bytes):
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
            return self.record(key)
        buf = io.BytesIO()
        image.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        data = buf.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            if self.has(key):
                return self.record(key)
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
        with index_db.transaction(self._db) as db:
            index_db.LogIngest(db, self.problems).record(full, self._append(db, self._records_file, full))
        return full

    def put_score(self, key: str, metric: str, backend: str, value: Any, **extra: Any) -> None:
        """One score of one image; ``value`` is any JSON value (a number, a list of similarities...)."""
        self.put_scores([{"key": key, "metric": metric, "backend": backend, "value": value, **extra}])

    def put_scores(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append score rows, each with ``key``, ``metric``, ``backend`` and ``value``; each row
        records the sha256 of the image it scored and its own checksum."""
        rows = list(rows)
        for row in rows:
            missing = [f for f in ("key", "metric", "backend", "value") if f not in row]
            if missing:
                raise ValueError(f"score row lacks {missing}: {row}")
        if not rows:
            return
        # Under the store's score lock (``store.locks``), catch up with the log, then append the rows
        # whose value is not stored yet: two runs scoring one image at once store its score once,
        # while a re-score with another value (more references since) is appended and wins.
        with self._lock, score_write_lock(self.root):
            self.refresh()
            digests = {}
            for chunk in _chunks(list(dict.fromkeys(r["key"] for r in rows))):
                q = f"SELECT key, png_sha256 FROM records WHERE key IN ({','.join('?' * len(chunk))})"
                digests.update(self._db.execute(q, chunk).fetchall())
            fresh = []
            for row in rows:
                stored = self._score_row(row["key"], row["metric"], row["backend"])
                if stored is None or stored.get("value") != json.loads(json.dumps(row["value"], default=json_default)):
                    fresh.append(row)
            with index_db.transaction(self._db) as db:
                ingest = index_db.LogIngest(db, self.problems)
                for row in fresh:
                    full = {**row, "png_sha256": digests.get(row["key"]), "shard": self.shard, "time": time.time()}
                    full = json.loads(json.dumps(full, default=json_default))
                    full["row_sha256"] = row_checksum(full)
                    ingest.score(full, self._append(db, self._scores_file, full))

    def _score_rows(self, where: str, params: Sequence[Any]) -> list[tuple[str, str, str, str]]:
        with self._lock:
            got = self._db.execute(f"{_SCORE} AND {where}", params).fetchall()
        return [(k, m, b, index_db.row_text(row)) for k, m, b, row in got]

    def _score_row(self, key: str, metric: str, backend: str) -> dict[str, Any] | None:
        """The newest valid score row: of the current image of ``key`` and not older than its
        quarantine (a damaged image's scores are recomputed)."""
        got = self._score_rows("s.key = ? AND s.metric = ? AND s.backend = ?", (key, metric, backend))
        return json.loads(got[0][3]) if got else None

    def has_score(self, key: str, metric: str, backend: str) -> bool:
        return self._score_row(key, metric, backend) is not None

    def get_score(self, key: str, metric: str, backend: str, default: Any = None) -> Any:
        """The value of one score (newest valid row wins), or ``default``; one indexed lookup."""
        row = self._score_row(key, metric, backend)
        return default if row is None else row["value"]

    def score_values(self, key: str, metric: str) -> list[Any]:
        """The valid values of one image's ``metric``, one per backend."""
        return [json.loads(r[3])["value"] for r in self._score_rows("s.key = ? AND s.metric = ?", (key, metric))]

    def scores(self, metric: str | None = None, backend: str | None = None) -> dict[tuple[str, str, str], Any]:
        """``{(key, metric, backend): value}``, optionally for one metric/backend; newest row wins."""
        where = " AND ".join(["1"] + [f"s.{name} = ?" for name, v in (("metric", metric), ("backend", backend))
                                      if v is not None])
        params = [v for v in (metric, backend) if v is not None]
        return {(k, m, b): json.loads(row)["value"] for k, m, b, row in self._score_rows(where, params)}

    def score_rows(self) -> list[dict[str, Any]]:
        return [json.loads(r[3]) for r in self._score_rows("1", ())]

    def close(self) -> None:
        self._records_file.close()
        self._scores_file.close()
        self._quarantine_file.close()
        self.claims.close()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
