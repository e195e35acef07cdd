"""The memorized-reference fetcher against a local HTTP server on 127.0.0.1 that misbehaves in
every way the real MemBench URLs do: dead, slow, truncated, HTML, oversized, flaky."""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest
from PIL import Image

from membench_eval.fetch.reference_store import ReferenceStore
from membench_eval.fetch.settings import FetchSettings
from membench_eval.suites.references import fetch_references, fetch_suite_references, reference_paths
from membench_eval.suites.types import MemorizedImage, Prompt, PromptSet, Suite, memorized_image_id
from tests.loopback_http import LoopbackServer, QuietHandler


def _jpeg(size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _noise_jpeg(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(buf, "JPEG", quality=95)
    return buf.getvalue()


GOOD = _jpeg((64, 48), (200, 30, 30))
OTHER = _jpeg((32, 32), (10, 200, 10))
NOISE = _noise_jpeg((128, 128))
TRUNCATED = NOISE[: len(NOISE) // 2]
HTML = b"<!DOCTYPE html><html><body>Image not found</body></html>"
_png = io.BytesIO()
Image.new("L", (2000, 1000)).save(_png, "PNG")
MANY_PIXELS = _png.getvalue()  # small file, 2 Mpx: over the test's 1 Mpx limit
BIG = NOISE + b"\0" * 300_000  # over the test's byte limit

SETTINGS = FetchSettings(connect_timeout_s=2.0, read_timeout_s=1.0, total_timeout_s=5.0, retries=1,
                         backoff_s=0.0, max_bytes=200_000, max_pixels=1_000_000, workers=4)


class _Server(LoopbackServer):
    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        server = self

        class Handler(QuietHandler):
            def send_body(self, body: bytes, ctype: str = "image/jpeg", length: bool = True) -> None:
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                if length:
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                path = self.path
                server.hits[path] += 1
                try:
                    if path in ("/good.jpg", "/good-again.jpg"):
                        self.send_body(GOOD if path == "/good.jpg" else OTHER)
                    elif path == "/slow.jpg":
                        time.sleep(2.5)  # past the 1 s read timeout (generous: CI machines are loaded)
                        self.send_body(GOOD)
                    elif path == "/truncated.jpg":
                        self.send_body(TRUNCATED)
                    elif path == "/page.html":
                        self.send_body(HTML, "text/html; charset=utf-8")
                    elif path == "/disguised.jpg":
                        self.send_body(HTML, "image/jpeg")  # lies about its type
                    elif path == "/many-pixels.png":
                        self.send_body(MANY_PIXELS, "image/png")
                    elif path == "/big.jpg":
                        self.send_body(BIG)
                    elif path == "/big-unannounced.jpg":
                        self.send_body(BIG, length=False)  # no Content-Length: limit enforced while reading
                    elif path == "/flaky.jpg" and server.hits[path] == 1:
                        self.send_error(503)
                    elif path == "/flaky.jpg":
                        self.send_body(NOISE)
                    else:
                        self.send_error(404)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): expected

        super().__init__(Handler)



@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.close()


def image(url: str) -> MemorizedImage:
    return MemorizedImage(memorized_image_id(url), url)


CASES = {  # path -> (status, words in the reason)
    "/good.jpg": ("ok", None),
    "/missing.jpg": ("dead", "HTTP 404"),
    "/slow.jpg": ("dead", "Timeout"),
    "/truncated.jpg": ("dead", "not a decodable image"),
    "/page.html": ("dead", "HTML"),
    "/disguised.jpg": ("dead", "HTML"),
    "/many-pixels.png": ("dead", "too many pixels"),
    "/big.jpg": ("dead", "too large"),
    "/big-unannounced.jpg": ("dead", "too large"),
    "/flaky.jpg": ("ok", None),
}


def test_fetch_every_failure_kind_without_stopping(tmp_path: Path, server: _Server) -> None:
    images = [image(server.url(p)) for p in CASES]
    images.append(image(server.url("/good.jpg")))  # the same URL twice is fetched once
    store = ReferenceStore(tmp_path / "refs")
    records = fetch_references(images, settings=SETTINGS, store=store, progress=False)

    for path, (status, words) in CASES.items():
        record = records[memorized_image_id(server.url(path))]
        assert record.status == status, (path, record)
        if words:
            assert words in (record.reason or ""), (path, record.reason)
    good = records[memorized_image_id(server.url("/good.jpg"))]
    assert good.sha256 == hashlib.sha256(GOOD).hexdigest()
    assert (store.root / good.path).read_bytes() == GOOD and good.path.startswith(f"objects/{good.sha256[:2]}/")
    assert (good.format, good.width, good.height) == ("JPEG", 64, 48)
    assert server.hits["/good.jpg"] == 1
    assert server.hits["/missing.jpg"] == 1  # a 404 is final: no retry
    assert server.hits["/slow.jpg"] == 2  # a timeout is retried (retries=1)
    assert server.hits["/flaky.jpg"] == 2  # 503 then success

    lines = store.coverage_file.read_text().splitlines()
    assert len(lines) == len(CASES)
    assert {json.loads(line)["status"] for line in lines} == {"ok", "dead"}


def test_rerun_skips_stored_images_and_survives_a_cut_log(tmp_path: Path, server: _Server) -> None:
    urls = ["/good.jpg", "/missing.jpg", "/flaky.jpg"]
    images = [image(server.url(p)) for p in urls]
    store = ReferenceStore(tmp_path / "refs")
    fetch_references(images, settings=SETTINGS, store=store, progress=False)
    with store.coverage_file.open("a") as fh:
        fh.write('{"image_id": "m00')  # a crash mid-write
    fetch_references(images, settings=SETTINGS, store=store, progress=False, retry_dead=False)
    assert server.hits == Counter({"/good.jpg": 1, "/missing.jpg": 1, "/flaky.jpg": 2})
    records = fetch_references(images, settings=SETTINGS, store=store, progress=False)  # retries dead only
    assert server.hits == Counter({"/good.jpg": 1, "/missing.jpg": 2, "/flaky.jpg": 2})
    assert records[images[0].image_id].status == "ok"

    (store.root / records[images[0].image_id].path).unlink()  # a deleted object is fetched again
    fetch_references(images, settings=SETTINGS, store=store, progress=False, retry_dead=False)
    assert server.hits["/good.jpg"] == 2


def test_reference_paths_and_coverage(tmp_path: Path, server: _Server) -> None:
    good, other, missing, html = (image(server.url(p)) for p in
                                  ("/good.jpg", "/good-again.jpg", "/missing.jpg", "/page.html"))
    prompts = (
        Prompt("t-0", "a", (good.image_id, missing.image_id)),  # scorable: one of two
        Prompt("t-1", "b", (missing.image_id,)),
        Prompt("t-2", "c", (html.image_id, other.image_id)),
        Prompt("t-3", "d", (html.image_id,)),
    )
    suite = Suite(name="t", model="m", trigger=PromptSet("trigger", prompts, 10),
                  memorized={i.image_id: i for i in (good, other, missing, html)})
    paths, before = reference_paths(suite, tmp_path)
    assert paths == {} and before.images_ok == 0 and before.prompts_scorable == 0
    assert all("not fetched yet" in r for r in before.unavailable.values())
    assert sum(server.hits.values()) == 0  # reference_paths never fetches

    paths, coverage = fetch_suite_references(suite, tmp_path, settings=SETTINGS, progress=False)
    assert set(paths) == {good.image_id, other.image_id}
    assert paths[good.image_id].read_bytes() == GOOD
    assert (coverage.images_ok, coverage.images_total) == (2, 4)
    assert (coverage.prompts_scorable, coverage.prompts_total) == (2, 4)
    assert "HTTP 404" in coverage.unavailable[missing.image_id]
    assert coverage.summary() == ("reference images 2/4 available (50.0%); "
                                  "trigger prompts scorable 2/4 (50.0%)")
    assert reference_paths(suite, tmp_path)[1] == coverage  # stable when read back from the log


def test_local_reference_images(tmp_path: Path) -> None:
    (tmp_path / "refs").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "refs" / "a.png")
    a = MemorizedImage("mini-a", "a.png")
    b = MemorizedImage("mini-b", "b.png")
    suite = Suite(name="mini", model="tiny", reference_dir=tmp_path / "refs",
                  trigger=PromptSet("trigger", (Prompt("p0", "x", ("mini-a",)), Prompt("p1", "y", ("mini-b",))), 2),
                  memorized={"mini-a": a, "mini-b": b})
    paths, coverage = reference_paths(suite, tmp_path / "cache")
    assert paths == {"mini-a": tmp_path / "refs" / "a.png"}
    assert coverage.prompts_scorable == 1 and "missing local file" in coverage.unavailable["mini-b"]
    assert not (tmp_path / "cache").exists()  # local suites never touch the cache
