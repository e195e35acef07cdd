"""Suite files: a benchmark written as TOML, by a user or by the package (one code path).

Why: MemBench publishes SD 1.4 prompts only; a lab with its own fine-tune, an SD 2.x model, a
trigger CSV or a folder of reference images must be able to run the benchmark on them. A suite
file builds a :class:`~membench_eval.suites.types.Suite`; ``get_suite("path/to/suite.toml")`` loads
it, so ``--suite FILE.toml`` works wherever ``--suite NAME`` does (``membench run``, ``membench
report``, ``pytest --membench-suite``, ``EvalOptions(suite=...)``). The built-in suites are suite
files too: ``benchmark_data/suites/{sd1,coco,sd1_mem345,sd2_mem219}.toml`` and
``benchmark_data/mini/suite.toml``; read one to see a complete example.

Schema (paths are relative to the suite file; ``manifest:<key>`` names a file of
``benchmark_data/manifest.json``, resolved from ``--data-dir`` / the cache / a verified download)::

    name = "my-suite"                      # required; not a built-in name, no '+' or '/'
    description = "..."                    # optional
    [model]                                # required
    id = "stabilityai/stable-diffusion-2-base"   # a hub id, or: path = "model" (a local folder)
    revision = "main"                      # optional (hub ids only)
    pipeline = "StableDiffusionPipeline"   # optional; a class some model family handles (below)
    [trigger]                              # trigger prompts (at least one of trigger/general)
    file = "prompts.csv"                   # required in the table
    format = "membench"                    # membench (.csv) | jsonl | txt; default from the suffix
    references = "refs"                    # optional: a local folder; the CSV names files in it.
                                           # Absent: the references are http(s) URLs (fetched).
    reference_scheme = "mini://"           # optional, with references: cells are <scheme><file>,
                                           # and a reference's id is the cell's, not its bytes'
    references_from = "manifest:wen_sdv1_500"  # optional: a caption/url JSONL (Wen et al.'s format);
                                           # a prompt whose text is a caption there gets its URL.
                                           # Prompts left without a reference are kept and reported
                                           # unscorable (coverage), as a dead link would be.
    id_prefix = "my-suite"                 # prompt id = "<id_prefix>-<row id>"; default: name
    id_format = "my-t{n:03d}"              # or: a format of {n} (0-based position) and {row} (row id)
    images_per_prompt = 10
    [general]                              # general (COCO-role) prompts
    file = "captions_val2017.json"         # format: coco (.json) | txt | jsonl
    images_per_prompt = 1                  # (id_prefix / id_format as above; COCO: coco-<image id>)
    [generation]                           # height, width, num_inference_steps, guidance_scale
    [scoring]                              # sscd_backend, clip_model, clip_pretrained,
                                           # allow_missing_quality_weights
    [targets]                              # published reference row, if any: top1_sscd, clip,
                                           # source, sscd_backend, clip_model, clip_pretrained
    [reference]                            # gallery = "folder": a local image-search gallery (a
                                           # folder with manifest.json) for a computed reference row

Prompt files. ``membench``: MemBench's ``SD1_final.csv`` (an index column, ``prompt``, ``urls``
as a Python list literal); with ``references`` the ``urls`` cell holds file names in that folder
(a list literal or comma-separated). ``jsonl``: one object per line with ``prompt``, optional
``id``, and ``references`` (a string or a list; also accepted: ``reference``, ``url``, ``urls``).
``txt``: one prompt per line; for trigger prompts a TAB then comma-separated references. The row
id is the index column / the ``id`` field / the 0-based row number.

Supported pipelines: the generation hooks (``membench_eval.generation.denoise``) drive a
``StableDiffusionPipeline`` (CLIP text encoder, UNet2DConditionModel, DDIM): SD 1.x and SD 2.x
(``stable-diffusion-2-base`` at 512, ``stable-diffusion-2`` at 768, a v-prediction model; the
scheduler config carries ``prediction_type``); the other classes ``membench families`` lists run
through their family. A class no family handles is refused; a known model at another size than it
was trained at warns (``models.trained_sizes``).

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
hash, which ``membench report --suite FILE.toml`` checks); the mini-only search defaults are keyed by
built-in names, which a user's suite file may not take. The three original built-ins (``mini``,
``sd1``, ``coco``: ``UNHASHED_BUILTINS``) carry no hash: they are versioned with the package, and
their saved references and leaderboard metadata stay what they were before suites were files.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import Any

from membench_eval.errors import DataError
from membench_eval.suites.suite_context import SuiteFileContext
from membench_eval.suites.suite_prompts import GENERAL_KEYS, TRIGGER_KEYS, general_set, trigger_set
from membench_eval.suites.types import MemorizedImage, ReferenceTargets, Suite

def _supported_pipelines() -> tuple[str, ...]:
    """The pipeline classes a model family handles (``membench families``)."""
    from membench_eval.models import family_class  # noqa: F401  (registers the built-in families)
    from membench_eval.models.family import _registry

    return tuple(sorted(_registry()))

# The package's own suite files: benchmark_data/suites/<name>.toml (mini: benchmark_data/mini/
# suite.toml); provenance in manifest.json "suites". A user's file may not take these names.
BUILTIN_FILES = ("sd1", "coco", "sd1_mem345", "sd2_mem219", "sd2", "rv", "coco_sdxl", "coco_sd3", "coco_flux",
                 "coco_if")
UNHASHED_BUILTINS = frozenset({"mini", "mini-sd3", "sd1", "coco"})
BUILTIN_NAMES = frozenset({"mini", "mini-sd3", *BUILTIN_FILES})

_TOP = {"name", "description", "model", "trigger", "general", "generation", "scoring", "targets", "reference"}
_TABLES: dict[str, set[str]] = {
    "model": {"id", "path", "revision", "pipeline"},
    "trigger": TRIGGER_KEYS,
    "general": GENERAL_KEYS,
    "generation": {"height", "width", "num_inference_steps", "guidance_scale"},
    "scoring": {"sscd_backend", "clip_model", "clip_pretrained", "allow_missing_quality_weights"},
    "targets": {"top1_sscd", "clip", "source", "sscd_backend", "clip_model", "clip_pretrained"},
    "reference": {"gallery"},
}


def read_toml(path: Path) -> tuple[bytes, dict[str, Any]]:
    """The file's bytes and its TOML document (DataError naming the file otherwise)."""
    if not path.is_file():
        raise DataError(path, "suite file not found")
    raw = path.read_bytes()
    try:
        return raw, tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise DataError(path, f"not valid TOML: {exc}") from None


