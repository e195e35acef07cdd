"""Memorized reference images: fetch each URL once, store by content hash, record coverage.

MemBench ships only URLs for its 151 memorized images, and many have died since. The reference
script stops in a debugger on the first dead link; here a dead link is recorded (with its reason)
and excluded, and every consumer reports coverage: how many memorized images are available and how
many trigger prompts are scorable (at least one of their images available).

Layout under ``<cache>/references/``:
  ``objects/ab/<sha256>.<ext>``  the original bytes (never re-encoded, so SSCD sees what was served)
  ``coverage.jsonl``             one record per fetch attempt; the last record for an image wins.
Each record is written and flushed as soon as its URL is done, so Ctrl-C loses nothing and a rerun
skips images already stored.

Every URL gets a total deadline (``total_timeout_s``) covering all its attempts and backoffs, enforced
while the body streams, so a server trickling bytes cannot hold a worker. A user's own URL list
(:func:`load_url_list`) goes through the same fetcher and limits as a suite's images.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from membench_eval.errors import DataError, MembenchError
from membench_eval.paths import cache_dir
from membench_eval.fetch.download import Deadline, DownloadTimeout, iter_body
from membench_eval.suites.loaders import _is_http_url, _read_text
from membench_eval.suites.types import MemorizedImage, Suite, memorized_image_id

OK, DEAD = "ok", "dead"
# Answers worth another try; any other non-200 status is final.
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif",
               "MPO": ".jpg"}


class FetchSettingsError(MembenchError, ValueError):
    """An invalid fetch setting (e.g. ``retries=-1``); one line naming the setting and the value."""

    def __init__(self, setting: str, value: object, requirement: str) -> None:
        self.setting, self.value, self.requirement = setting, value, requirement
        super().__init__(f"invalid {setting} {value!r}: must be {requirement}")


# setting -> (requirement, check). Timeouts must be finite and > 0: 0 or a negative value makes
# urllib3 raise ValueError mid-fetch, and inf would disable the very limit it sets.
_SETTING_RULES: dict[str, tuple[str, Callable[[object], bool]]] = {
    "connect_timeout_s": ("a finite number of seconds > 0", lambda v: _is_number(v) and 0 < v < math.inf),
    "read_timeout_s": ("a finite number of seconds > 0", lambda v: _is_number(v) and 0 < v < math.inf),
    "total_timeout_s": ("a finite number of seconds > 0", lambda v: _is_number(v) and 0 < v < math.inf),
    "backoff_s": ("a finite number of seconds >= 0", lambda v: _is_number(v) and 0 <= v < math.inf),
    "retries": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "workers": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "max_bytes": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "max_pixels": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_fetch_settings(settings: "FetchSettings") -> None:
    """Raise :class:`FetchSettingsError` for the first invalid setting, so a bad value fails before
    any request instead of marking reachable URLs dead (``retries=-1`` made no attempt at all)."""
    for setting, (requirement, ok) in _SETTING_RULES.items():
        value = getattr(settings, setting)
        if not ok(value):
            raise FetchSettingsError(setting, value, requirement)


@dataclass(frozen=True)
class FetchSettings:
    """Limits for fetching web images; defaults suit the real MemBench URLs, tests shrink them.

    Checked on construction (:func:`validate_fetch_settings`), so an invalid value never reaches
    the network code.
    """

    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    total_timeout_s: float = 120.0  # per URL, all attempts: a trickling server cannot hold a worker longer
    retries: int = 3  # extra attempts after the first, for timeouts / resets / 5xx / 429
    backoff_s: float = 1.0  # sleep backoff_s * 2**attempt between attempts
    max_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 64_000_000  # below PIL's decompression-bomb limit, above any real photo here
    workers: int = 8
    user_agent: str = "Mozilla/5.0 (compatible; membench-eval/0.1; reference image fetcher)"

    def __post_init__(self) -> None:
        validate_fetch_settings(self)


@dataclass(frozen=True)
class FetchRecord:
    """What happened to one URL: ``ok`` with the stored object, or ``dead`` with the reason."""

    image_id: str
    url: str
    status: str
    sha256: str | None = None
    path: str | None = None  # relative to the reference store root
    reason: str | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    fetched_at: str = ""


@dataclass(frozen=True)
class Coverage:
    """How much of a suite's memorized-image side can be scored."""

    images_ok: int
    images_total: int
    prompts_scorable: int
    prompts_total: int
    # image_id -> why it is unavailable (dead link reason, missing local file, not fetched yet)
    unavailable: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.images_ok == self.images_total

    def summary(self) -> str:
        def pct(a: int, b: int) -> str:
            return f"{100.0 * a / b:.1f}%" if b else "n/a"

        images = (f"reference images {self.images_ok}/{self.images_total} available "
                  f"({pct(self.images_ok, self.images_total)})")
        if not self.prompts_total:  # a plain URL list has no prompts to score
            return images
        return (f"{images}; trigger prompts scorable {self.prompts_scorable}/{self.prompts_total} "
                f"({pct(self.prompts_scorable, self.prompts_total)})")

    def to_dict(self) -> dict[str, object]:
        return {"images_ok": self.images_ok, "images_total": self.images_total,
                "prompts_scorable": self.prompts_scorable, "prompts_total": self.prompts_total,
                "unavailable": dict(self.unavailable)}


