"""Find an upstream file: a local data dir, else the cache, else download it (sha256-checked).

The manifest (``benchmark_data/manifest.json``) pins each file's source URL, size and sha256, so
every number the harness prints is tied to exact bytes. A local data dir (``--data-dir`` or
``$MEMBENCH_DATA_DIR``) has the layout ``membench/``, ``coco/``, ``webster/`` (``sscd/`` for the
SSCD weights) and is verified like a download: a wrong file there is an error, not a fallback.
Downloads keep TLS verification on, stream to a temporary file and are renamed into place only
after the checksum matches, so an interrupted download never leaves a half file behind.

:func:`iter_body` is the one body reader for every download (manifest files here, reference images
in :mod:`membench_eval.fetch.image_fetch`): it can enforce a total deadline while streaming.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

from membench_eval.errors import DataError
from membench_eval.paths import BENCHMARK_DATA, DATA_DIR_ENV, cache_dir, local_data_dir

MANIFEST_PATH = BENCHMARK_DATA / "manifest.json"
CONNECT_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 120.0
_CHUNK = 1 << 20
# Extra time allowed for a clipped socket timeout to be seen as "the deadline passed" (timers round up).
_DEADLINE_SLACK_S = 0.01


class UnverifiedFileWarning(UserWarning):
    """A file was used although the manifest pins no sha256 for it."""


@dataclass(frozen=True)
class ManifestEntry:
    """One upstream file: where it lives in a data dir, where it comes from, and its checksum."""

    name: str
    path: str  # relative to a data dir / the cache's data/ folder
    url: str
    sha256: str | None = None
    size: int | None = None
    archive_member: str | None = None  # the url is a zip archive; this member is the file
    mirrors: tuple[str, ...] = ()
    description: str = ""
    extra: dict[str, object] = field(default_factory=dict, compare=False)

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url, *self.mirrors)


def load_manifest(path: str | os.PathLike | None = None) -> dict[str, ManifestEntry]:
    """Read the manifest; each entry is checked so a typo fails here, not mid-download."""
    path = Path(path) if path is not None else MANIFEST_PATH
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "manifest not found (is this a source checkout?)") from None
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON: {exc.msg}", row=exc.lineno) from None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        raise DataError(path, "no 'files' object", field="files")
    entries: dict[str, ManifestEntry] = {}
    known = {"path", "url", "sha256", "size", "archive_member", "mirrors", "description"}
    for name, raw in files.items():
        if not isinstance(raw, dict) or not isinstance(raw.get("path"), str) or not isinstance(raw.get("url"), str):
            raise DataError(path, "entry needs string 'path' and 'url'", row=name)
        sha = raw.get("sha256")
        if sha is not None and (not isinstance(sha, str) or len(sha) != 64):
            raise DataError(path, f"sha256 must be 64 hex characters or null, got {sha!r}", row=name, field="sha256")
        size = raw.get("size")
        if size is not None and (not isinstance(size, int) or size < 0):
            raise DataError(path, f"size must be a non-negative integer or null, got {size!r}", row=name, field="size")
        if Path(raw["path"]).is_absolute() or ".." in Path(raw["path"]).parts:
            raise DataError(path, "path must be relative and stay inside the data dir", row=name, field="path")
        entries[name] = ManifestEntry(
            name=name, path=raw["path"], url=raw["url"], sha256=sha.lower() if sha else None, size=size,
            archive_member=raw.get("archive_member"), mirrors=tuple(raw.get("mirrors", ())),
            description=raw.get("description", ""),
            extra={k: v for k, v in raw.items() if k not in known},
        )
    return entries


_HASH_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so repeated resolves stay cheap."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_MEMO:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                digest.update(chunk)
        _HASH_MEMO[key] = digest.hexdigest()
    return _HASH_MEMO[key]


def require_sha256(path: Path, expected: str | None, *, missing: str, corrupted: str, rebuild: str) -> None:
    """A shipped file must exist and hash to ``expected``; otherwise a one-line
    ``MissingWeightsError`` naming the file, the checksum and how to rebuild it.

    ``missing`` / ``corrupted`` are the phrases after the path ("mini CLIP weights missing")."""
    from membench_eval.errors import MissingWeightsError

    if not path.is_file():
        raise MissingWeightsError(f"{path}: {missing} (expected sha256 {expected}); {rebuild}")
    digest = file_sha256(path)
    if digest != expected:
        raise MissingWeightsError(f"{path}: {corrupted} (sha256 {digest[:16]}..., expected {expected}); {rebuild}")


def verify_file(entry: ManifestEntry, path: Path) -> str | None:
    """Why ``path`` is not the manifest's file (``None`` if it is). Warns when no sha256 is pinned."""
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        return f"size {size} bytes, expected {entry.size}"
    actual = file_sha256(path)
    if entry.sha256 is None:
        warnings.warn(
            f"UNVERIFIED: {entry.name} has no pinned sha256 in the manifest; using {path} unchecked "
            f"(its sha256 is {actual}; pin it in benchmark_data/manifest.json once verified)",
            UnverifiedFileWarning, stacklevel=3,
        )
        return None
    if actual != entry.sha256:
        return f"sha256 {actual}, expected {entry.sha256}"
    return None


