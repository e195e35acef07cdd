"""A suite file's ``[trigger]`` and ``[general]`` tables -> prompt sets and memorized images.

Split from ``membench_eval.suites.suite_file`` (which reads the rest of the TOML). Prompt ids:
``<id_prefix>-<row id>`` by default, or ``id_format`` (``{n}``: the prompt's 0-based position,
``{row}``: its row id), which lets the mini suite keep its ``mini-t000`` ids. Reference ids: a hash
of a local file's bytes, or with ``reference_scheme`` (``mini://``) a hash of the cell's text, as a
URL's id is (``memorized_image_id``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from membench_eval.errors import DataError
from membench_eval.fetch.image_files import ImageFileError, check_image_header
from membench_eval.suites.loaders import (
    GENERAL_IMAGES_PER_PROMPT, TRIGGER_IMAGES_PER_PROMPT, _is_http_url, _prompt_key, load_coco_prompts,
    load_trigger_prompts,
)
from membench_eval.suites.prompt_files import add_prompt, prompt_rows
from membench_eval.suites.suite_context import SuiteFileContext
from membench_eval.suites.types import MemorizedImage, Prompt, PromptSet, memorized_image_id

TRIGGER_KEYS = {"file", "format", "references", "reference_scheme", "references_from", "id_prefix", "id_format",
                "images_per_prompt", "text_only"}
GENERAL_KEYS = {"file", "format", "id_prefix", "id_format", "images_per_prompt"}
_FORMATS = {"trigger": ("membench", "jsonl", "txt"), "general": ("coco", "txt", "jsonl")}
_SUFFIX_FORMAT = {"trigger": {".csv": "membench", ".jsonl": "jsonl", ".txt": "txt"},
                  "general": {".json": "coco", ".txt": "txt", ".jsonl": "jsonl"}}


class _Ids:
    """How a role's prompt ids are made: ``id_prefix`` or ``id_format`` (one of them)."""

    def __init__(self, ctx: SuiteFileContext, table: dict[str, Any], role: str, default_prefix: str) -> None:
        self.prefix = ctx.get(table, "id_prefix", str, role, default=default_prefix)
        self.format = ctx.get(table, "id_format", str, role)
        if self.format is not None:
            if "id_prefix" in table:
                raise ctx.error(f"{role}.id_format", "give id_prefix or id_format, not both")
            try:
                self.format.format(n=0, row="0")
            except (KeyError, IndexError, ValueError) as exc:
                raise ctx.error(f"{role}.id_format", f"{self.format!r} is not a format of {{n}} (position) and "
                                f"{{row}} (row id): {exc}") from None
            if "{" not in self.format:
                raise ctx.error(f"{role}.id_format", f"{self.format!r} gives every prompt the same id")

    def __call__(self, position: int, row_id: str) -> str:
        return self.format.format(n=position, row=row_id) if self.format else f"{self.prefix}-{row_id}"


def _format(ctx: SuiteFileContext, table: dict[str, Any], role: str, file: Path) -> str:
    fmt = ctx.get(table, "format", str, role)
    if fmt is None:
        fmt = _SUFFIX_FORMAT[role].get(file.suffix.lower())
        if fmt is None:
            raise ctx.error(f"{role}.format", f"cannot tell the format of {file.name!r}; set format to one of "
                            f"{', '.join(_FORMATS[role])}")
    elif fmt not in _FORMATS[role]:
        raise ctx.error(f"{role}.format", f"{fmt!r} is not a {role} prompt format; known: {', '.join(_FORMATS[role])}")
    return fmt


def _images(ctx: SuiteFileContext, table: dict[str, Any], role: str, default: int) -> int:
    n = ctx.get(table, "images_per_prompt", int, role, default=default)
    if n < 1:
        raise ctx.error(f"{role}.images_per_prompt", f"must be >= 1, got {n}")
    return n


