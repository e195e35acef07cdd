"""The Custom Search image client against a 127.0.0.1 server that speaks the API's answer format
(and its quota / error bodies) and serves the result images; never the internet."""

from __future__ import annotations

import io
import json
import logging
import socket
from collections import Counter
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from PIL import Image

from membench_eval.errors import DataError, MembenchError
from membench_eval.fetch.reference_store import ReferenceStore
from membench_eval.fetch.settings import FetchSettings
from membench_eval.reference.image_search import (
    API_KEY_ENV,
    CSE_ID_ENV,
    ImageSearchClient,
    QuotaExhausted,
    SearchHit,
    SearchResult,
    download_hits,
    search_prompts,
)
from tests.loopback_http import LoopbackServer, QuietHandler

KEY = "AIzaTEST-secret_key+/=42"  # URL-encodes differently from its raw form
CX = "0123456789abcdef:cse-test"
API = "/customsearch/v1"
_png = io.BytesIO()
Image.new("RGB", (64, 64), (200, 30, 30)).save(_png, "PNG")
PNG = _png.getvalue()
HTML = b"<!DOCTYPE html><html><body>Hotlinking not allowed</body></html>"
SETTINGS = FetchSettings(connect_timeout_s=2.0, read_timeout_s=2.0, total_timeout_s=5.0, retries=0,
                         backoff_s=0.0, max_bytes=200_000, max_pixels=1_000_000, workers=2)

Reply = tuple[int, Any]  # (status, JSON-able body or raw bytes)


def quota_body(status: int, reason: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": "Quota exceeded for quota metric 'Queries per day'.",
                      "errors": [{"domain": "usageLimits", "reason": reason}]}}