def data_cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """Where downloaded upstream files live: ``<cache>/data/`` (same layout as a data dir)."""
    return (Path(cache) if cache is not None else cache_dir()) / "data"


def resolve_file(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    cache: str | os.PathLike | None = None,
    manifest: Mapping[str, ManifestEntry] | None = None,
    download: bool = True,
    progress: bool | None = None,
) -> Path:
    """Path of the verified upstream file ``name``: local data dir, else cache, else download.

    ``data_dir`` defaults to ``$MEMBENCH_DATA_DIR``. A file present in the data dir but with the
    wrong size or sha256 is an error (someone's copy is wrong; silently downloading would hide it).
    ``download=False`` turns a miss into an error instead of a network access.
    """
    entries = manifest if manifest is not None else load_manifest()
    if name not in entries:
        raise DataError(MANIFEST_PATH, f"unknown file {name!r}; known: {', '.join(sorted(entries))}")
    entry = entries[name]
    local = local_data_dir(data_dir)
    searched: list[str] = []
    if local is not None:
        candidate = local / entry.path
        searched.append(str(candidate))
        if candidate.is_file():
            problem = verify_file(entry, candidate)
            if problem:
                raise DataError(candidate, f"not the upstream {entry.name}: {problem}")
            return candidate
    cached = data_cache_dir(cache) / entry.path
    searched.append(str(cached))
    if cached.is_file():
        if verify_file(entry, cached) is None:
            return cached
        cached.unlink()  # our own cache holds a stale or corrupt copy: fetch it again
    if not download:
        raise DataError(entry.path, f"{entry.name} not found (looked in {', '.join(searched)}); "
                        f"pass --data-dir or set ${DATA_DIR_ENV}, or allow the download")
    errors: list[str] = []
    for url in entry.urls:
        try:
            _download_entry(entry, url, cached, progress=progress)
            return cached
        except DataError as exc:
            errors.append(str(exc))
    raise DataError(entry.path, f"could not obtain {entry.name} (looked in {', '.join(searched)}; "
                    f"download: {' | '.join(errors)}); pass --data-dir or set ${DATA_DIR_ENV} for offline use")


def _download_entry(entry: ManifestEntry, url: str, dest: Path, *, progress: bool | None) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if entry.archive_member is None:
        tmp = download_url(url, dest.parent, expected_size=entry.size, expected_sha256=entry.sha256,
                           progress=progress, label=entry.name)
    else:
        archive = download_url(url, dest.parent, progress=progress, label=f"{entry.name} (archive)")
        try:
            tmp = _extract_member(archive, entry.archive_member, dest.parent, url)
        finally:
            archive.unlink(missing_ok=True)
    try:
        problem = verify_file(entry, tmp)
        if problem:
            raise DataError(url, f"downloaded {entry.name} does not match the manifest: {problem}")
        os.replace(tmp, dest)  # atomic: dest is either absent or complete and verified
    finally:
        tmp.unlink(missing_ok=True)


class Deadline:
    """A total time budget for one URL, so a server trickling bytes cannot hold a download forever.

    A socket timeout bounds one ``recv``; a trickle of a few bytes per ``recv`` never trips it. The
    deadline bounds the whole request: :meth:`clip` cuts every socket timeout to the time left.
    ``seconds=None`` means no total limit (large manifest files on a slow line are legitimate).
    """

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds if seconds is not None else None

    def remaining(self) -> float | None:
        return None if self.end is None else self.end - time.monotonic()

    def expired(self) -> bool:
        left = self.remaining()
        return left is not None and left <= _DEADLINE_SLACK_S

    def clip(self, timeout: float) -> float:
        """``timeout`` or the time left, whichever is smaller (never <= 0: sockets reject that)."""
        left = self.remaining()
        return timeout if left is None else max(min(timeout, left), 0.001)


class DownloadTimeout(DataError):
    """The total deadline for one URL passed; the message names the URL and the limit."""

    def __init__(self, url: str, seconds: float, received: int) -> None:
        self.url, self.seconds, self.received = url, seconds, received
        super().__init__(url, f"timed out: {self.detail}")

    @property
    def detail(self) -> str:
        return (f"not complete within the total deadline of {self.seconds:g} s "
                f"({self.received} bytes received)")


def _socket_of(raw: object) -> socket.socket | None:
    """The socket under a urllib3 response (urllib3 2.x and 1.26 layouts), or None if hidden."""
    sock = getattr(getattr(raw, "connection", None), "sock", None) or \
        getattr(getattr(raw, "_connection", None), "sock", None)
    if sock is None:  # http.client response -> BufferedReader -> SocketIO -> socket
        sock = getattr(getattr(getattr(getattr(raw, "_fp", None), "fp", None), "raw", None), "_sock", None)
    return sock if hasattr(sock, "settimeout") else None


