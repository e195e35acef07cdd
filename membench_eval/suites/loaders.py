"""Readers for the upstream prompt files: MemBench CSV, COCO captions, Webster / Wen lists.

Each reader validates as it goes and raises :class:`~membench_eval.errors.DataError` naming the
file, the row (the line number in the file, as an editor shows it) and the field, because a silent
mis-parse here would corrupt every number downstream.

Only the standard library is used (csv, json, ast): these run at CLI start-up and in the pytest
plugin, so they must stay light.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from membench_eval.errors import DataError
from membench_eval.suites.types import MemorizedImage, Prompt, PromptSet, memorized_image_id

TRIGGER_IMAGES_PER_PROMPT = 10  # MemBench: 10 generations per trigger prompt
GENERAL_IMAGES_PER_PROMPT = 1  # MemBench: 1 generation per COCO prompt


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str) or value != value.strip():
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text (byte {exc.start})") from None


class DuplicatePromptWarning(UserWarning):
    """A trigger CSV repeats a prompt text and ``allow_duplicates=True`` merged the repeats.

    ``duplicates`` holds ``(first row, repeated row, text)`` per dropped row (rows are file line
    numbers, as in every DataError), so a caller (the CLI) can report how many were merged.
    """

    def __init__(self, path: Path, duplicates: list[tuple[int, int, str]]) -> None:
        self.path, self.duplicates = path, tuple(duplicates)
        shown = "; ".join(f"row {dup} repeats row {first}: {_shorten(text)!r}"
                          for first, dup, text in duplicates[:3])
        more = f"; and {len(duplicates) - 3} more" if len(duplicates) > 3 else ""
        super().__init__(f"{path}: {len(duplicates)} duplicated prompt text(s) counted once, first row "
                         f"kept with the union of the memorized images ({shown}{more})")


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _prompt_key(text: str) -> str:
    """What makes two prompts "the same": the text with runs of whitespace collapsed. Whitespace
    differences are invisible in a spreadsheet and do not change how a text encoder tokenizes;
    case is kept, because case-sensitive encoders (T5) see "Cat" and "cat" differently."""
    return " ".join(text.split())


def default_id_prefix(path: str | os.PathLike) -> str:
    """``SD1_final.csv`` -> ``sd1``: the prompt-id prefix, so an SD2 file gets ``sd2-`` ids."""
    return Path(path).stem.split("_")[0].lower() or "prompt"


def load_trigger_prompts(
    path: str | os.PathLike, *, id_prefix: str | None = None, allow_duplicates: bool = False
) -> tuple[PromptSet, dict[str, MemorizedImage]]:
    """MemBench trigger prompts (``SD1_final.csv`` format) and the memorized images they point at.

    Columns: an index column (unnamed, first), ``prompt``, ``urls`` (a Python list literal, parsed
    with ``ast.literal_eval``, never ``eval``). Prompt ids are ``<prefix>-<index>`` (``sd1-0`` ..
    ``sd1-2999``), taken from the file's own index column so they do not shift if rows are
    reordered; without an index column the 0-based data row number is used. Each distinct URL is
    one memorized image with id :func:`memorized_image_id` (a hash of the URL: stable across runs
    and files). Images are returned in order of first appearance.

    A prompt text appearing on two rows (under any index; compared with whitespace collapsed) would
    be generated and scored twice, doubling its weight, so it is a DataError naming both rows. With
    ``allow_duplicates=True`` it is a :class:`DuplicatePromptWarning` instead and the prompt counts
    once: the first row is kept (its id and position) and its memorized ids become the union of both
    rows' ids (first row's order, then new ones), because each row lists images known to be
    reproduced by that same text, so none should be lost.
    """
    path = Path(path)
    prefix = id_prefix if id_prefix is not None else default_id_prefix(path)
    text = _read_text(path)
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(path, "empty file (expected a header with 'prompt' and 'urls')") from None
    except csv.Error as exc:
        raise DataError(path, f"malformed CSV header: {exc}", row=1) from None
    columns = {name: i for i, name in enumerate(header)}
    for required in ("prompt", "urls"):
        if required not in columns:
            raise DataError(path, f"missing column (header is {header!r})", row=1, field=required)
    index_col = 0 if header and header[0].strip() in ("", "index", "Unnamed: 0") else None
    index_name = (header[0].strip() or "index") if index_col is not None else "index"

    prompts: list[Prompt] = []
    images: dict[str, MemorizedImage] = {}
    seen_ids: dict[str, int] = {}
    seen_texts: dict[str, tuple[int, int]] = {}  # prompt key -> (index in prompts, line)
    duplicates: list[tuple[int, int, str]] = []
    data_row = -1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DataError(path, f"malformed CSV: {exc}", row=reader.line_num) from None
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue  # blank line (e.g. a trailing newline): not a data row
        data_row += 1
        if len(row) != len(header):
            raise DataError(path, f"expected {len(header)} cells, found {len(row)}", row=line)
        key = row[index_col].strip() if index_col is not None else str(data_row)
        if not key:
            raise DataError(path, "empty prompt index", row=line, field=index_name)
        prompt_id = f"{prefix}-{key}"
        if prompt_id in seen_ids:
            raise DataError(
                path, f"duplicated prompt id {prompt_id!r} (first at line {seen_ids[prompt_id]})",
                row=line, field=index_name,
            )
        seen_ids[prompt_id] = line
        text_cell = row[columns["prompt"]]
        if not text_cell.strip():
            raise DataError(path, "empty prompt", row=line, field="prompt")
        urls = _parse_urls(path, line, row[columns["urls"]])
        ids: list[str] = []
        for url in urls:
            image_id = memorized_image_id(url)
            known = images.get(image_id)
            if known is None:
                images[image_id] = MemorizedImage(image_id=image_id, source=url)
            elif known.source != url:  # a 48-bit hash collision: never silently merge two images
                raise DataError(path, f"image id collision between {known.source!r} and {url!r}",
                                row=line, field="urls")
            if image_id not in ids:
                ids.append(image_id)
        seen = seen_texts.get(_prompt_key(text_cell))
        if seen is not None:
            index, first_line = seen
            if not allow_duplicates:
                raise _duplicate_error(path, line, first_line, prompts[index].text)
            prompts[index] = _with_more_ids(prompts[index], ids)
            duplicates.append((first_line, line, text_cell))
            continue
        seen_texts[_prompt_key(text_cell)] = (len(prompts), line)
        prompts.append(Prompt(prompt_id=prompt_id, text=text_cell, memorized_ids=tuple(ids)))
    if not prompts:
        raise DataError(path, "no prompts (header only)")
    if duplicates:
        warnings.warn(DuplicatePromptWarning(path, duplicates), stacklevel=2)
    prompt_set = PromptSet(role="trigger", prompts=tuple(prompts),
                           images_per_prompt=TRIGGER_IMAGES_PER_PROMPT, source_file=str(path))
    return prompt_set, images


def _duplicate_error(path: Path, line: int, first_line: int, text: str) -> DataError:
    return DataError(
        path, f"same prompt text as row {first_line} ({_shorten(text)!r}): it would count twice; remove "
        f"one row, or pass allow_duplicates=True (CLI --allow-duplicates) to keep row {first_line} only",
        row=line, field="prompt",
    )


def _with_more_ids(prompt: Prompt, ids: list[str]) -> Prompt:
    """``prompt`` with ``ids`` it lacks appended: a repeated row's images are not lost."""
    extra = tuple(i for i in ids if i not in prompt.memorized_ids)
    return Prompt(prompt_id=prompt.prompt_id, text=prompt.text, memorized_ids=prompt.memorized_ids + extra)