class ReferenceStore:
    """Content-addressed image objects plus the append-only coverage log."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else cache_dir() / "references"
        self.coverage_file = self.root / "coverage.jsonl"

    @classmethod
    def in_cache(cls, cache: str | os.PathLike | None = None) -> "ReferenceStore":
        return cls((Path(cache) if cache is not None else cache_dir()) / "references")

    def records(self) -> dict[str, FetchRecord]:
        """The latest record per image id (unreadable lines, e.g. cut by a crash, are skipped)."""
        latest: dict[str, FetchRecord] = {}
        if not self.coverage_file.is_file():
            return latest
        names = set(FetchRecord.__dataclass_fields__)
        with self.coverage_file.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    raw = json.loads(line)
                    record = FetchRecord(**{k: v for k, v in raw.items() if k in names})
                except (json.JSONDecodeError, TypeError):
                    continue
                latest[record.image_id] = record
        return latest

    def append(self, record: FetchRecord) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with self.coverage_file.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(record), sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def put(self, data: bytes, ext: str) -> tuple[str, str]:
        """Store bytes under their sha256; returns (sha256, path relative to the root)."""
        sha = hashlib.sha256(data).hexdigest()
        rel = f"objects/{sha[:2]}/{sha}{ext}"
        target = self.root / rel
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".obj-", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, target)
            finally:
                Path(tmp).unlink(missing_ok=True)
        return sha, rel

    def available(self, record: FetchRecord | None, url: str) -> Path | None:
        """The stored file for ``record`` if it is ok, for this URL, and still on disk."""
        if record is None or record.status != OK or record.url != url or not record.path:
            return None
        path = self.root / record.path
        return path if path.is_file() else None


class _Dead(Exception):
    """A final verdict for a URL (no retry)."""


class _Retry(Exception):
    """A transient failure (timeout, reset, 5xx): try again after a backoff."""


def _timeout_reason(url: str, seconds: float, received: int | None = None) -> str:
    """The recorded reason for a URL that ran out of time; starts with ``timeout:`` so reports
    can group these, and names the URL because the reason is also shown on its own."""
    got = f"; {received} bytes received" if received is not None else ""
    return f"timeout: {url} not complete within the total deadline of {seconds:g} s{got}"


class _OutOfTime(Exception):
    """The URL's total deadline passed: final, since retrying would only exceed it further."""


