"""Google Custom Search (image mode) client for MemBench's reference performance.

MemBench's reference row (Top-1 SSCD 0.088, CLIP 0.310) scores, for each trigger prompt, the images
the Custom Search JSON API returns for it. The free tier allows about 100 queries a day, so a
3000-prompt suite takes weeks: every successful answer is cached on disk and never asked again, and
:func:`search_prompts` stops cleanly at the quota, keeping what it has, so a rerun continues.

Credentials come from ``$GOOGLE_API_KEY`` and ``$GOOGLE_CSE_ID``. The key is never written to the
cache, a log, an exception or a returned object (it is redacted from every URL and message); the
search-engine id is stored only as a sha256. Images are downloaded by the project's one safe fetcher
(:mod:`membench_eval.fetch.image_fetch`: size/pixel limits, TLS on, sha256-addressed store).

Cache layout: ``<cache_dir>/<sha256 of (endpoint without query, sha256(cse id), query, num)>.json``
holding ``{"format", "endpoint", "cse_id_sha256", "query", "num", "params", "date", "response"}``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

from membench_eval.errors import DataError, MembenchError
from membench_eval.fetch.reference_store import ReferenceStore
from membench_eval.fetch.settings import FetchSettings

DEFAULT_ENDPOINT = "https://www.googleapis.com/customsearch/v1"
API_KEY_ENV = "GOOGLE_API_KEY"
CSE_ID_ENV = "GOOGLE_CSE_ID"
MAX_NUM = 10  # the API returns at most 10 results per request (more needs paging: one query each)
FREE_QUERIES_PER_DAY = 100
CACHE_FORMAT = 1
REDACTED = "<redacted>"
# Error reasons Google uses when a key is out of quota (errors[].reason, details[].reason).
QUOTA_REASONS = frozenset({"dailylimitexceeded", "ratelimitexceeded", "quotaexceeded",
                           "userratelimitexceeded", "resourceexhausted"})
_KEY_PARAM = re.compile(r"([?&]key=)[^&#\s'\"]+")
_log = logging.getLogger(__name__)


class QuotaExhausted(MembenchError):
    """The API refused for quota after all retries: rerun later (cached queries are kept). An
    environment limit, not bad input, hence exit status 3."""

    exit_code = 3


@dataclass(frozen=True)
class SearchHit:
    """One image result: its 1-based rank in the answer, the image URL and what the API says of it."""

    rank: int
    link: str
    mime: str | None
    width: int | None
    height: int | None


@dataclass(frozen=True)
class SearchResult:
    """The answer for one prompt; ``date`` is the day the API was asked (kept when ``cached``)."""

    prompt_id: str
    query: str
    hits: tuple[SearchHit, ...]
    date: str
    cached: bool


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _strip_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _missing(variable: str) -> MembenchError:
    what = "an API key (Google Cloud console, Custom Search API enabled)" if variable == API_KEY_ENV \
        else "a Programmable Search Engine id (cx) with image search on"
    return MembenchError(f"${variable} is not set: export {variable}=... with {what}")


class ImageSearchClient:
    """Cached, retrying client for the Custom Search JSON API in image mode.

    Credentials default to the environment; without them only cached queries can be answered
    (re-scoring needs no key). ``session`` is a ``requests.Session``-like object (tests inject one).
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, api_key: str | None = None,
                 cse_id: str | None = None, *, cache_dir: str | os.PathLike, timeout_s: float = 30,
                 max_retries: int = 2, backoff_s: float = 2.0, session: Any = None) -> None:
        if max_retries < 0 or backoff_s < 0 or not timeout_s > 0:
            raise MembenchError(f"invalid image search settings: max_retries={max_retries!r} and "
                                f"backoff_s={backoff_s!r} must be >= 0, timeout_s={timeout_s!r} > 0")
        self.endpoint = endpoint
        self.cache_dir = Path(cache_dir)
        self.timeout_s, self.max_retries, self.backoff_s = timeout_s, max_retries, backoff_s
        self._api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
        self._cse_id = cse_id if cse_id is not None else os.environ.get(CSE_ID_ENV) or None
        self._session = session

    @classmethod
    def from_env(cls, cache_dir: str | os.PathLike, endpoint: str | None = None) -> "ImageSearchClient":
        """A client with ``$GOOGLE_API_KEY`` / ``$GOOGLE_CSE_ID``; fails now, naming the missing one."""
        for variable in (API_KEY_ENV, CSE_ID_ENV):
            if not os.environ.get(variable):
                raise _missing(variable)
        return cls(endpoint or DEFAULT_ENDPOINT, cache_dir=cache_dir)

    def __repr__(self) -> str:  # never shows the key
        return f"ImageSearchClient(endpoint={self.endpoint!r}, cache_dir={str(self.cache_dir)!r})"

    def _redact(self, text: str) -> str:
        """``text`` without the API key (raw or URL-encoded) or any ``key=`` query value."""
        if self._api_key:
            for form in {self._api_key, quote_plus(self._api_key), quote(self._api_key, safe="")}:
                text = text.replace(form, REDACTED)
        return _KEY_PARAM.sub(r"\1" + REDACTED, text)

    def cache_path(self, query: str, num: int = MAX_NUM) -> Path:
        """Where the answer to ``query`` is cached (the key ignores the API key and prompt id)."""
        cse = _sha256(self._cse_id or "")
        key = json.dumps([_strip_query(self.endpoint), cse, query, num], ensure_ascii=False)
        return self.cache_dir / f"{_sha256(key)}.json"

    def cached(self, prompt_id: str, query: str, num: int = MAX_NUM) -> SearchResult | None:
        """The cached answer, or None; never sends a request. An unreadable file counts as absent."""
        path = self.cache_path(query, _check_num(num))
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            response, date = entry["response"], entry["date"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            _log.warning("ignoring unreadable image search cache file %s (%s)", path, exc)
            return None
        return SearchResult(prompt_id, query, parse_hits(response, prompt_id, num), str(date), True)

    def search(self, prompt_id: str, query: str, num: int = MAX_NUM) -> SearchResult:
        """Image results for ``query`` (at most ``num`` <= 10, the API's per-request maximum), from
        the cache when asked before; otherwise one API query, retried on quota answers and 5xx."""
        num = _check_num(num)
        found = self.cached(prompt_id, query, num)
        if found is not None:
            return found
        if not self._api_key:
            raise _missing(API_KEY_ENV)
        if not self._cse_id:
            raise _missing(CSE_ID_ENV)
        body = self._query(prompt_id, query, num)
        hits = parse_hits(body, prompt_id, num)  # before caching: a malformed answer is not kept
        date = datetime.now(timezone.utc).date().isoformat()
        self._write_cache(query, num, body, date)
        return SearchResult(prompt_id, query, hits, date, False)

    def _params(self, query: str, num: int) -> dict[str, str]:
        return {"q": query, "searchType": "image", "num": str(num)}

    def _query(self, prompt_id: str, query: str, num: int) -> Any:
        """The parsed JSON body of a 200 answer, or an error naming the prompt (never the key)."""
        import requests

        if self._session is None:  # one connection pool for all the queries of a run
            self._session = requests.Session()
        session = self._session
        params = {"key": self._api_key, "cx": self._cse_id, **self._params(query, num)}
        where = _strip_query(self.endpoint)
        failure: MembenchError | None = None
        for attempt in range(self.max_retries + 1):
            if attempt and self.backoff_s:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            _log.debug("image search for prompt %r: GET %s q=%r (attempt %d)", prompt_id, where, query,
                       attempt + 1)
            error, fatal = None, False
            try:
                resp = session.get(self.endpoint, params=params, timeout=self.timeout_s, verify=True)
                status, text = resp.status_code, resp.text
                _log.debug("image search for prompt %r: HTTP %d from %s", prompt_id, status,
                           self._redact(resp.url))
            except requests.exceptions.SSLError as exc:  # TLS never fixes itself: no retry, no insecure retry
                error, fatal = f"TLS error: {exc}", True
            except requests.exceptions.RequestException as exc:  # message holds the URL, hence the key
                error = f"{type(exc).__name__}: {exc}"
            if error is not None:  # raised outside the except block, so no chained exception holds the key
                failure = MembenchError(self._failed(prompt_id, where, error))
                if fatal:
                    raise failure
                continue
            if status == 200:
                try:
                    return json.loads(text)
                except ValueError:
                    raise DataError(f"image search answer for prompt {prompt_id!r}",
                                    f"not JSON (starts {text[:60]!r})") from None
            message, reasons = _api_error(text)
            detail = f"HTTP {status}" + (f": {self._redact(message)}" if message else "")
            if status == 429 or (status == 403 and reasons & QUOTA_REASONS):
                failure = QuotaExhausted(
                    f"image search quota exhausted at prompt {prompt_id!r} ({detail}) after {attempt + 1} "
                    f"attempts: rerun later (about {FREE_QUERIES_PER_DAY} free queries a day; cached "
                    "queries are not sent again)")
            elif status >= 500:
                failure = MembenchError(self._failed(prompt_id, where, detail))
            else:  # other 4xx (bad key, bad cx, bad request): retrying cannot help
                raise MembenchError(self._failed(prompt_id, where, detail))
        assert failure is not None
        raise failure

    def _failed(self, prompt_id: str, where: str, detail: str) -> str:
        return self._redact(f"image search failed for prompt {prompt_id!r}: {detail} ({where})")

    def _scrub(self, value: Any) -> Any:
        """``value`` with the key and the cse id removed from every string (the answer echoes cx)."""
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._scrub(v) for v in value]
        if isinstance(value, str):
            value = self._redact(value)
            return value.replace(self._cse_id, REDACTED) if self._cse_id else value
        return value

    def _write_cache(self, query: str, num: int, body: Any, date: str) -> None:
        """Write the answer atomically (a crash leaves the old state, never half a file)."""
        entry = {"format": CACHE_FORMAT, "endpoint": _strip_query(self.endpoint),
                 "cse_id_sha256": _sha256(self._cse_id or ""), "query": query, "num": num,
                 "params": self._params(query, num), "date": date, "response": self._scrub(body)}
        path = self.cache_path(query, num)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".query-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(entry, fh, ensure_ascii=False, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)


