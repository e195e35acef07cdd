"""The run store's index: a local SQLite database derived from the JSONL log, never the only copy.

Why: the log (``records/``, ``scores/``, ``quarantine/`` shards, one append-only file per writer) is
right for many writers on a shared file system, but reading it whole costs time and memory in
proportion to everything ever stored (measured: 45 KB of RSS per image, 6.9 GiB at 140,000
images), while a run asks for a few configs. The index holds the same rows in SQLite tables keyed
by image key, so a lookup reads its own rows and nothing else, from disk, not RAM.

Deriving it: per shard the index records (inode, bytes ingested, lines ingested, the last bytes
ingested). ``sync`` reads only what was appended since; a shard that shrank, changed inode or whose
ingested tail changed was rewritten (``membench store prune``, a hand edit) and the index is
rebuilt from the log. A missing or unreadable database is rebuilt too. Its writer appends to its
shard first and inserts the same row in the same transaction that advances its shard's offset, so
a crash between the two leaves a line that the next ``sync`` ingests. Rows are merged as the log
always was: the first record of a key wins, the newest score row wins, a quarantine drops the rows
of its key written before it. Two tables are not derived from the log and survive a rebuild, since
each entry validates itself: ``verified`` (a PNG's stat identity when its sha256 matched its row)
and ``aggregates`` (content-addressed per-prompt results). Location: ``store.index_location``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from membench_eval.store.damage import DamagedLine, set_aside
from membench_eval.store.format import row_checksum

SCHEMA_VERSION = "2"  # a database of another schema is dropped and rebuilt from the log
TAIL = 32  # bytes of a shard's ingested end kept to tell an append from a rewrite
CHUNK = 16 * 2**20  # bytes of log ingested per transaction (other writers wait at most that long)
AREAS = ("quarantine", "records", "scores")  # ingest order: a quarantine first drops older rows
# Record fields copied into columns, for the queries of planning (stored configs) and galleries.
RECORD_COLUMNS = ("prompt_id", "seed", "method", "params", "method_path", "cfg_label", "model", "model_path",
                  "scheme", "engine", "num_inference_steps", "guidance_scale", "height", "width")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT);
CREATE TABLE IF NOT EXISTS shards (path TEXT PRIMARY KEY, ino INTEGER, offset INTEGER, lines INTEGER, tail BLOB);
CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, time REAL, png_sha256 TEXT, png_bytes INTEGER,
    row_sha256 TEXT, row TEXT, {", ".join(RECORD_COLUMNS)});
CREATE INDEX IF NOT EXISTS records_image ON records (prompt_id, seed);
CREATE INDEX IF NOT EXISTS records_config ON records (method_path, cfg_label);
CREATE TABLE IF NOT EXISTS scores (key TEXT, metric TEXT, backend TEXT, time REAL, png_sha256 TEXT, row TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS scores_key ON scores (key, metric, backend);
CREATE TABLE IF NOT EXISTS quarantine (key TEXT PRIMARY KEY, time REAL);
CREATE TABLE IF NOT EXISTS verified (key TEXT PRIMARY KEY, png_sha256 TEXT, dev INTEGER, ino INTEGER,
    size INTEGER, mtime_ns INTEGER);
CREATE TABLE IF NOT EXISTS aggregates (key TEXT PRIMARY KEY, value TEXT);
"""
DERIVED = ("shards", "records", "scores", "quarantine")