def _download_bytes(session, url: str, settings: FetchSettings, deadline: Deadline | None = None) -> bytes:
    """One attempt at ``url``'s body, within the byte limit and the URL's total ``deadline``."""
    import requests

    deadline = deadline or Deadline(settings.total_timeout_s)
    received = 0
    try:
        timeout = (deadline.clip(settings.connect_timeout_s), deadline.clip(settings.read_timeout_s))
        with session.get(url, stream=True, timeout=timeout,
                         headers={"User-Agent": settings.user_agent}, verify=True) as resp:
            if resp.status_code in _RETRY_STATUS:
                raise _Retry(f"HTTP {resp.status_code}")
            if resp.status_code != 200:
                raise _Dead(f"HTTP {resp.status_code}")
            ctype = resp.headers.get("Content-Type", "").lower()
            if "html" in ctype:
                raise _Dead(f"HTML page instead of an image (Content-Type {ctype.split(';')[0]})")
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > settings.max_bytes:
                raise _Dead(f"too large: {declared} bytes > limit {settings.max_bytes}")
            buf = bytearray()
            for chunk in iter_body(resp, url, deadline=deadline, read_timeout=settings.read_timeout_s):
                buf.extend(chunk)
                received = len(buf)
                if len(buf) > settings.max_bytes:
                    raise _Dead(f"too large: more than {settings.max_bytes} bytes")
            return bytes(buf)
    except DownloadTimeout as exc:
        raise _OutOfTime(_timeout_reason(url, exc.seconds, exc.received)) from None
    except requests.exceptions.SSLError as exc:  # a TLS failure does not fix itself: never retry insecurely
        raise _Dead(f"TLS error: {exc}") from None
    except (requests.exceptions.Timeout, requests.exceptions.ConnectionError,
            requests.exceptions.ChunkedEncodingError) as exc:
        if deadline.expired():  # the clipped connect/read timeout fired: the deadline, not the server
            raise _OutOfTime(_timeout_reason(url, settings.total_timeout_s, received)) from None
        raise _Retry(f"{type(exc).__name__}: {exc}") from None
    except requests.exceptions.RequestException as exc:
        raise _Dead(f"{type(exc).__name__}: {exc}") from None


def _looks_like_html(data: bytes) -> bool:
    head = data[:1024].lstrip().lower()
    return head.startswith((b"<!doctype", b"<html", b"<?xml")) or b"<html" in head or b"<body" in head


def _decode(data: bytes, settings: FetchSettings) -> tuple[str, int, int]:
    """Check that ``data`` is a whole image within the pixel limit; returns (format, width, height)."""
    from PIL import Image

    if not data:
        raise _Dead("empty response body")
    if _looks_like_html(data):
        raise _Dead("HTML page instead of an image (body)")
    try:
        # Image.open reads only the header, so the pixel check happens before any decoding.
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > settings.max_pixels:
                raise _Dead(f"too many pixels: {width}x{height} > limit {settings.max_pixels}")
            fmt = img.format or "unknown"
            img.load()  # decodes fully: a truncated file fails here
    except _Dead:
        raise
    except Image.DecompressionBombError as exc:
        raise _Dead(f"too many pixels: {exc}") from None
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError... for bad files
        raise _Dead(f"not a decodable image: {type(exc).__name__}: {exc}") from None
    return fmt, width, height


def _backoff(settings: FetchSettings, attempt: int, deadline: Deadline) -> bool:
    """Sleep before retry ``attempt`` (never past the deadline); False if no time is left."""
    if settings.backoff_s > 0:
        time.sleep(deadline.clip(settings.backoff_s * 2 ** (attempt - 1)))
    return not deadline.expired()


