"""Where a run store's SQLite index lives: beside the log on a local disk, in the user cache otherwise.

Why it matters: SQLite locks with POSIX byte-range locks and, in WAL mode, a shared-memory file
(``-shm``) mapped by every process. Neither is reliable on a network file system (NFS, SMB, Lustre,
CephFS, GPFS, FUSE mounts): SQLite's own documentation says WAL "does not work over a network
filesystem" and that broken NFS locking corrupts databases. The JSONL shards are the durable,
NFS-safe log; the index is only a cache of it, so it can live wherever locking is safe:

- ``$MEMBENCH_STORE_INDEX_DIR`` when set: ``<dir>/<hash of host + store path>.sqlite``;
- a store on a local file system (ext4, xfs, btrfs, tmpfs, overlay, ...): ``<store>/index/<host>.sqlite``
  (removed with the store; one file per host, so a store later shared never shares an index);
- a store on a network or unknown file system, or one this process cannot write (a read-only
  mount of a published store): ``<user cache>/store-index/<hash of host + store path>.sqlite``
  (per host by construction; every host indexes the shared log itself).
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

INDEX_DIR_ENV = "MEMBENCH_STORE_INDEX_DIR"
LOCAL_FS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs", "f2fs", "jfs",
                      "reiserfs", "ramfs", "apfs", "hfs", "ntfs3", "vfat", "exfat", "bcachefs"})


def host_name() -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname()) or "host"


def filesystem_type(path: Path) -> str | None:
    """The type of the file system holding ``path`` (Linux ``/proc/self/mountinfo``), or None."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    target = str(path.resolve())
    best, fstype = -1, None
    for line in lines:
        left, _, right = line.partition(" - ")
        parts, tail = left.split(), right.split()
        if len(parts) < 5 or not tail:
            continue
        mount = parts[4].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > best:
            best, fstype = len(mount), tail[0]
    return fstype


def index_path(root: Path) -> Path:
    """The SQLite file indexing the store at ``root`` on this host (see the module docstring)."""
    tag = hashlib.sha256(f"{host_name()}\n{root.resolve()}".encode()).hexdigest()[:24]
    override = os.environ.get(INDEX_DIR_ENV)
    if override:
        return Path(override).expanduser() / f"{tag}.sqlite"
    if filesystem_type(root) in LOCAL_FS and os.access(root, os.W_OK):
        return root / "index" / f"{host_name()}.sqlite"
    from membench_eval.paths import cache_dir

    return cache_dir() / "store-index" / f"{tag}.sqlite"