def _check_num(num: int) -> int:
    if isinstance(num, bool) or not isinstance(num, int) or not 1 <= num <= MAX_NUM:
        raise MembenchError(f"invalid num {num!r}: must be 1..{MAX_NUM} (the API's maximum per request)")
    return num


def _api_error(text: str) -> tuple[str, set[str]]:
    """(message, normalized reasons) of a Google API error body; ('', set()) if it is not one."""
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        return "", set()
    if not isinstance(error, dict):
        return "", set()
    found = [e.get("reason") for key in ("errors", "details") for e in error.get(key) or []
             if isinstance(e, dict)] + [error.get("status")]
    reasons = {r.replace("_", "").lower() for r in found if isinstance(r, str)}
    message = error.get("message")
    return (message if isinstance(message, str) else ""), reasons


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else None


def parse_hits(body: Any, prompt_id: str, num: int = MAX_NUM) -> tuple[SearchHit, ...]:
    """The hits of an API answer. Zero results is valid; a missing ``items`` list when results
    were reported, or an item without a link, is a DataError naming the prompt."""
    where = f"image search answer for prompt {prompt_id!r}"
    if not isinstance(body, dict):
        raise DataError(where, f"not a JSON object (got {type(body).__name__})")
    info = body.get("searchInformation")
    total = info.get("totalResults") if isinstance(info, dict) else None
    if "items" not in body:
        if str(total) == "0":
            return ()
        raise DataError(where, f"no 'items' although searchInformation.totalResults is {total!r}", field="items")
    items = body["items"]
    if not isinstance(items, list):
        raise DataError(where, f"'items' is a {type(items).__name__}, not a list", field="items")
    hits = []
    for rank, item in enumerate(items[:num], start=1):
        link = item.get("link") if isinstance(item, dict) else None
        if not isinstance(link, str) or not link:
            raise DataError(where, "item without a 'link'", row=rank, field="link")
        image = item.get("image") if isinstance(item.get("image"), dict) else {}
        mime = item.get("mime")
        hits.append(SearchHit(rank, link, mime if isinstance(mime, str) else None,
                              _int_or_none(image.get("width")), _int_or_none(image.get("height"))))
    return tuple(hits)