def fetch_one(image: MemorizedImage, store: ReferenceStore, settings: FetchSettings, session) -> FetchRecord:
    """Fetch one URL with retries, all within ``settings.total_timeout_s``; always returns a record
    (never raises for a bad link). A URL that runs out of time is dead with a ``timeout:`` reason."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    deadline = Deadline(settings.total_timeout_s)
    last = "no attempt made"
    for attempt in range(settings.retries + 1):
        if attempt and not _backoff(settings, attempt, deadline):
            reason = (f"{_timeout_reason(image.source, settings.total_timeout_s)} "
                      f"(after {attempt} attempts; last error: {last})")
            return FetchRecord(image.image_id, image.source, DEAD, reason=reason, fetched_at=now)
        try:
            data = _download_bytes(session, image.source, settings, deadline)
            fmt, width, height = _decode(data, settings)
        except _Retry as exc:
            last = str(exc)
            continue
        except _OutOfTime as exc:
            return FetchRecord(image.image_id, image.source, DEAD, reason=f"{exc} (attempt {attempt + 1})",
                               fetched_at=now)
        except _Dead as exc:
            return FetchRecord(image.image_id, image.source, DEAD, reason=str(exc), fetched_at=now)
        sha, rel = store.put(data, _EXTENSIONS.get(fmt, ".img"))
        return FetchRecord(image.image_id, image.source, OK, sha256=sha, path=rel, format=fmt,
                           width=width, height=height, bytes=len(data), fetched_at=now)
    reason = f"{last} (after {settings.retries + 1} attempts)"
    return FetchRecord(image.image_id, image.source, DEAD, reason=reason, fetched_at=now)


def fetch_references(
    images: Iterable[MemorizedImage],
    cache: str | os.PathLike | None = None,
    *,
    settings: FetchSettings | None = None,
    store: ReferenceStore | None = None,
    progress: bool | None = None,
    retry_dead: bool = True,
) -> dict[str, FetchRecord]:
    """Fetch every distinct web image once (already-stored ones are skipped); returns the latest
    record per image id. Local images are ignored. Dead links are recorded, never raised."""
    import requests
    from tqdm import tqdm

    settings = settings or FetchSettings()
    validate_fetch_settings(settings)  # again: a settings object may bypass __post_init__
    store = store or ReferenceStore.in_cache(cache)
    records = store.records()
    todo: dict[str, MemorizedImage] = {}
    for image in images:
        if image.is_local or image.image_id in todo:
            continue
        record = records.get(image.image_id)
        if store.available(record, image.source) is not None:
            continue
        if record is not None and record.status == DEAD and record.url == image.source and not retry_dead:
            continue
        todo[image.image_id] = image
    if not todo:
        return records

    local = threading.local()

    def work(image: MemorizedImage) -> FetchRecord:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return fetch_one(image, store, settings, local.session)

    with ThreadPoolExecutor(max_workers=max(1, settings.workers)) as pool, \
            tqdm(total=len(todo), unit="img", desc="reference images",
                 disable=(not progress) if progress is not None else None) as bar:
        futures = [pool.submit(work, image) for image in todo.values()]
        try:
            for future in as_completed(futures):
                record = future.result()
                store.append(record)  # one writer (this thread); flushed per record
                records[record.image_id] = record
                bar.update(1)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return records


def reference_paths(suite: Suite, cache: str | os.PathLike | None = None, *,
                    store: ReferenceStore | None = None) -> tuple[dict[str, Path], Coverage]:
    """Paths of the suite's available memorized images, and its coverage. Never touches the network.

    Local images (the mini suite) are resolved against ``suite.reference_dir``; web images come
    from the reference store filled by :func:`fetch_references`.
    """
    store = store or ReferenceStore.in_cache(cache)
    records = store.records() if any(not im.is_local for im in suite.memorized.values()) else {}
    paths: dict[str, Path] = {}
    unavailable: dict[str, str] = {}
    for image_id, image in suite.memorized.items():
        if image.is_local:
            path = Path(image.source)
            if not path.is_absolute() and suite.reference_dir is not None:
                path = suite.reference_dir / path
            if path.is_file():
                paths[image_id] = path
            else:
                unavailable[image_id] = f"missing local file {path}"
            continue
        record = records.get(image_id)
        found = store.available(record, image.source)
        if found is not None:
            paths[image_id] = found
        elif record is not None and record.url == image.source and record.status == DEAD:
            unavailable[image_id] = f"dead link: {record.reason}"
        elif record is not None and record.status == OK and record.url == image.source:
            unavailable[image_id] = "stored file missing from the cache (fetch again)"
        else:
            unavailable[image_id] = f"not fetched yet (membench data fetch-references --suite {suite.cli_name})"
    prompts = suite.trigger.prompts if suite.trigger is not None else ()
    scorable = sum(1 for p in prompts if any(i in paths for i in p.memorized_ids))
    coverage = Coverage(images_ok=len(paths), images_total=len(suite.memorized),
                        prompts_scorable=scorable, prompts_total=len(prompts), unavailable=unavailable)
    return paths, coverage


def fetch_suite_references(suite: Suite, cache: str | os.PathLike | None = None, *,
                           settings: FetchSettings | None = None, progress: bool | None = None,
                           retry_dead: bool = True,
                           store: ReferenceStore | None = None) -> tuple[dict[str, Path], Coverage]:
    """Fetch a suite's web images (resumable), then report what is available. ``store`` defaults to
    the cache's reference store (where scoring looks); a URL list passes its own folder."""
    store = store or ReferenceStore.in_cache(cache)
    fetch_references(suite.memorized.values(), settings=settings, store=store, progress=progress,
                     retry_dead=retry_dead)
    return reference_paths(suite, store=store)


