"""Suite files: a benchmark written as TOML by a user, without touching the package.

Why: MemBench publishes SD 1.4 prompts only; a lab with its own fine-tune, an SD 2.x model, a
trigger CSV or a folder of reference images must be able to run the benchmark on them. A suite
file builds the same :class:`~membench_eval.suites.types.Suite` the built-in suites are, and
``get_suite("path/to/suite.toml")`` loads it, so ``--suite FILE.toml`` works wherever ``--suite
NAME`` does (``membench run``, ``pytest --membench-suite``, ``EvalOptions(suite=...)``).

Schema (paths are relative to the suite file; ``manifest:<key>`` names a file of
``benchmark_data/manifest.json``, resolved from ``--data-dir`` / the cache / a verified download)::

    name = "my-suite"                      # required; not a built-in name, no '+' or '/'
    description = "..."                    # optional
    [model]                                # required
    id = "stabilityai/stable-diffusion-2-base"   # a hub id, or: path = "model" (a local folder)
    revision = "main"                      # optional (hub ids only)
    pipeline = "StableDiffusionPipeline"   # optional; the only class the hooks support (below)
    [trigger]                              # trigger prompts (at least one of trigger/general)
    file = "prompts.csv"                   # required in the table
    format = "membench"                    # membench (.csv) | jsonl | txt; default from the suffix
    references = "refs"                    # optional: a local folder; the CSV names files in it.
                                           # Absent: the references are http(s) URLs (fetched).
    references_from = "manifest:wen_sdv1_500"  # optional: a caption/url JSONL (Wen et al.'s format);
                                           # a prompt whose text is a caption there gets its URL.
                                           # Prompts left without a reference are kept and reported
                                           # unscorable (coverage), as a dead link would be.
    id_prefix = "my-suite"                 # prompt id = "<id_prefix>-<row id>"; default: name
    images_per_prompt = 10
    [general]                              # general (COCO-role) prompts
    file = "captions_val2017.json"         # format: coco (.json) | txt | jsonl
    images_per_prompt = 1
    [generation]                           # height, width, num_inference_steps, guidance_scale
    [scoring]                              # sscd_backend, clip_model, clip_pretrained,
                                           # allow_missing_quality_weights
    [targets]                              # published reference row, if any: top1_sscd, clip,
                                           # source, sscd_backend, clip_model, clip_pretrained

Prompt files. ``membench``: MemBench's ``SD1_final.csv`` (an index column, ``prompt``, ``urls``
as a Python list literal); with ``references`` the ``urls`` cell holds file names in that folder
(a list literal or comma-separated). ``jsonl``: one object per line with ``prompt``, optional
``id``, and ``references`` (a string or a list; also accepted: ``reference``, ``url``, ``urls``).
``txt``: one prompt per line; for trigger prompts a TAB then comma-separated references. The row
id is the index column / the ``id`` field / the 0-based row number.

Supported pipelines: the generation hooks (``membench_eval.generation.denoise``) drive a
``StableDiffusionPipeline`` (CLIP text encoder, UNet2DConditionModel, DDIM): SD 1.x and SD 2.x
(``stable-diffusion-2-base`` at 512, ``stable-diffusion-2`` at 768, a v-prediction model; the
scheduler config carries ``prediction_type``). SDXL and other classes are refused.

What the suite's content hash keys (and what it does not). ``Suite.content_sha256`` is the
sha256 of the suite file's bytes and of every file it reads (prompt files, local reference
images). It is in the leaderboard metadata (``suite_sha256``), and ``Suite.result_key``
(``<name>@<hash[:12]>``) replaces the bare name wherever results are looked up BY SUITE NAME:
the saved web image-search reference (``reference-<key>.json``). It is deliberately NOT in image
keys or score rows: images are content-addressed by model, settings, prompt id and text, and
seed, so two suites holding the same prompt under the same model legitimately share images, and
score rows are keyed by image and scorer, with SSCD similarities per reference image id. A local
reference's id is a hash of its bytes (not its file name), so a same-named file with other content
is a different reference and never reuses a stored similarity. Leaderboard files keep the suite
name as their file name (they are rewritten by every run from the store; their metadata names the
hash); quality-weight leniency and the mini-only search defaults are keyed by built-in names,
which a suite file may not take. Built-in suites have no hash, so their keys and files are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import Any

from membench_eval.errors import DataError
from membench_eval.suites.loaders import (
    GENERAL_IMAGES_PER_PROMPT, TRIGGER_IMAGES_PER_PROMPT, _is_http_url, _prompt_key, load_coco_prompts,
    load_trigger_prompts,
)
from membench_eval.suites.prompt_files import add_prompt, prompt_rows
from membench_eval.suites.types import MemorizedImage, Prompt, PromptSet, ReferenceTargets, Suite, memorized_image_id

SUPPORTED_PIPELINES = ("StableDiffusionPipeline",)
BUILTIN_NAMES = frozenset({"mini", "sd1", "coco"})
# The package's own suite files (benchmark_data/suites/<name>.toml; provenance in manifest.json).
BUILTIN_FILES = ("sd1_mem345", "sd2_mem219")

_TOP = {"name", "description", "model", "trigger", "general", "generation", "scoring", "targets"}
_TABLES: dict[str, set[str]] = {
    "model": {"id", "path", "revision", "pipeline"},
    "trigger": {"file", "format", "references", "references_from", "id_prefix", "images_per_prompt"},
    "general": {"file", "format", "id_prefix", "images_per_prompt"},
    "generation": {"height", "width", "num_inference_steps", "guidance_scale"},
    "scoring": {"sscd_backend", "clip_model", "clip_pretrained", "allow_missing_quality_weights"},
    "targets": {"top1_sscd", "clip", "source", "sscd_backend", "clip_model", "clip_pretrained"},
}
_FORMATS = {"trigger": ("membench", "jsonl", "txt"), "general": ("coco", "txt", "jsonl")}
_SUFFIX_FORMAT = {"trigger": {".csv": "membench", ".jsonl": "jsonl", ".txt": "txt"},
                  "general": {".json": "coco", ".txt": "txt", ".jsonl": "jsonl"}}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Ctx:
    """The suite file being read: where it is, its table, and the files it read (for the hash)."""

    def __init__(self, path: Path, data_dir: Any) -> None:
        self.path, self.data_dir = path, data_dir
        self.read: dict[str, str] = {}  # file -> sha256

    def error(self, key: str, message: str) -> DataError:
        return DataError(self.path, message, field=key)

    def get(self, table: dict[str, Any], key: str, types: type | tuple[type, ...], prefix: str,
            default: Any = None, required: bool = False) -> Any:
        full = f"{prefix}.{key}" if prefix else key
        if key not in table:
            if required:
                raise self.error(full, "missing required key")
            return default
        value = table[key]
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            raise self.error(full, f"expected {_type_names(types)}, got {value!r}")
        if not isinstance(value, types):
            raise self.error(full, f"expected {_type_names(types)}, got {value!r}")
        return value

    def file(self, value: str, key: str, *, folder: bool = False, hashed: bool = True) -> Path:
        """``value`` as a path (relative to the suite file, or ``manifest:<key>``) that must exist;
        a ``hashed`` file is part of the suite's content hash."""
        if value.startswith("manifest:"):
            from membench_eval.suites.download import resolve_file

            try:
                found = Path(resolve_file(value[len("manifest:"):], self.data_dir))
            except DataError as exc:
                raise self.error(key, f"{value!r}: {exc}") from None
        else:
            found = Path(value).expanduser()
            found = found if found.is_absolute() else self.path.parent / found
        if folder:
            if not found.is_dir():
                raise self.error(key, f"{value!r}: folder {found} does not exist")
        elif not found.is_file():
            raise self.error(key, f"{value!r}: file {found} does not exist")
        elif hashed:
            self.read[str(found)] = _sha256(found)
        return found