def string_list_literal(cell: str) -> list:
    """The Python list literal ``cell`` (``ast.literal_eval``, never ``eval``), strictly: two strings
    with no comma between them are refused (Python would silently join two URLs into one).
    Raises ValueError saying what is wrong."""
    import io
    import tokenize

    try:
        value = ast.literal_eval(cell)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(f"not a Python list literal ({type(exc).__name__}): {cell[:80]!r}") from None
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {type(value).__name__}")
    try:
        strings = sum(t.type == tokenize.STRING for t in tokenize.generate_tokens(io.StringIO(cell).readline))
    except (tokenize.TokenError, SyntaxError):
        strings = len(value)
    if strings != sum(isinstance(v, str) for v in value):
        raise ValueError(f"two strings without a comma between them (Python would join them into one): {cell[:80]!r}")
    return value


def _parse_urls(path: Path, line: int, cell: str) -> list[str]:
    try:
        value = string_list_literal(cell)
    except ValueError as exc:
        raise DataError(path, str(exc), row=line, field="urls") from None
    if not value:
        raise DataError(path, "empty list: a trigger prompt needs at least one memorized image",
                        row=line, field="urls")
    for i, url in enumerate(value):
        if not _is_http_url(url):
            raise DataError(path, f"item {i} is not an http(s) URL: {url!r}", row=line, field="urls")
    return value


