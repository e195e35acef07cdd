"""A user's own list of image URLs (text, CSV or TSV) as a prompt-less suite.

Such a list goes through the same fetcher, limits, sha256 store and coverage log as a benchmark
suite's memorized images.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from membench_eval.errors import DataError
from membench_eval.suites.loaders import _is_http_url, _read_text
from membench_eval.suites.types import MemorizedImage, Suite, memorized_image_id


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