def search_prompts(client: ImageSearchClient, prompts: Sequence[tuple[str, str]], num: int = MAX_NUM, *,
                   progress: bool = False) -> tuple[dict[str, SearchResult], str | None]:
    """Search ``(prompt_id, query)`` pairs in order. At the quota it stops asking (later prompts are
    still answered from the cache) and returns the partial results with a message to rerun, so the
    caller saves what it has. Other errors are raised."""
    from tqdm import tqdm

    ids = [pid for pid, _ in prompts]
    if len(set(ids)) != len(ids):
        dup = next(pid for pid in ids if ids.count(pid) > 1)
        raise MembenchError(f"prompt id {dup!r} appears more than once in the image search list")
    results: dict[str, SearchResult] = {}
    stopped = False
    for prompt_id, query in tqdm(prompts, desc="image search", unit="prompt", disable=not progress):
        if stopped:
            found = client.cached(prompt_id, query, num)
            if found is not None:
                results[prompt_id] = found
            continue
        try:
            results[prompt_id] = client.search(prompt_id, query, num)
        except QuotaExhausted:
            stopped = True
    if not stopped:
        return results, None
    cached = sum(1 for r in results.values() if r.cached)
    return results, (f"stopped by the API quota after {len(results)} of {len(prompts)} prompts "
                     f"({cached} cached); rerun to continue (about {FREE_QUERIES_PER_DAY} free queries a day)")