def trigger_set(ctx: SuiteFileContext, table: dict[str, Any], name: str,
                memorized: dict[str, MemorizedImage]) -> tuple[PromptSet, Path | None]:
    """The trigger prompts (``memorized`` gains their references) and the local reference folder."""
    file = ctx.file(ctx.get(table, "file", str, "trigger", required=True), "trigger.file")
    fmt = _format(ctx, table, "trigger", file)
    ids = _Ids(ctx, table, "trigger", name)
    n = _images(ctx, table, "trigger", TRIGGER_IMAGES_PER_PROMPT)
    refs = ctx.get(table, "references", str, "trigger")
    folder = ctx.file(refs, "trigger.references", folder=True) if refs is not None else None
    scheme = ctx.get(table, "reference_scheme", str, "trigger")
    if scheme is not None and (folder is None or not scheme.endswith("://")):
        raise ctx.error("trigger.reference_scheme", f"{scheme!r}: a scheme such as 'mini://' naming files in "
                        "trigger.references (which must be set)")
    from_file = ctx.get(table, "references_from", str, "trigger")
    # Text-only lists (Realistic Vision's): memorized prompts whose images were never published.
    text_only = ctx.get(table, "text_only", bool, "trigger", default=False)
    matched: dict[str, list[str]] = {}
    if from_file is not None:
        from membench_eval.suites.loaders import load_caption_jsonl

        for record in load_caption_jsonl(ctx.file(from_file, "trigger.references_from")):
            matched.setdefault(_prompt_key(record.caption), []).append(record.url)
    if fmt == "membench" and folder is None and from_file is None and ids.format is None and not text_only:
        prompt_set, images = load_trigger_prompts(file, id_prefix=ids.prefix)
        memorized.update(images)
        return PromptSet("trigger", prompt_set.prompts, n, str(file)), None
    field = "urls" if fmt == "membench" else "references"
    types = _memorization_types(file) if fmt == "jsonl" else {}
    prompts: list[Prompt] = []
    seen: dict[str, Any] = {}
    for row, row_id, text, cells in prompt_rows(file, fmt, with_refs=True):
        found = matched.get(_prompt_key(text), [])
        if not cells and from_file is None and not text_only:
            raise DataError(file, "no reference: a trigger prompt needs at least one (or set "
                            "trigger.references_from)", row=row, field=field)
        image_ids: list[str] = []
        for image in [_reference(ctx, file, row, field, c, folder, scheme) for c in cells] + \
                [_reference(ctx, file, row, field, url, None, None) for url in found]:
            known = memorized.setdefault(image.image_id, image)
            if known.source != image.source and not known.is_local:
                raise DataError(file, f"image id collision between {known.source!r} and {image.source!r}", row=row)
            if image.image_id not in image_ids:
                image_ids.append(image.image_id)
        add_prompt(prompts, seen, file, row, Prompt(ids(len(prompts), row_id), text, tuple(image_ids),
                                                     memorization_type=types.get(row)))
    return PromptSet("trigger", tuple(prompts), n, str(file)), folder


def _memorization_types(file: Path) -> dict[Any, str]:
    """Line -> the row's memorization type label (``overfit_type``, e.g. MV / TV), where it has one."""
    from membench_eval.suites.loaders import iter_json_objects

    out: dict[Any, str] = {}
    for line, obj in iter_json_objects(file):
        label = obj.get("overfit_type", obj.get("memorization_type"))
        if label is not None:
            if not isinstance(label, str) or not label.strip():
                raise DataError(file, f"overfit_type must be a non-empty string, got {label!r}", row=line,
                                field="overfit_type")
            out[line] = label.strip()
    return out


def _reference(ctx: SuiteFileContext, file: Path, row: Any, field: str, cell: str, folder: Path | None,
               scheme: str | None) -> MemorizedImage:
    if folder is None:
        if not _is_http_url(cell):
            raise DataError(file, f"{cell!r} is not an http(s) URL (set trigger.references to a folder for "
                            "local files)", row=row, field=field)
        return MemorizedImage(memorized_image_id(cell), cell)
    name = cell
    if scheme is not None:
        if not cell.startswith(scheme):
            raise DataError(file, f"{cell!r} is not a {scheme} reference", row=row, field=field)
        name = cell[len(scheme):]
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise DataError(file, f"{cell!r} is not a file name in {folder}", row=row, field=field)
    target = folder / name
    if not target.is_file():
        raise DataError(file, f"reference {cell!r} points nowhere: {target} does not exist", row=row, field=field)
    try:
        check_image_header(target, what="reference image")  # the fetcher's pixel limit; header only
    except ImageFileError as exc:
        raise DataError(file, f"reference {cell!r}: {exc}", row=row, field=field) from None
    # Without a scheme the id is the content's, not the name's: a same-named file with other bytes is
    # another image. With one, the id is the cell's (a URL-like name, as the mini's mini://<file>).
    if scheme is None:
        return MemorizedImage(memorized_image_id("sha256:" + ctx.hash_file(target)), str(target))
    if ctx.hashing:
        ctx.hash_file(target)
    return MemorizedImage(memorized_image_id(cell), str(target))


def general_set(ctx: SuiteFileContext, table: dict[str, Any], name: str) -> PromptSet:
    file = ctx.file(ctx.get(table, "file", str, "general", required=True), "general.file")
    fmt = _format(ctx, table, "general", file)
    n = _images(ctx, table, "general", GENERAL_IMAGES_PER_PROMPT)
    if fmt == "coco":
        if "id_prefix" in table or "id_format" in table:
            raise ctx.error("general.id_prefix", "COCO prompts are always coco-<image id>")
        return PromptSet("general", load_coco_prompts(file).prompts, n, str(file))
    ids = _Ids(ctx, table, "general", f"{name}-g")
    prompts: list[Prompt] = []
    seen: dict[str, Any] = {}
    for row, row_id, text, _ in prompt_rows(file, fmt, with_refs=False):
        add_prompt(prompts, seen, file, row, Prompt(ids(len(prompts), row_id), text))
    return PromptSet("general", tuple(prompts), n, str(file))
