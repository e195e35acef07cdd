"""Prompt files of a suite file, read row by row: JSONL, TXT, and MemBench CSVs naming local files.

Split from ``membench_eval.suites.suite_file`` (which validates the TOML and builds the Suite); each
reader names the file, the row (as an editor shows it) and the field of a bad row.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from membench_eval.errors import DataError
from membench_eval.suites.loaders import _prompt_key, _read_text, iter_json_objects, string_list_literal
from membench_eval.suites.types import Prompt

_REF_FIELDS = ("references", "reference", "urls", "url")


def add_prompt(prompts: list[Prompt], seen: dict[str, Any], file: Path, row: Any, prompt: Prompt) -> None:
    for key, what in ((prompt.prompt_id, "prompt id"), (_prompt_key(prompt.text), "prompt text")):
        if (what, key) in seen:
            raise DataError(file, f"duplicated {what} {key[:60]!r} (first at row {seen[(what, key)]}): it would "
                            "count twice", row=row, field="id" if what == "prompt id" else "prompt")
        seen[(what, key)] = row
    prompts.append(prompt)


def split_refs(cell: str, file: Path, row: Any, field: str) -> list[str]:
    """The references of one cell: a Python list literal of strings when it starts with ``[``
    (strictly; a bad one is a DataError naming row and field, never re-read as comma-separated),
    else comma-separated names."""
    cell = cell.strip()
    if cell.startswith("["):
        try:
            value = string_list_literal(cell)
        except ValueError as exc:
            raise DataError(file, str(exc), row=row, field=field) from None
        if not all(isinstance(v, str) for v in value):
            raise DataError(file, f"expected a list of strings: {cell[:80]!r}", row=row, field=field)
        return [v.strip() for v in value if v.strip()]
    return [c.strip() for c in cell.split(",") if c.strip()]


def prompt_rows(file: Path, fmt: str, *, with_refs: bool) -> list[tuple[Any, str, str, list[str]]]:
    """(row as an editor shows it, row id, prompt text, reference cells) of a prompt file."""
    out: list[tuple[Any, str, str, list[str]]] = []
    if fmt == "jsonl":
        for n, (line, obj) in enumerate(iter_json_objects(file)):
            text = obj.get("prompt", obj.get("caption"))  # caption: LAION-style lists (sd2_mem.jsonl)
            if not isinstance(text, str) or not text.strip():
                raise DataError(file, f"missing or empty prompt: {text!r}", row=line, field="prompt")
            row_id = obj.get("id", n)
            if not isinstance(row_id, (str, int)) or isinstance(row_id, bool) or not str(row_id).strip():
                raise DataError(file, f"id must be a non-empty string or an integer, got {row_id!r}", row=line,
                                field="id")
            refs: list[str] = []
            if with_refs:
                field = next((f for f in _REF_FIELDS if f in obj), None)
                value = obj.get(field) if field else None
                if isinstance(value, str):
                    refs = [value]
                elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                    refs = list(value)
                else:
                    raise DataError(file, f"expected a string or a list of strings, got {value!r}", row=line,
                                    field=field or "references")
            out.append((line, str(row_id), text, refs))
    elif fmt == "txt":
        lines = _read_text(file).splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        for n, raw in enumerate(lines):
            text, _, cells = raw.partition("\t") if with_refs else (raw, "", "")
            if not text.strip():
                raise DataError(file, "blank prompt line", row=n + 1, field="prompt")
            out.append((n + 1, str(n), text, split_refs(cells, file, n + 1, "references")))
    else:  # membench CSV with local file names in the urls column
        reader = csv.reader(_read_text(file).splitlines(keepends=True))
        try:
            header = next(reader)
        except (StopIteration, csv.Error):
            raise DataError(file, "empty or malformed CSV header (expected 'prompt' and 'urls')", row=1) from None
        cols = {c.strip(): i for i, c in enumerate(header)}
        for required in ("prompt", "urls"):
            if required not in cols:
                raise DataError(file, f"missing column (header is {header!r})", row=1, field=required)
        index_col = 0 if header[0].strip() in ("", "index", "Unnamed: 0") else None
        n = -1
        try:
            for row in reader:
                if not any(c.strip() for c in row):
                    continue
                n += 1
                if len(row) != len(header):
                    raise DataError(file, f"expected {len(header)} cells, found {len(row)}", row=reader.line_num)
                row_id = row[index_col].strip() if index_col is not None else str(n)
                text = row[cols["prompt"]]
                if not text.strip():
                    raise DataError(file, "empty prompt", row=reader.line_num, field="prompt")
                out.append((reader.line_num, row_id, text, split_refs(row[cols["urls"]], file, reader.line_num, "urls")))
        except csv.Error as exc:
            raise DataError(file, f"malformed CSV: {exc}", row=reader.line_num) from None
    if not out:
        raise DataError(file, "no prompts")
    return out