def download_hits(results: dict[str, SearchResult], store: ReferenceStore, settings: FetchSettings | None = None,
                  *, retry_dead: bool = False, progress: bool | None = False,
                  ) -> dict[str, list[tuple[SearchHit, Path | None, str | None]]]:
    """Fetch every hit's image with the project's safe fetcher into ``store`` (images it already
    holds are reused; dead links are not retried unless ``retry_dead``, so a daily rerun stays
    quick). Per prompt: ``(hit, path, None)`` or ``(hit, None, reason)`` in rank order."""
    from membench_eval.fetch.reference_store import DEAD
    from membench_eval.suites.references import fetch_references
    from membench_eval.suites.types import MemorizedImage, memorized_image_id

    images = {memorized_image_id(h.link): MemorizedImage(memorized_image_id(h.link), h.link)
              for r in results.values() for h in r.hits}
    web = [im for im in images.values() if not im.is_local]
    records = fetch_references(web, settings=settings, store=store, progress=progress,
                               retry_dead=retry_dead) if web else {}
    out: dict[str, list[tuple[SearchHit, Path | None, str | None]]] = {}
    for prompt_id, result in results.items():
        rows: list[tuple[SearchHit, Path | None, str | None]] = []
        for hit in result.hits:
            image = images[memorized_image_id(hit.link)]
            record = records.get(image.image_id)
            path = store.available(record, hit.link) if not image.is_local else None
            if path is not None:
                rows.append((hit, path, None))
            elif image.is_local:
                rows.append((hit, None, f"not an http(s) URL: {hit.link[:80]!r}"))
            elif record is not None and record.url == hit.link and record.status == DEAD:
                rows.append((hit, None, record.reason or "dead link"))
            else:
                rows.append((hit, None, "stored file missing from the reference store"))
        out[prompt_id] = rows
    return out