def load_suite_file(path: str | os.PathLike, data_dir: Any = None, *, builtin: bool = False,
                    base_dir: str | os.PathLike | None = None) -> Suite:
    """Read and validate a suite file; every error is a DataError naming the file, key and value.

    ``builtin``: one of the package's own files, which may take a built-in name. ``base_dir``: the
    folder relative paths resolve against (default: the file's own; the mini suite's file read for
    a rebuilt copy of the mini folder)."""
    path = Path(path).expanduser().resolve()
    raw, doc = read_toml(path)
    ctx = SuiteFileContext(path, data_dir, base=None if base_dir is None else Path(base_dir).resolve(),
                           builtin=builtin)
    ctx.check_keys(doc, _TOP, "")
    tables: dict[str, dict[str, Any]] = {}
    for name, allowed in _TABLES.items():
        table = ctx.get(doc, name, dict, "", default={})
        ctx.check_keys(table, allowed, name)
        tables[name] = table
    name = ctx.get(doc, "name", str, "", required=True).strip()
    reserved = set() if builtin else BUILTIN_NAMES
    if not name or "+" in name or "/" in name or "\\" in name or name in reserved:
        raise ctx.error("name", f"{name!r} is not a usable suite name (empty, has '+', '/', or is a built-in: "
                        f"{', '.join(sorted(reserved))})")
    ctx.hashing = not (builtin and name in UNHASHED_BUILTINS)
    if "model" not in doc:
        raise ctx.error("model", "missing required table [model] (id = hub id, or path = local folder)")
    model, revision = _model(ctx, tables["model"])
    memorized: dict[str, MemorizedImage] = {}
    trigger, reference_dir = trigger_set(ctx, tables["trigger"], name, memorized) if "trigger" in doc else (None, None)
    general = general_set(ctx, tables["general"], name) if "general" in doc else None
    if trigger is None and general is None:
        raise ctx.error("trigger", "a suite needs a [trigger] or a [general] table (or both)")
    if trigger is not None and general is not None:
        clash = {p.prompt_id for p in trigger.prompts} & {p.prompt_id for p in general.prompts}
        if clash:
            raise ctx.error("general.id_prefix", f"prompt id(s) {sorted(clash)[:3]} are both trigger and general")
    generation = _generation(ctx, tables["generation"])
    from membench_eval.models.trained_sizes import warn_size_mismatch

    warn_size_mismatch(f"suite {name}", model, generation.get("height"), generation.get("width"))  # type: ignore[arg-type]
    scoring = tables["scoring"]
    sscd = ctx.get(scoring, "sscd_backend", str, "scoring", default="disc_large")
    _check_sscd(ctx, sscd, "scoring.sscd_backend")
    clip_model = ctx.get(scoring, "clip_model", str, "scoring")
    clip_pretrained = ctx.get(scoring, "clip_pretrained", str, "scoring")
    if (clip_model is None) != (clip_pretrained is None):
        raise ctx.error("scoring.clip_pretrained" if clip_model else "scoring.clip_model",
                        "clip_model and clip_pretrained go together (give both or neither)")
    lenient = ctx.get(scoring, "allow_missing_quality_weights", bool, "scoring", False)
    if clip_pretrained is not None and clip_pretrained.endswith((".safetensors", ".bin", ".pt")):
        # Not hashed: a scorer's weights are in every score row's key already (and may be GBs).
        # May be absent when missing weights are allowed (the column then says "unavailable").
        clip_pretrained = str(ctx.file(clip_pretrained, "scoring.clip_pretrained", hashed=False, must_exist=not lenient))
    gallery = ctx.get(tables["reference"], "gallery", str, "reference")
    digest = hashlib.sha256(json.dumps({"suite_file": hashlib.sha256(raw).hexdigest(),
                                        "files": sorted(ctx.read.values())}).encode()).hexdigest() if ctx.hashing else None
    return Suite(
        name=name, model=model, trigger=trigger, general=general, memorized=memorized,
        targets=_targets(ctx, tables["targets"]), reference_dir=reference_dir,
        generation_defaults=generation, sscd_backend=sscd,
        clip_backend=(clip_model, clip_pretrained) if clip_model else None,
        # Not hashed: the gallery's own manifest.json carries every image's sha256, checked on load
        # (a built-in's copy may lack it: it is only read for the computed reference row).
        reference_gallery=None if gallery is None else ctx.file(gallery, "reference.gallery", folder=True,
                                                                must_exist=not builtin),
        revision=revision, source_file=str(path) if ctx.hashing else None, content_sha256=digest,
        argument=None if builtin else str(path),
        allow_missing_quality_weights=lenient,
    )