def connect(path: Path) -> sqlite3.Connection:
    """WAL journal (readers never wait for the writer), ``synchronous=NORMAL`` (a crash may lose the
    last transactions, never corrupt: the log has them), one connection shared by the store's threads
    under its lock; autocommit, with explicit ``BEGIN IMMEDIATE`` for writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=600, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(_SCHEMA)
    return db


def record_columns(row: dict[str, Any]) -> tuple[Any, ...]:
    """The values of ``RECORD_COLUMNS`` for a record row (plain SQLite types)."""
    from membench_eval.store.keys import canonical_json

    def plain(v: Any) -> Any:
        return v if v is None or isinstance(v, (str, int, float)) else json.dumps(v, sort_keys=True)

    params = row.get("params")
    try:
        params_text = canonical_json(params or {})
    except (TypeError, ValueError):
        params_text = None
    label = row.get("label") or row.get("method")
    try:
        guidance = float(row.get("guidance_scale", -1))
    except (TypeError, ValueError):
        guidance = None
    return (plain(row.get("prompt_id")), plain(row.get("seed")), plain(row.get("method")), params_text,
            plain(row.get("method_path")), None if label is None else str(label), plain(row.get("model")),
            plain(row.get("model_path")), plain(row.get("scheme")), plain(row.get("engine")),
            plain(row.get("num_inference_steps")), guidance, plain(row.get("height")), plain(row.get("width")))


class LogIngest:
    """Applies log rows to the index tables (the merge rules of the module docstring)."""

    def __init__(self, db: sqlite3.Connection, problems: list[str], damaged: list[DamagedLine] | None = None):
        self.db = db
        self.problems = problems
        self.damaged = damaged if damaged is not None else []

    def checksum_ok(self, row: dict[str, Any], path: Path, number: int, ident: object = None) -> bool:
        expected = row.get("row_sha256")
        if expected is not None and expected == row_checksum(row):
            return True
        self.damaged.append(DamagedLine(path, number, "checksum mismatch (edited or damaged row)", ident))
        self.problems.append(f"{path}, row {number}: checksum mismatch (edited or damaged row); ignored, "
                             f"key {row.get('key')}")
        return False

    def bad_line(self, path: Path, number: int, raw: bytes, why: str) -> None:
        """A complete line that is no usable row: skipped, copied to quarantine, reported
        (``store.damage``); the run goes on."""
        _, note = set_aside(path.parent.parent, path, number, raw)
        self.damaged.append(DamagedLine(path, number, why))
        self.problems.append(f"{path}, line {number}: {why}; ignored ({note})")

    def quarantine(self, key: str, when: float) -> None:
        self.db.execute("INSERT INTO quarantine VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                        "time = max(time, excluded.time)", (key, when))
        self.db.execute("DELETE FROM records WHERE key = ? AND time <= ?", (key, when))
        self.db.execute("DELETE FROM verified WHERE key = ?", (key,))

    def record(self, row: dict[str, Any], text: str | None = None) -> None:
        q = self.db.execute("SELECT time FROM quarantine WHERE key = ?", (row["key"],)).fetchone()
        if q is not None and float(row.get("time", 0)) <= q[0]:
            return  # written before its key was quarantined: it describes the damaged entry
        self.db.execute(
            f"INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?, ?, ?, {', '.join('?' * len(RECORD_COLUMNS))})",
            (row["key"], float(row.get("time", 0)), row.get("png_sha256"), row.get("png_bytes"), row.get("row_sha256"),
             text if text is not None else json.dumps(row, ensure_ascii=False), *record_columns(row)))

    def score(self, row: dict[str, Any], text: str | None = None) -> None:
        self.db.execute(
            "INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(key, metric, backend) DO UPDATE SET "
            "time = excluded.time, png_sha256 = excluded.png_sha256, row = excluded.row WHERE excluded.time >= time",
            (row["key"], row["metric"], row["backend"], float(row.get("time", 0)), row.get("png_sha256"),
             packed_row(text if text is not None else json.dumps(row, ensure_ascii=False))))

    def apply(self, area: str, path: Path, number: int, row: dict[str, Any], text: str) -> None:
        if area == "quarantine":
            if isinstance(row.get("key"), str):
                self.quarantine(row["key"], float(row.get("time", 0)))
        elif area == "records":
            if not isinstance(row.get("key"), str):
                self.bad_line(path, number, text.encode(), "row without a 'key'")
            elif self.checksum_ok(row, path, number, row["key"]):
                self.record(row, text)
        else:
            missing = [name for name in ("key", "metric", "backend") if name not in row]
            if missing:
                self.bad_line(path, number, text.encode(), f"score row without the field {missing[0]!r}")
            elif self.checksum_ok(row, path, number, (row["key"], row["metric"], row["backend"])):
                self.score(row, text)


def packed_row(text: str) -> bytes:
    """A score row as the index keeps it: zlib (level 1) of its text. Why: a score row is mostly
    digits (151 SSCD similarities on MemBench SD1) and the index kept it whole beside the log, 1.6x
    the log's size on disk (11 GB for 805,000 images); compressed, 2.2x smaller, for ~10 us to read."""
    return zlib.compress(text.encode(), 1)


def row_text(stored: bytes | str) -> str:
    """The text of a stored score row (an index written before ``packed_row`` holds it as text)."""
    return zlib.decompress(stored).decode() if isinstance(stored, bytes) else stored


def shard_files(root: Path) -> Iterator[tuple[str, Path]]:
    for area in AREAS:
        for path in sorted((root / area).glob("*.jsonl")):
            yield area, path


def sync(db: sqlite3.Connection, root: Path, problems: list[str], damaged: list[DamagedLine] | None = None,
         *, rebuild: bool = False) -> None:
    """Bring the index up to date with the log: new lines of every shard, or everything again when
    a shard was rewritten (or ``rebuild``). Each chunk is one transaction."""
    if not rebuild:
        plan = _appended(db, root)
        if plan is None:
            rebuild = True
    if rebuild:
        with transaction(db):
            for table in DERIVED:
                db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
        plan = [(area, path, 0) for area, path in shard_files(root)]
    ingest = LogIngest(db, problems, damaged)
    for area, path, _ in plan:
        _ingest_shard(db, ingest, area, path)


