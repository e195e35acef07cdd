"""The per-URL total deadline and the fetch-setting checks, against a 127.0.0.1 server that
trickles bytes, stalls its headers or keeps answering 503 (never the internet)."""

from __future__ import annotations

import dataclasses
import io
import math
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest
from PIL import Image

from membench_eval.errors import MembenchError
from membench_eval.fetch.download import DownloadTimeout, download_url
from membench_eval.fetch.reference_store import ReferenceStore
from membench_eval.fetch.settings import FetchSettings, FetchSettingsError
from membench_eval.suites.references import fetch_references
from membench_eval.suites.types import MemorizedImage, memorized_image_id
from tests.loopback_http import LoopbackServer, QuietHandler

_buf = io.BytesIO()
Image.effect_noise((128, 128), 60).convert("RGB").save(_buf, "JPEG", quality=95)
BODY = _buf.getvalue()
TRICKLE_BYTES, TRICKLE_GAP_S = 4, 0.1  # 40 bytes/s: the whole image would take minutes
DEADLINE_S = 1.0
# The read timeout is larger than the trickle's gaps and the header stall is shorter than the
# read timeout, so only the total deadline can end these requests early.
SETTINGS = FetchSettings(connect_timeout_s=2.0, read_timeout_s=2.5, total_timeout_s=DEADLINE_S, retries=2,
                         backoff_s=0.0, max_bytes=200_000, max_pixels=1_000_000, workers=2)
WELL_UNDER_S = 3.0


class _Server(LoopbackServer):
    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        server = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                server.hits[self.path] += 1
                try:
                    if self.path == "/trickle.jpg":
                        self._headers(len(BODY))
                        for start in range(0, min(len(BODY), 100 * TRICKLE_BYTES), TRICKLE_BYTES):  # <= 10 s
                            self.wfile.write(BODY[start:start + TRICKLE_BYTES])
                            time.sleep(TRICKLE_GAP_S)
                    elif self.path == "/stall-headers.jpg":
                        time.sleep(2.0)
                        self._headers(len(BODY))
                        self.wfile.write(BODY)
                    elif self.path == "/busy.jpg":
                        self.send_error(503)
                    elif self.path == "/good.jpg":
                        self._headers(len(BODY))
                        self.wfile.write(BODY)
                    else:
                        self.send_error(404)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up: expected

            def _headers(self, length: int) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(length))
                self.end_headers()

        super().__init__(Handler)


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.close()


def image(url: str) -> MemorizedImage:
    return MemorizedImage(memorized_image_id(url), url)


def _fetch_timed(tmp_path: Path, url: str, settings: FetchSettings = SETTINGS):
    start = time.monotonic()
    records = fetch_references([image(url)], settings=settings, store=ReferenceStore(tmp_path / "refs"),
                               progress=False)
    return records[memorized_image_id(url)], time.monotonic() - start


def test_trickling_body_stops_at_the_total_deadline(tmp_path: Path, server: _Server) -> None:
    url = server.url("/trickle.jpg")
    record, elapsed = _fetch_timed(tmp_path, url)
    print(f"trickle: ended after {elapsed:.2f} s against a {DEADLINE_S:g} s deadline")
    assert DEADLINE_S * 0.9 <= elapsed < WELL_UNDER_S
    assert record.status == "dead" and record.url == url
    assert record.reason.startswith("timeout: ") and url in record.reason
    assert f"total deadline of {DEADLINE_S:g} s" in record.reason and "bytes received" in record.reason
    assert server.hits["/trickle.jpg"] == 1  # the deadline is per URL: no retry after it passed


def test_stalled_headers_are_cut_at_the_deadline_not_the_read_timeout(tmp_path: Path, server: _Server) -> None:
    url = server.url("/stall-headers.jpg")
    record, elapsed = _fetch_timed(tmp_path, url)
    assert elapsed < SETTINGS.read_timeout_s  # the socket timeout was clipped to the time left
    assert record.status == "dead" and record.reason.startswith("timeout: ") and url in record.reason


def test_retries_and_backoff_share_the_deadline(tmp_path: Path, server: _Server) -> None:
    url = server.url("/busy.jpg")
    settings = dataclasses.replace(SETTINGS, retries=20, backoff_s=0.2)  # ~3.7 min of backoff unbounded
    record, elapsed = _fetch_timed(tmp_path, url, settings)
    assert elapsed < WELL_UNDER_S
    assert record.status == "dead" and record.reason.startswith("timeout: ") and url in record.reason
    assert "last error: HTTP 503" in record.reason and 1 < server.hits["/busy.jpg"] < 21


def test_good_image_within_the_deadline_still_works(tmp_path: Path, server: _Server) -> None:
    record, _ = _fetch_timed(tmp_path, server.url("/good.jpg"))
    assert record.status == "ok" and record.bytes == len(BODY)


def test_download_url_deadline_names_the_url(tmp_path: Path, server: _Server) -> None:
    url = server.url("/trickle.jpg")
    start = time.monotonic()
    with pytest.raises(DownloadTimeout) as info:
        download_url(url, tmp_path, progress=False, timeout=(2.0, 2.5), deadline_s=DEADLINE_S)
    assert time.monotonic() - start < WELL_UNDER_S
    assert str(info.value).startswith(f"{url}: timed out: ") and f"{DEADLINE_S:g} s" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # the partial file is removed


@pytest.mark.parametrize(
    ("setting", "value"),
    [("retries", -1), ("retries", 1.5), ("retries", True), ("read_timeout_s", 0), ("read_timeout_s", -1.0),
     ("read_timeout_s", math.nan), ("read_timeout_s", math.inf), ("connect_timeout_s", 0.0),
     ("total_timeout_s", -5), ("backoff_s", -0.1), ("workers", 0), ("max_bytes", 0)],
)
def test_invalid_settings_are_one_line_errors(setting: str, value: object) -> None:
    with pytest.raises(FetchSettingsError) as info:
        FetchSettings(**{setting: value})
    assert isinstance(info.value, MembenchError)  # the CLI prints it as one line, exit 2
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"invalid {setting} {value!r}: must be ")


def test_fetch_references_checks_settings_before_any_request(tmp_path: Path, server: _Server) -> None:
    settings = FetchSettings()
    object.__setattr__(settings, "retries", -1)  # bypasses __post_init__, as a hand-made object could
    with pytest.raises(FetchSettingsError, match="invalid retries -1"):
        fetch_references([image(server.url("/good.jpg"))], settings=settings,
                         store=ReferenceStore(tmp_path / "refs"), progress=False)
    assert sum(server.hits.values()) == 0 and not (tmp_path / "refs").exists()