def _model(ctx: SuiteFileContext, table: dict[str, Any]) -> tuple[str, str | None]:
    hub = ctx.get(table, "id", str, "model")
    local = ctx.get(table, "path", str, "model")
    if (hub is None) == (local is None):
        raise ctx.error("model.id", "give exactly one of model.id (hub id) and model.path (local folder)")
    pipeline = ctx.get(table, "pipeline", str, "model", default="StableDiffusionPipeline")
    if pipeline not in _supported_pipelines():
        raise ctx.error("model.pipeline", f"{pipeline!r} is not a supported pipeline; supported: "
                        f"{', '.join(_supported_pipelines())} (membench families)")
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
    if cls not in _supported_pipelines():
        raise ctx.error("model.path", f"{local!r}: the folder holds a {cls!r}, not a supported pipeline "
                        f"({', '.join(_supported_pipelines())})")
    return str(folder.resolve()), None


def _generation(ctx: SuiteFileContext, table: dict[str, Any]) -> dict[str, object]:
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


def _check_sscd(ctx: SuiteFileContext, name: str, key: str) -> None:
    from membench_eval.metrics.backends import SSCD_BACKENDS

    if name not in SSCD_BACKENDS:
        raise ctx.error(key, f"{name!r} is not an SSCD backend; known: {', '.join(SSCD_BACKENDS)}")


def _targets(ctx: SuiteFileContext, table: dict[str, Any]) -> ReferenceTargets:
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
