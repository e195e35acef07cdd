"""The safe fetcher of one web image: retries, a total deadline, byte and pixel limits, TLS on.

Every URL gets a total deadline (``total_timeout_s``) covering all its attempts and backoffs, enforced
while the body streams, so a server trickling bytes cannot hold a worker. A bad link never raises:
it becomes a ``dead`` record with its reason.
"""

from __future__ import annotations

import io
import time
from datetime import datetime, timezone
from typing import Protocol

from membench_eval.fetch.download import Deadline, DownloadTimeout, iter_body
from membench_eval.fetch.reference_store import DEAD, OK, FetchRecord, ReferenceStore
from membench_eval.fetch.settings import FetchSettings

# Answers worth another try; any other non-200 status is final.
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif",
               "MPO": ".jpg"}


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


class WebImage(Protocol):
    """What the fetcher needs of an image (a suite's ``MemorizedImage`` has both): fetch stays
    below the suites, which hand their images in."""

    @property
    def image_id(self) -> str: ...

    @property
    def source(self) -> str: ...


def fetch_one(image: WebImage, store: ReferenceStore, settings: FetchSettings, session) -> FetchRecord:
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