def iter_body(resp, url: str, *, deadline: Deadline, read_timeout: float,
              chunk_size: int = 64 * 1024) -> Iterator[bytes]:
    """The body of a streamed ``requests`` response, chunk by chunk, never running past ``deadline``.

    ``read1`` returns what one ``recv`` gives, so the elapsed time is checked between small reads
    (``iter_content`` blocks until a whole chunk arrives, which a trickling server never sends), and
    before each read the socket timeout is cut to the time left. urllib3 errors are raised as the
    ``requests`` exceptions ``iter_content`` would raise, so callers handle one family.
    """
    import requests
    from urllib3 import exceptions as u3

    raw = resp.raw
    read = getattr(raw, "read1", None) or raw.read  # urllib3 < 2.3 lacks read1: deadline checked per chunk
    sock = _socket_of(raw)
    received = 0
    while True:
        if deadline.expired():
            raise DownloadTimeout(url, deadline.seconds or 0.0, received)
        if sock is not None:
            try:
                sock.settimeout(deadline.clip(read_timeout))
            except OSError:
                sock = None  # closed under us; the read below reports it
        try:
            chunk = read(chunk_size, decode_content=True)
        except (u3.ReadTimeoutError, socket.timeout) as exc:
            if deadline.expired():
                raise DownloadTimeout(url, deadline.seconds or 0.0, received) from None
            raise requests.exceptions.ReadTimeout(f"read timed out after {read_timeout:g} s: {exc}") from None
        except u3.SSLError as exc:
            raise requests.exceptions.SSLError(exc) from None
        except u3.ProtocolError as exc:
            raise requests.exceptions.ChunkedEncodingError(exc) from None
        except u3.DecodeError as exc:
            raise requests.exceptions.ContentDecodingError(exc) from None
        if not chunk:
            return
        received += len(chunk)
        yield chunk


def download_url(
    url: str,
    directory: Path,
    *,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
    progress: bool | None = None,
    label: str = "",
    timeout: tuple[float, float] = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
    deadline_s: float | None = None,
) -> Path:
    """Stream ``url`` into a temporary file in ``directory`` (TLS verified) and return its path.

    The caller renames it into place; on any failure the temporary file is removed. ``deadline_s``
    bounds the whole download (:class:`DownloadTimeout`); by default only each read is bounded.
    """
    import requests
    from tqdm import tqdm

    connect_timeout, read_timeout = timeout
    deadline = Deadline(deadline_s)
    fd, tmp_name = tempfile.mkstemp(prefix=".download-", suffix=".part", dir=directory)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    written = 0
    try:
        with os.fdopen(fd, "wb") as out, requests.get(
                url, stream=True, verify=True,
                timeout=(deadline.clip(connect_timeout), deadline.clip(read_timeout))) as resp:
            if resp.status_code != 200:
                raise DataError(url, f"HTTP {resp.status_code}")
            total = int(resp.headers.get("Content-Length") or 0) or expected_size
            with tqdm(total=total, unit="B", unit_scale=True, desc=label or Path(url).name,
                      disable=(not progress) if progress is not None else None, leave=False) as bar:
                for chunk in iter_body(resp, url, deadline=deadline, read_timeout=read_timeout,
                                       chunk_size=_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
                    if expected_size is not None and written > expected_size:
                        raise DataError(url, f"larger than the expected {expected_size} bytes")
    except requests.RequestException as exc:
        tmp.unlink(missing_ok=True)
        if deadline.expired():
            raise DownloadTimeout(url, deadline.seconds or 0.0, written) from None
        raise DataError(url, f"download failed: {type(exc).__name__}: {exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if expected_size is not None and written != expected_size:
        tmp.unlink(missing_ok=True)
        raise DataError(url, f"downloaded {written} bytes, expected {expected_size}")
    if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
        tmp.unlink(missing_ok=True)
        raise DataError(url, f"sha256 {digest.hexdigest()}, expected {expected_sha256}")
    return tmp


def _extract_member(archive: Path, member: str, directory: Path, url: str) -> Path:
    """Copy one member out of a zip archive into a temporary file (no full extraction)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError:
                raise DataError(url, f"archive has no member {member!r}") from None
            fd, tmp_name = tempfile.mkstemp(prefix=".extract-", suffix=".part", dir=directory)
            try:
                with os.fdopen(fd, "wb") as out, zf.open(info) as src:
                    shutil.copyfileobj(src, out, _CHUNK)
            except BaseException:
                Path(tmp_name).unlink(missing_ok=True)
                raise
            return Path(tmp_name)
    except zipfile.BadZipFile as exc:
        raise DataError(url, f"not a valid zip archive: {exc}") from None