class _Server(LoopbackServer):
    """``plans[q]``: replies for query ``q`` in order (the last one repeats); default: two images."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.api_params: list[dict[str, str]] = []
        self.plans: dict[str, list[Reply]] = {}
        server = self

        class Handler(QuietHandler):
            def send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                parts = urlsplit(self.path)
                server.hits[parts.path] += 1
                if parts.path == API:
                    params = {k: v[0] for k, v in parse_qs(parts.query).items()}
                    server.api_params.append(params)
                    plan = server.plans.get(params.get("q", ""), [(200, server.answer())])
                    status, body = plan.pop(0) if len(plan) > 1 else plan[0]
                    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                    self.send(status, raw, "application/json; charset=UTF-8")
                elif parts.path in ("/a.png", "/b.png"):
                    self.send(200, PNG, "image/png")
                elif parts.path == "/page.png":
                    self.send(200, HTML, "image/png")  # an "image" that is a web page
                else:
                    self.send(404, b"not found", "text/plain")

        super().__init__(Handler)

    def answer(self, *paths: str) -> dict[str, Any]:
        """A real-format answer listing images on this server (it echoes cx, as Google does)."""
        paths = paths or ("/a.png", "/b.png")
        return {"kind": "customsearch#search", "queries": {"request": [{"cx": CX, "count": len(paths)}]},
                "searchInformation": {"totalResults": str(len(paths))},
                "items": [{"link": self.url(p), "mime": "image/png", "image": {"width": 64, "height": 64}}
                          for p in paths]}


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.close()


def client(server: _Server, cache: Path, **kw: Any) -> ImageSearchClient:
    kw.setdefault("backoff_s", 0.0)
    return ImageSearchClient(server.url(API), KEY, CX, cache_dir=cache, **kw)


def no_secret(text: str) -> None:
    assert KEY not in text and requests.utils.quote(KEY, safe="") not in text and CX not in text


class RecordingSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, Any]] = []

    def get(self, url: str, **kw: Any) -> requests.Response:  # type: ignore[override]
        self.calls.append(kw)
        return super().get(url, **kw)


def test_query_is_parsed_cached_without_secrets_and_never_sent_again(
        tmp_path: Path, server: _Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="membench_eval.reference.image_search")
    session = RecordingSession()
    result = client(server, tmp_path, session=session).search("t-1", "a photo of a cat")
    assert result == SearchResult("t-1", "a photo of a cat", (
        SearchHit(1, server.url("/a.png"), "image/png", 64, 64),
        SearchHit(2, server.url("/b.png"), "image/png", 64, 64)), result.date, False)
    assert len(result.date) == 10 and result.date[4] == "-"
    assert server.api_params == [{"key": KEY, "cx": CX, "q": "a photo of a cat", "searchType": "image",
                                  "num": "10"}]
    assert session.calls[0]["verify"] is True

    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".json"
    text = files[0].read_text()
    no_secret(text)
    entry = json.loads(text)
    assert entry["params"] == {"q": "a photo of a cat", "searchType": "image", "num": "10"}
    assert entry["query"] == "a photo of a cat" and entry["date"] == result.date
    assert entry["response"]["items"][0]["link"] == server.url("/a.png")
    no_secret(caplog.text)
    assert "key=<redacted>" in caplog.text  # the logged URL, with the key cut out
    no_secret(repr(client(server, tmp_path)))

    entry["date"] = "2020-01-02"  # a query made on an earlier day keeps its date
    files[0].write_text(json.dumps(entry))
    again = client(server, tmp_path).search("t-1b", "a photo of a cat")  # a new instance, same query
    assert again.cached and again.date == "2020-01-02" and again.hits == result.hits
    assert again.prompt_id == "t-1b"
    assert server.hits[API] == 1  # answered from the cache: no request


def test_cache_needs_no_key_but_a_new_query_names_the_variable(tmp_path: Path, server: _Server,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    client(server, tmp_path).search("t-1", "cat")
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    monkeypatch.setenv(CSE_ID_ENV, CX)  # the cache key depends on the engine id, not on the key
    keyless = ImageSearchClient(server.url(API), cache_dir=tmp_path)
    assert keyless.search("t-1", "cat").cached
    with pytest.raises(MembenchError, match=API_KEY_ENV):
        keyless.search("t-2", "dog")
    assert server.hits[API] == 1


def test_from_env_names_the_missing_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    monkeypatch.setenv(CSE_ID_ENV, CX)
    with pytest.raises(MembenchError, match=API_KEY_ENV):
        ImageSearchClient.from_env(tmp_path)
    monkeypatch.setenv(API_KEY_ENV, KEY)
    monkeypatch.delenv(CSE_ID_ENV)
    with pytest.raises(MembenchError, match=CSE_ID_ENV):
        ImageSearchClient.from_env(tmp_path)
    monkeypatch.setenv(CSE_ID_ENV, CX)
    made = ImageSearchClient.from_env(tmp_path, endpoint="http://127.0.0.1:9/x")
    assert made.endpoint == "http://127.0.0.1:9/x" and KEY not in repr(made)
    with pytest.raises(MembenchError, match="at most|1..10"):
        made.search("t", "q", num=11)


def test_daily_limit_403_is_retried_then_succeeds(tmp_path: Path, server: _Server) -> None:
    server.plans["cat"] = [(403, quota_body(403, "dailyLimitExceeded")), (200, server.answer("/a.png"))]
    result = client(server, tmp_path, max_retries=2).search("t-1", "cat")
    assert [h.rank for h in result.hits] == [1] and not result.cached
    assert server.hits[API] == 2


def test_persistent_429_stops_search_prompts_with_partial_results(tmp_path: Path, server: _Server) -> None:
    c = client(server, tmp_path, max_retries=2)
    c.search("t-3", "q3")  # asked on an earlier day
    server.plans["q2"] = [(429, {"error": {"code": 429, "message": "Rate Limit Exceeded", "status":
                                           "RESOURCE_EXHAUSTED", "details": [{"reason": "RATE_LIMIT_EXCEEDED"}]}})]
    prompts = [("t-1", "q1"), ("t-2", "q2"), ("t-3", "q3"), ("t-4", "q4")]
    results, message = search_prompts(c, prompts)
    assert set(results) == {"t-1", "t-3"} and results["t-3"].cached and not results["t-1"].cached
    assert message == ("stopped by the API quota after 2 of 4 prompts (1 cached); rerun to continue "
                       "(about 100 free queries a day)")
    asked = Counter(p["q"] for p in server.api_params)
    assert asked == Counter({"q3": 1, "q1": 1, "q2": 3})  # q2: 1 + max_retries; q4 never sent

    with pytest.raises(QuotaExhausted) as info:
        c.search("t-2", "q2")
    assert info.value.exit_code == 3 and "'t-2'" in str(info.value) and "rerun later" in str(info.value)
    no_secret(str(info.value))

    server.plans.pop("q2")  # the next day: only the missing prompts are asked
    results, message = search_prompts(c, prompts)
    assert message is None and list(results) == ["t-1", "t-2", "t-3", "t-4"]
    assert [results[p].cached for p in results] == [True, False, True, False]


@pytest.mark.parametrize("body, words", [
    (b"<html>Service Unavailable</html>", "not JSON"),
    ({"kind": "customsearch#search", "searchInformation": {"totalResults": "5"}}, "no 'items'"),
    ({"searchInformation": {"totalResults": "1"}, "items": [{"mime": "image/png"}]}, "without a 'link'"),
])
def test_malformed_answer_names_the_prompt_and_is_not_cached(tmp_path: Path, server: _Server, body: Any,
                                                             words: str) -> None:
    server.plans["cat"] = [(200, body)]
    with pytest.raises(DataError, match=words) as info:
        client(server, tmp_path).search("t-7", "cat")
    assert "'t-7'" in str(info.value)
    no_secret(str(info.value))
    assert list(tmp_path.iterdir()) == []


def test_zero_results_is_an_empty_valid_result(tmp_path: Path, server: _Server) -> None:
    server.plans["nothing"] = [(200, {"kind": "customsearch#search", "searchInformation": {"totalResults": "0"}})]
    result = client(server, tmp_path).search("t-0", "nothing")
    assert result.hits == () and not result.cached
    assert client(server, tmp_path).search("t-0", "nothing").cached and server.hits[API] == 1


def test_other_errors_name_prompt_and_status_without_the_key(tmp_path: Path, server: _Server) -> None:
    server.plans["bad"] = [(400, {"error": {"code": 400, "message": f"API key not valid: {KEY}",
                                            "errors": [{"reason": "badRequest"}]}})]
    server.plans["down"] = [(503, b"backend error")]
    server.plans["forbidden"] = [(403, {"error": {"code": 403, "message": "forbidden",
                                                  "errors": [{"reason": "forbidden"}]}})]
    c = client(server, tmp_path, max_retries=2)
    for query, status, tries in (("bad", 400, 1), ("down", 503, 3), ("forbidden", 403, 1)):
        before = server.hits[API]
        with pytest.raises(MembenchError) as info:
            c.search(f"t-{query}", query)
        assert not isinstance(info.value, QuotaExhausted)
        assert f"'t-{query}'" in str(info.value) and f"HTTP {status}" in str(info.value)
        no_secret(str(info.value))
        assert server.hits[API] - before == tries


def test_connection_error_message_has_the_key_redacted(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    c = ImageSearchClient(f"http://127.0.0.1:{port}{API}", KEY, CX, cache_dir=tmp_path, max_retries=1,
                          backoff_s=0.0, timeout_s=2)
    with pytest.raises(MembenchError, match="'t-1'") as info:
        c.search("t-1", "cat")
    message = str(info.value)
    assert "ConnectionError" in message and "<redacted>" in message
    assert KEY not in message and requests.utils.quote(KEY, safe="") not in message
    assert info.value.__context__ is None and info.value.__cause__ is None  # no chained message with the key


def test_download_hits_through_the_safe_fetcher(tmp_path: Path, server: _Server) -> None:
    server.plans["cat"] = [(200, server.answer("/a.png", "/page.png", "/missing.png"))]
    server.plans["dog"] = [(200, server.answer("/a.png", "/b.png"))]
    c = client(server, tmp_path / "queries")
    results = {pid: c.search(pid, q) for pid, q in (("t-1", "cat"), ("t-2", "dog"))}
    raw = SearchHit(1, "x-raw-image:///abc", None, None, None)  # Google sometimes returns these
    results["t-3"] = SearchResult("t-3", "raw", (raw,), "2024-01-01", False)
    store = ReferenceStore(tmp_path / "images")

    out = download_hits(results, store, SETTINGS)
    (a, pa, ra), (page, pp, rp), (_, pm, rm) = out["t-1"]
    assert pa is not None and pa.read_bytes() == PNG and ra is None and a.rank == 1
    assert pp is None and "HTML" in (rp or "") and page.rank == 2
    assert pm is None and "HTTP 404" in (rm or "")
    assert [p is not None for _, p, _ in out["t-2"]] == [True, True] and out["t-2"][0][1] == pa
    assert out["t-3"][0][1] is None and "not an http(s) URL" in out["t-3"][0][2]
    assert server.hits["/a.png"] == 1  # shared by two prompts: fetched once

    again = download_hits(results, store, SETTINGS)  # the store is reused: no image is fetched again
    assert again == out
    assert server.hits["/a.png"] == 1 and server.hits["/page.png"] == 1 and server.hits["/b.png"] == 1
