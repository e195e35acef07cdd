"""Lookups on the run store's index by key lists and indexed columns: what planning, the per-prompt
cache and galleries ask, so each reads its own rows (``store.index_db``), never the whole store.
A mixin of ``RunStore`` (its lock and connection)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from membench_eval.store import index_db

BATCH = 500  # keys per SQL query of the batched lookups (SQLite's bound-parameter limit is far above)


def chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), BATCH):
        yield items[start:start + BATCH]


class IndexQueries:
    _lock: threading.RLock
    _db: sqlite3.Connection
    _score_rows: Callable[[str, Sequence[Any]], list[tuple[str, str, str, str]]]  # RunStore's valid score rows

    def get_scores(self, keys: Sequence[str], metric: str, backend: str) -> dict[str, Any]:
        """``get_score`` of each of ``keys`` that has one: ``{key: value}``, one query per ``BATCH``
        keys (a leaderboard's first aggregation asked 3 indexed queries per image, one at a time)."""
        out: dict[str, Any] = {}
        for chunk in chunks(list(dict.fromkeys(keys))):
            where = f"s.metric = ? AND s.backend = ? AND s.key IN ({','.join('?' * len(chunk))})"
            out.update((k, json.loads(row)["value"]) for k, _, _, row in self._score_rows(where, [metric, backend, *chunk]))
        return out

    def record_digests(self, keys: Sequence[str]) -> dict[str, str]:
        """``{key: row_sha256}`` of the stored images among ``keys``: what a cached per-prompt result
        is keyed by (a regenerated image has a new row, so its prompt is aggregated again)."""
        out: dict[str, str] = {}
        with self._lock:
            for chunk in chunks(keys):
                q = f"SELECT key, row_sha256 FROM records WHERE key IN ({','.join('?' * len(chunk))})"
                out.update(self._db.execute(q, chunk).fetchall())
        return out

    def record_values(self, keys: Sequence[str], path: str) -> dict[str, Any]:
        """``{key: value}`` of one field of the stored image rows among ``keys`` (``path``: an SQLite
        JSON path, e.g. ``$.records.unet_evals``; objects and arrays come back as JSON text), read in
        SQL: parsing each whole row in Python was a tenth of a leaderboard's first aggregation."""
        out: dict[str, Any] = {}
        with self._lock:
            for chunk in chunks(keys):
                q = f"SELECT key, json_extract(row, ?) FROM records WHERE key IN ({','.join('?' * len(chunk))})"
                out.update(self._db.execute(q, [path, *chunk]).fetchall())
        return out

    def find_records(self, prompt_id: str, seed: int) -> list[dict[str, Any]]:
        """The rows of every stored image of one prompt and seed (any method), in store order."""
        with self._lock:
            got = self._db.execute("SELECT row FROM records WHERE prompt_id = ? AND seed = ? ORDER BY rowid",
                                   (prompt_id, seed)).fetchall()
        return [json.loads(r[0]) for r in got]

    # --- per-prompt aggregates (content-addressed; a cache of what the score rows give) --------

    def get_aggregates(self, keys: Sequence[str]) -> dict[str, str]:
        """``{key: value}`` of the cached aggregates among ``keys`` (``evaluation.prompt_cache``)."""
        out: dict[str, str] = {}
        with self._lock:
            for chunk in chunks(keys):
                q = f"SELECT key, value FROM aggregates WHERE key IN ({','.join('?' * len(chunk))})"
                out.update(self._db.execute(q, chunk).fetchall())
        return out

    def put_aggregates(self, items: dict[str, str]) -> None:
        """Cache aggregates by key. Index only: lost with it, recomputed from the score rows."""
        if items:
            with self._lock, index_db.transaction(self._db) as db:
                db.executemany("INSERT OR REPLACE INTO aggregates VALUES (?, ?)", items.items())

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query on the index (``store.index_db``'s tables), for callers that
        select by indexed columns (``evaluation.stored_configs``)."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()