def _type_names(types: type | tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))


def _check_keys(ctx: _Ctx, table: dict[str, Any], allowed: set[str], prefix: str) -> None:
    for key in table:
        if key not in allowed:
            where = f"{prefix}.{key}" if prefix else key
            raise ctx.error(where, f"unknown key (value {table[key]!r}); known keys: {', '.join(sorted(allowed))}")


def load_suite_file(path: str | os.PathLike, data_dir: Any = None, *, builtin: bool = False) -> Suite:
    """Read and validate a suite file; every error is a DataError naming the file, key and value.
    ``builtin``: one of the package's own suite files (``BUILTIN_FILES``), which may take its name."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise DataError(path, "suite file not found")
    raw = path.read_bytes()
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise DataError(path, f"not valid TOML: {exc}") from None
    ctx = _Ctx(path, data_dir)
    _check_keys(ctx, doc, _TOP, "")
    tables: dict[str, dict[str, Any]] = {}
    for name, allowed in _TABLES.items():
        table = ctx.get(doc, name, dict, "", default={})
        _check_keys(ctx, table, allowed, name)
        tables[name] = table
    name = ctx.get(doc, "name", str, "", required=True).strip()
    reserved = BUILTIN_NAMES | (set() if builtin else set(BUILTIN_FILES))
    if not name or "+" in name or "/" in name or "\\" in name or name in reserved:
        raise ctx.error("name", f"{name!r} is not a usable suite name (empty, has '+', '/', or is a built-in: "
                        f"{', '.join(sorted(reserved))})")
    if "model" not in doc:
        raise ctx.error("model", "missing required table [model] (id = hub id, or path = local folder)")
    model, revision = _model(ctx, tables["model"])
    memorized: dict[str, MemorizedImage] = {}
    trigger = _trigger(ctx, tables["trigger"], name, memorized) if "trigger" in doc else None
    general = _general(ctx, tables["general"], name) if "general" in doc else None
    if trigger is None and general is None:
        raise ctx.error("trigger", "a suite needs a [trigger] or a [general] table (or both)")
    if trigger is not None and general is not None:
        clash = {p.prompt_id for p in trigger.prompts} & {p.prompt_id for p in general.prompts}
        if clash:
            raise ctx.error("general.id_prefix", f"prompt id(s) {sorted(clash)[:3]} are both trigger and general")
    generation = _generation(ctx, tables["generation"])
    scoring = tables["scoring"]
    sscd = ctx.get(scoring, "sscd_backend", str, "scoring", default="disc_large")
    _check_sscd(ctx, sscd, "scoring.sscd_backend")
    clip_model = ctx.get(scoring, "clip_model", str, "scoring")
    clip_pretrained = ctx.get(scoring, "clip_pretrained", str, "scoring")
    if (clip_model is None) != (clip_pretrained is None):
        raise ctx.error("scoring.clip_pretrained" if clip_model else "scoring.clip_model",
                        "clip_model and clip_pretrained go together (give both or neither)")
    if clip_pretrained is not None and clip_pretrained.endswith((".safetensors", ".bin", ".pt")):
        # Not hashed: a scorer's weights are in every score row's key already (and may be GBs).
        clip_pretrained = str(ctx.file(clip_pretrained, "scoring.clip_pretrained", hashed=False))
    digest = hashlib.sha256(json.dumps({"suite_file": hashlib.sha256(raw).hexdigest(),
                                        "files": sorted(ctx.read.values())}).encode()).hexdigest()
    return Suite(
        name=name, model=model, trigger=trigger, general=general, memorized=memorized,
        targets=_targets(ctx, tables["targets"]), generation_defaults=generation, sscd_backend=sscd,
        clip_backend=(clip_model, clip_pretrained) if clip_model else None,
        revision=revision, source_file=str(path), content_sha256=digest, argument=None if builtin else str(path),
        allow_missing_quality_weights=ctx.get(scoring, "allow_missing_quality_weights", bool, "scoring", False),
    )


def _model(ctx: _Ctx, table: dict[str, Any]) -> tuple[str, str | None]:
    hub = ctx.get(table, "id", str, "model")
    local = ctx.get(table, "path", str, "model")
    if (hub is None) == (local is None):
        raise ctx.error("model.id", "give exactly one of model.id (hub id) and model.path (local folder)")
    pipeline = ctx.get(table, "pipeline", str, "model", default="StableDiffusionPipeline")
    if pipeline not in SUPPORTED_PIPELINES:
        raise ctx.error("model.pipeline", f"{pipeline!r} is not a supported pipeline; supported: "
                        f"{', '.join(SUPPORTED_PIPELINES)} (SD 1.x and 2.x)")
    revision = ctx.get(table, "revision", str, "model")
    if local is None:
        return hub, revision
    if revision is not None:
        raise ctx.error("model.revision", f"{revision!r}: a revision applies to hub ids, not to a local folder")
    folder = ctx.file(local, "model.path", folder=True)
    index = folder / "model_index.json"
    if not index.is_file():
        raise ctx.error("model.path", f"{local!r}: {folder} is not a diffusers pipeline folder (no model_index.json)")
    try:
        cls = json.loads(index.read_text(encoding="utf-8")).get("_class_name")
    except (ValueError, AttributeError) as exc:
        raise DataError(index, f"not a diffusers model_index.json ({exc})") from None
    if cls not in SUPPORTED_PIPELINES:
        raise ctx.error("model.path", f"{local!r}: the folder holds a {cls!r}, not a supported pipeline "
                        f"({', '.join(SUPPORTED_PIPELINES)})")
    return str(folder.resolve()), None


def _format(ctx: _Ctx, table: dict[str, Any], role: str, file: Path) -> str:
    fmt = ctx.get(table, "format", str, role)
    if fmt is None:
        fmt = _SUFFIX_FORMAT[role].get(file.suffix.lower())
        if fmt is None:
            raise ctx.error(f"{role}.format", f"cannot tell the format of {file.name!r}; set format to one of "
                            f"{', '.join(_FORMATS[role])}")
    elif fmt not in _FORMATS[role]:
        raise ctx.error(f"{role}.format", f"{fmt!r} is not a {role} prompt format; known: {', '.join(_FORMATS[role])}")
    return fmt


def _images(ctx: _Ctx, table: dict[str, Any], role: str, default: int) -> int:
    n = ctx.get(table, "images_per_prompt", int, role, default=default)
    if n < 1:
        raise ctx.error(f"{role}.images_per_prompt", f"must be >= 1, got {n}")
    return n


def _trigger(ctx: _Ctx, table: dict[str, Any], name: str, memorized: dict[str, MemorizedImage]) -> PromptSet:
    file = ctx.file(ctx.get(table, "file", str, "trigger", required=True), "trigger.file")
    fmt = _format(ctx, table, "trigger", file)
    prefix = ctx.get(table, "id_prefix", str, "trigger", default=name)
    n = _images(ctx, table, "trigger", TRIGGER_IMAGES_PER_PROMPT)
    refs = ctx.get(table, "references", str, "trigger")
    folder = ctx.file(refs, "trigger.references", folder=True) if refs is not None else None
    from_file = ctx.get(table, "references_from", str, "trigger")
    matched: dict[str, list[str]] = {}
    if from_file is not None:
        from membench_eval.suites.loaders import load_caption_jsonl

        for record in load_caption_jsonl(ctx.file(from_file, "trigger.references_from")):
            matched.setdefault(_prompt_key(record.caption), []).append(record.url)
    if fmt == "membench" and folder is None and from_file is None:
        prompt_set, images = load_trigger_prompts(file, id_prefix=prefix)
        memorized.update(images)
        return PromptSet("trigger", prompt_set.prompts, n, str(file))
    rows = prompt_rows(file, fmt, with_refs=True)
    prompts: list[Prompt] = []
    seen: dict[str, Any] = {}
    for row, row_id, text, cells in rows:
        found = matched.get(_prompt_key(text), [])
        if not cells and from_file is None:
            raise DataError(file, "no reference: a trigger prompt needs at least one (or set "
                            "trigger.references_from)", row=row, field="references")
        ids = []
        for image in [_reference(ctx, file, row, c, folder) for c in cells] + \
                [_reference(ctx, file, row, url, None) for url in found]:
            known = memorized.setdefault(image.image_id, image)
            if known.source != image.source and not known.is_local:
                raise DataError(file, f"image id collision between {known.source!r} and {image.source!r}", row=row)
            if image.image_id not in ids:
                ids.append(image.image_id)
        add_prompt(prompts, seen, file, row, Prompt(f"{prefix}-{row_id}", text, tuple(ids)))
    return PromptSet("trigger", tuple(prompts), n, str(file))


def _reference(ctx: _Ctx, file: Path, row: Any, cell: str, folder: Path | None) -> MemorizedImage:
    if folder is None:
        if not _is_http_url(cell):
            raise DataError(file, f"{cell!r} is not an http(s) URL (set trigger.references to a folder for "
                            "local files)", row=row, field="references")
        return MemorizedImage(memorized_image_id(cell), cell)
    if not cell or "/" in cell or "\\" in cell or cell in (".", ".."):
        raise DataError(file, f"{cell!r} is not a file name in {folder}", row=row, field="references")
    target = folder / cell
    if not target.is_file():
        raise DataError(file, f"reference {cell!r} points nowhere: {target} does not exist", row=row,
                        field="references")
    digest = ctx.read.setdefault(str(target), _sha256(target))
    # The id is the content's, not the name's: a same-named file with other bytes is another image.
    return MemorizedImage(memorized_image_id("sha256:" + digest), str(target))


def _general(ctx: _Ctx, table: dict[str, Any], name: str) -> PromptSet:
    file = ctx.file(ctx.get(table, "file", str, "general", required=True), "general.file")
    fmt = _format(ctx, table, "general", file)
    n = _images(ctx, table, "general", GENERAL_IMAGES_PER_PROMPT)
    if fmt == "coco":
        if "id_prefix" in table:
            raise ctx.error("general.id_prefix", "COCO prompts are always coco-<image id>")
        return PromptSet("general", load_coco_prompts(file).prompts, n, str(file))
    prefix = ctx.get(table, "id_prefix", str, "general", default=f"{name}-g")
    prompts: list[Prompt] = []
    seen: dict[str, Any] = {}
    for row, row_id, text, _ in prompt_rows(file, fmt, with_refs=False):
        add_prompt(prompts, seen, file, row, Prompt(f"{prefix}-{row_id}", text))
    return PromptSet("general", tuple(prompts), n, str(file))


def _generation(ctx: _Ctx, table: dict[str, Any]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key in ("height", "width", "num_inference_steps"):
        value = ctx.get(table, key, int, "generation")
        if value is not None:
            if value < 1 or (key != "num_inference_steps" and value % 8):
                raise ctx.error(f"generation.{key}", f"{value!r}: must be >= 1" +
                                ("" if key == "num_inference_steps" else " and a multiple of 8"))
            out[key] = value
    guidance = ctx.get(table, "guidance_scale", (int, float), "generation")
    if guidance is not None:
        out["guidance_scale"] = float(guidance)
    return out


def _check_sscd(ctx: _Ctx, name: str, key: str) -> None:
    from membench_eval.metrics.sscd import SSCD_BACKENDS

    if name not in SSCD_BACKENDS:
        raise ctx.error(key, f"{name!r} is not an SSCD backend; known: {', '.join(SSCD_BACKENDS)}")


def _targets(ctx: _Ctx, table: dict[str, Any]) -> ReferenceTargets:
    values: dict[str, Any] = {}
    for key in ("top1_sscd", "clip"):
        v = ctx.get(table, key, (int, float), "targets")
        values[key] = None if v is None else float(v)
    for key in ("source", "sscd_backend", "clip_model", "clip_pretrained"):
        values[key] = ctx.get(table, key, str, "targets", default="" if key == "source" else None)
    if values["sscd_backend"] is not None:
        _check_sscd(ctx, values["sscd_backend"], "targets.sscd_backend")
    if values["top1_sscd"] is not None and values["sscd_backend"] is None:
        raise ctx.error("targets.sscd_backend", "a published top1_sscd needs the backend it was measured with")
    if values["clip"] is not None and (values["clip_model"] is None or values["clip_pretrained"] is None):
        raise ctx.error("targets.clip_model", "a published clip needs clip_model and clip_pretrained")
    return ReferenceTargets(**values)


def is_suite_file(name: str) -> bool:
    """``--suite`` names a file (not a built-in name) when it ends in ``.toml``."""
    return str(name).lower().endswith(".toml")


def suite_counts(suite: Suite) -> dict[str, Any]:
    """What ``membench suite check`` prints: the numbers a user checks against their files."""
    local = sum(1 for im in suite.memorized.values() if im.is_local)
    return {
        "suite": suite.name, "file": suite.source_file, "sha256": suite.content_sha256, "model": suite.model,
        "revision": suite.revision,
        "trigger_prompts": len(suite.trigger) if suite.trigger else 0,
        "trigger_prompts_with_reference": sum(1 for p in suite.trigger.prompts if p.memorized_ids) if suite.trigger else 0,
        "general_prompts": len(suite.general) if suite.general else 0,
        "reference_images": len(suite.memorized), "local_references": local, "url_references": len(suite.memorized) - local,
        "images_per_prompt": {"trigger": suite.trigger.images_per_prompt if suite.trigger else 0,
                              "general": suite.general.images_per_prompt if suite.general else 0},
        "generation": dict(suite.generation_defaults), "sscd_backend": suite.sscd_backend,
    }