_URL_TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}


def _url_or_error(path: Path, line: int, value: str) -> str:
    if not _is_http_url(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise DataError(path, f"not an http(s) URL: {shown!r}", row=line, field="url")
    return value


def _url_lines(path: Path, text: str) -> list[tuple[int, str]]:
    """(line number, URL) of a one-URL-per-line file. Only whole-line ``#`` comments are skipped:
    a ``#`` inside a URL is its fragment."""
    found = []
    for line, raw in enumerate(text.splitlines(), start=1):
        value = raw.strip()
        if value and not value.startswith("#"):
            found.append((line, _url_or_error(path, line, value)))
    return found


def _url_table(path: Path, text: str, delimiter: str) -> list[tuple[int, str]]:
    """(line number, URL) from the ``url`` column of a CSV/TSV file (blank cells are an error)."""
    reader = csv.DictReader(text.splitlines(keepends=True), delimiter=delimiter)
    try:
        if reader.fieldnames is None or "url" not in [n.strip() for n in reader.fieldnames]:
            raise DataError(path, f"no 'url' column (header is {reader.fieldnames!r})", row=1, field="url")
        column = next(n for n in reader.fieldnames if n.strip() == "url")
        found = []
        for row in reader:
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue  # blank line
            found.append((reader.line_num, _url_or_error(path, reader.line_num, (row.get(column) or "").strip())))
    except csv.Error as exc:
        raise DataError(path, f"malformed {path.suffix[1:].upper()}: {exc}", row=reader.line_num) from None
    return found


def load_url_list(path: str | os.PathLike) -> list[MemorizedImage]:
    """A user's own image URLs: one per line (``#`` comment lines and blank lines skipped), or the
    ``url`` column of a ``.csv`` / ``.tsv`` file. A line that is not an http(s) URL is a DataError
    naming the file and line, so a typo never silently shrinks the list. Repeats are kept once."""
    path = Path(path)
    text = _read_text(path)
    delimiter = _URL_TABLE_SUFFIXES.get(path.suffix.lower())
    entries = _url_table(path, text, delimiter) if delimiter else _url_lines(path, text)
    if not entries:
        raise DataError(path, "no URLs (only blank or comment lines)")
    images: dict[str, MemorizedImage] = {}
    for _, url in entries:
        images.setdefault(memorized_image_id(url), MemorizedImage(memorized_image_id(url), url))
    return list(images.values())


def url_list_suite(path: str | os.PathLike) -> Suite:
    """A URL list as a prompt-less suite, so it is fetched and reported by exactly the code path a
    benchmark suite uses (same limits, sha256 store, coverage log)."""
    images = load_url_list(path)
    return Suite(name=f"urls:{Path(path).name}", model="(none: URL list)",
                 memorized={im.image_id: im for im in images})