def load_coco_prompts(path: str | os.PathLike) -> PromptSet:
    """COCO general prompts: the first caption of each image of ``captions_val2017.json``.

    "First" is first in file order among an image's annotations, exactly what the MemBench
    reference does (``pandas.drop_duplicates(subset='image_id')``, keep='first'); in the published
    file this is also the caption with the lowest annotation id. Prompts are ordered by image id
    (the reference keeps file order; order does not change any metric because every
    (prompt, image index) is seeded on its own). Prompt ids are ``coco-<image_id>``.
    """
    path = Path(path)
    text = _read_text(path)
    if not text.strip():
        raise DataError(path, "empty caption file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON: {exc.msg} (column {exc.colno})", row=exc.lineno) from None
    if not isinstance(data, dict) or "annotations" not in data:
        raise DataError(path, "not a COCO captions file (no top-level 'annotations')", field="annotations")
    annotations = data["annotations"]
    if not isinstance(annotations, list):
        raise DataError(path, "'annotations' is not a list", field="annotations")
    if not annotations:
        raise DataError(path, "empty caption file (no annotations)", field="annotations")
    first: dict[int, str] = {}
    for i, ann in enumerate(annotations):
        where = f"annotations[{i}]"
        if not isinstance(ann, dict):
            raise DataError(path, "annotation is not an object", row=where)
        image_id = ann.get("image_id")
        if not isinstance(image_id, int) or isinstance(image_id, bool):
            raise DataError(path, f"missing or non-integer image id: {image_id!r}", row=where, field="image_id")
        caption = ann.get("caption")
        if not isinstance(caption, str) or not caption.strip():
            raise DataError(path, f"missing or empty caption: {caption!r}", row=where, field="caption")
        first.setdefault(image_id, caption)
    prompts = tuple(Prompt(prompt_id=f"coco-{image_id}", text=first[image_id]) for image_id in sorted(first))
    return PromptSet(role="general", prompts=prompts, images_per_prompt=GENERAL_IMAGES_PER_PROMPT,
                     source_file=str(path))


def load_prompt_lines(path: str | os.PathLike) -> list[str]:
    """A one-prompt-per-line list (Webster's ``sd1_mem345.txt``, ``sd2_mem219.txt``, ``nonmem500.txt``).

    The last line may lack its newline (``nonmem500.txt`` does); a blank line inside the file is an
    error because it would silently become an empty prompt. Lines are kept verbatim (no strip).
    """
    path = Path(path)
    text = _read_text(path)
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()  # trailing blank lines are formatting, not prompts
    if not lines:
        raise DataError(path, "empty prompt list")
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            raise DataError(path, "blank line inside the prompt list", row=i, field="prompt")
    return lines


def iter_json_objects(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of a JSON-lines file; a line that is not
    valid JSON, or not an object, is a DataError naming the file and row."""
    path = Path(path)
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"invalid JSON: {exc.msg} (column {exc.colno})", row=lineno) from None
        if not isinstance(obj, dict):
            raise DataError(path, "line is not a JSON object", row=lineno)
        yield lineno, obj


@dataclass(frozen=True)
class CaptionRecord:
    """One line of Wen et al.'s ``sdv1_500_memorized.jsonl``: a LAION caption and its image URL."""

    caption: str
    url: str
    index: int | None = None


def load_caption_jsonl(path: str | os.PathLike) -> list[CaptionRecord]:
    """Wen et al.'s memorized prompts: one JSON object per line with ``caption``, ``url``, ``index``."""
    path = Path(path)
    records: list[CaptionRecord] = []
    for lineno, obj in iter_json_objects(path):
        caption = obj.get("caption")
        if not isinstance(caption, str) or not caption.strip():
            raise DataError(path, f"missing or empty caption: {caption!r}", row=lineno, field="caption")
        url = obj.get("url")
        if not _is_http_url(url):
            raise DataError(path, f"not an http(s) URL: {url!r}", row=lineno, field="url")
        index = obj.get("index")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
            raise DataError(path, f"non-integer index: {index!r}", row=lineno, field="index")
        records.append(CaptionRecord(caption=caption, url=url, index=index))
    if not records:
        raise DataError(path, "empty JSONL file")
    return records