def _appended(db: sqlite3.Connection, root: Path) -> list[tuple[str, Path, int]] | None:
    """Shards with bytes past their ingested offset; None when one was rewritten (rebuild)."""
    known = {p: (ino, off, tail) for p, ino, off, tail in db.execute("SELECT path, ino, offset, tail FROM shards")}
    out = []
    seen = set()
    for area, path in shard_files(root):
        seen.add(str(path))
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        ino, off, tail = known.get(str(path), (st.st_ino, 0, b""))
        if ino != st.st_ino or st.st_size < off:
            return None
        if tail and _read(path, off - len(tail), len(tail)) != tail:
            return None
        if st.st_size > off:
            out.append((area, path, off))
    if set(known) - seen:
        return None  # a shard was deleted: its rows must go
    return out


def _read(path: Path, start: int, size: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(start)
        return fh.read(size)


def _ingest_shard(db: sqlite3.Connection, ingest: LogIngest, area: str, path: Path) -> None:
    while True:
        with transaction(db):  # the offset is read inside it: two processes never ingest one chunk twice
            got = db.execute("SELECT offset, lines FROM shards WHERE path = ?", (str(path),)).fetchone()
            off, lines = got if got is not None else (0, 0)
            try:
                with open(path, "rb") as fh:
                    ino = os.fstat(fh.fileno()).st_ino
                    fh.seek(max(0, off - TAIL))
                    data = fh.read(CHUNK + min(off, TAIL))
            except FileNotFoundError:
                return
            before, data = data[: min(off, TAIL)], data[min(off, TAIL):]
            chunk = data[: data.rfind(b"\n") + 1]
            if not chunk:
                return
            for number, raw in enumerate(chunk.split(b"\n")[:-1], start=lines + 1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw)
                except ValueError:
                    ingest.bad_line(path, number, raw, "corrupt JSON line (not a torn final line)")
                    continue
                if not isinstance(row, dict):
                    ingest.bad_line(path, number, raw, "expected a JSON object per line")
                    continue
                ingest.apply(area, path, number, row, raw.decode())
            end = off + len(chunk)
            db.execute("INSERT OR REPLACE INTO shards VALUES (?, ?, ?, ?, ?)",
                       (str(path), ino, end, lines + chunk.count(b"\n"), (before + chunk)[-TAIL:]))
        if len(data) < CHUNK:
            return


def advance_own_shard(db: sqlite3.Connection, path: Path, start: int, end: int, tail: bytes) -> None:
    """After this process appended bytes ``start:end`` to its own shard and applied its row: move the
    shard's offset past them, if the index had ingested exactly up to ``start`` (else a later
    ``sync`` reads them; applying a row twice changes nothing)."""
    got = db.execute("SELECT offset, lines FROM shards WHERE path = ?", (str(path),)).fetchone()
    if got is None and start == 0:
        db.execute("INSERT INTO shards VALUES (?, ?, ?, ?, ?)", (str(path), os.stat(path).st_ino, end, 1, tail))
    elif got is not None and got[0] == start:
        db.execute("UPDATE shards SET offset = ?, lines = lines + 1, tail = ? WHERE path = ?", (end, tail, str(path)))


class transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rollback on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: type | None, *rest: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def identity_of(root: Path) -> str:
    """Which store folder the index describes: the marker file's device, inode and mtime (a store
    deleted and created again at the same path is indexed afresh)."""
    st = (root / "STORE.json").stat()
    return f"{SCHEMA_VERSION}:{st.st_dev}:{st.st_ino}:{st.st_mtime_ns}"


def open_index(path: Path, root: Path, problems: list[str], damaged: list[DamagedLine] | None = None,
               on_reset: Callable[[], None] | None = None) -> sqlite3.Connection:
    """The index database of ``root`` at ``path``, synced with the log; an unreadable database, or
    one describing another store or schema, is deleted and rebuilt."""
    try:
        db = connect(path)
        got = db.execute("SELECT v FROM meta WHERE k = 'identity'").fetchone()
    except sqlite3.DatabaseError:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        db = connect(path)
        got = None
    ident = identity_of(root)
    if got is None or got[0] != ident:
        with transaction(db):
            for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                db.execute(f"DROP TABLE {table}")  # noqa: S608 - names from sqlite_master
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('identity', ?)", (ident,))
    sync(db, root, problems, damaged)
    return db
