"""The on-disk conventions every area of a run store shares: the format marker, writer shards, row checksums.

Images (``store.run_store``), detector scores (``store.detections``) and the extraction cache all
open their root through :func:`open_store_root` and checksum their rows with :func:`row_checksum`,
so one folder is one store with one version, whichever area wrote first.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import uuid
from pathlib import Path
from typing import Any

from membench_eval.errors import StoreError
from membench_eval.store.atomic import write_atomic
from membench_eval.store.keys import canonical_json

STORE_FORMAT = "membench-run-store"
STORE_VERSION = 2
# Store versions this code reads; older ones hold images keyed without the method's source.
KNOWN_VERSIONS = (2,)


def default_shard_id() -> str:
    """``<host>-<pid>-<random>``: unique per writer, readable when debugging a shared store."""
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def row_checksum(row: dict[str, Any]) -> str:
    """sha256 of a row's canonical JSON without its own ``row_sha256`` (and without ``time``'s
    float formatting mattering: canonical JSON is stable).

    Rows are always JSON round-tripped before this is called (read from a shard, or
    ``json.loads(json.dumps(...))`` before writing): string keys, lists, finite numbers. For those
    ``json.dumps`` with canonical_json's settings gives canonical_json's text exactly, without its
    per-value Python walk (measured: 21 of the 27 s it took to open a 35,000-image store)."""
    body = {k: v for k, v in row.items() if k != "row_sha256"}
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        text = canonical_json(body)  # not JSON-shaped: the general path (and its error message)
    return hashlib.sha256(text.encode()).hexdigest()


def open_store_root(root: str | os.PathLike) -> Path:
    """``root`` created if needed and its format checked (``check_store_format``); a StoreError
    naming the folder when it cannot be created. Every area of the store opens its root this way."""
    path = Path(root)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{path}: cannot create the run store ({exc.strerror or exc})") from None
    check_store_format(path)
    return path


def check_store_format(root: Path) -> None:
    """Check the ``STORE.json`` marker of ``root`` (written when absent): a StoreError when the
    folder is not a run store this code reads. Shared by every area of the store."""
    marker = root / "STORE.json"
    if marker.exists():
        try:
            meta = json.loads(marker.read_text())
        except ValueError as exc:
            raise StoreError(f"{marker}: not valid JSON ({exc})") from None
        if meta.get("format") != STORE_FORMAT:
            raise StoreError(f"{marker}: not a {STORE_FORMAT} store: {meta}")
        if meta.get("version") not in KNOWN_VERSIONS:
            raise StoreError(
                f"{marker}: run store format v{meta.get('version')} is not one this membench reads "
                f"(v{', v'.join(map(str, KNOWN_VERSIONS))}); its images were keyed without the method's source "
                "code, so none can be reused safely: use a new --store folder (or delete this one)")
        return
    try:
        write_atomic(marker, json.dumps({"format": STORE_FORMAT, "version": STORE_VERSION}).encode())
    except OSError as exc:
        raise StoreError(f"{marker}: cannot write the store marker ({exc.strerror or exc})") from None
