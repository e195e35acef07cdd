"""``membench data``: inspect and fetch the upstream data (counts, files, reference images)."""

from __future__ import annotations

import argparse
import json
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from membench_eval.fetch.settings import FetchSettings


# The fetch options, by FetchSettings field; their defaults mirror FetchSettings (kept light here:
# importing the fetcher at parser build time would slow `membench --help`).
_FETCH_OPTIONS = {"workers": "--workers", "read_timeout_s": "--timeout", "total_timeout_s": "--total-timeout",
                  "retries": "--retries"}
FETCH_DEFAULTS: dict[str, float] = {"workers": 8, "read_timeout_s": 30.0, "total_timeout_s": 120.0, "retries": 3}


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="local copy of the upstream files (membench/, coco/, webster/); "
                        "default $MEMBENCH_DATA_DIR, else the cache, else download")


def _add_cache_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="cache for downloads and reference images (default $MEMBENCH_CACHE_DIR or ~/.cache/membench-eval)")


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="inspect and fetch the benchmark data")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    summary = sub.add_parser("summary", help="print JSON counts of the upstream prompt files")
    _add_data_dir(summary)
    _add_cache_dir(summary)
    summary.set_defaults(func=cmd_summary)

    files = sub.add_parser("files", help="resolve (and download if needed) every manifest file; print where each is")
    _add_data_dir(files)
    _add_cache_dir(files)
    files.add_argument("--no-download", action="store_true", help="report missing files instead of downloading")
    files.set_defaults(func=cmd_files)

    validate = sub.add_parser("validate", help="check one prompt file (e.g. your own SD2 trigger CSV) and print its counts")
    validate.add_argument("kind", choices=sorted(_VALIDATORS), help="file format")
    validate.add_argument("path", help="the file to check")
    validate.add_argument("--allow-duplicates", action="store_true",
                          help="trigger-csv: count a repeated prompt text once (first row kept) with a warning, "
                               "instead of failing")
    validate.set_defaults(func=cmd_validate)

    fetch = sub.add_parser("fetch-references", help="download a suite's memorized reference images (or your own "
                                                    "URL list) and print coverage")
    source = fetch.add_mutually_exclusive_group()
    source.add_argument("--suite", default=None, help="suite name or suite file .toml (default sd1)")
    source.add_argument("--urls", default=None, metavar="FILE",
                        help="your own image URLs: one per line (# comments, blank lines skipped) or a .csv/.tsv "
                             "with a 'url' column; needs --out")
    fetch.add_argument("--out", default=None, metavar="DIR",
                       help="with --urls: folder for the images (objects/ by sha256) and coverage.jsonl")
    _add_data_dir(fetch)
    _add_cache_dir(fetch)
    defaults = FETCH_DEFAULTS
    fetch.add_argument("--workers", type=int, default=defaults["workers"],
                       help=f"parallel downloads (default {defaults['workers']})")
    fetch.add_argument("--timeout", type=float, default=defaults["read_timeout_s"],
                       help=f"read timeout per request in seconds (default {defaults['read_timeout_s']:g})")
    fetch.add_argument("--total-timeout", type=float, default=defaults["total_timeout_s"],
                       help=f"total time per URL in seconds, all attempts included "
                            f"(default {defaults['total_timeout_s']:g})")
    fetch.add_argument("--retries", type=int, default=defaults["retries"],
                       help=f"extra attempts for transient failures (default {defaults['retries']})")
    fetch.add_argument("--no-retry-dead", action="store_true", help="skip URLs already recorded as dead")
    fetch.set_defaults(func=cmd_fetch_references)


def summary_counts(data_dir: str | None = None, cache: str | None = None) -> dict[str, int]:
    """Counts of every upstream prompt file (each file parsed and validated in full)."""
    from membench_eval.fetch.download import resolve_file
    from membench_eval.suites.loaders import (
        load_caption_jsonl,
        load_coco_prompts,
        load_prompt_lines,
        load_trigger_prompts,
    )

    def path(name: str):
        return resolve_file(name, data_dir, cache=cache)

    trigger, images = load_trigger_prompts(path("sd1_trigger_csv"))
    return {
        "sd1_trigger_prompts": len(trigger),
        "sd1_memorized_images": len(images),
        "sd1_url_entries": sum(len(p.memorized_ids) for p in trigger.prompts),
        "coco_prompts": len(load_coco_prompts(path("coco_captions_val2017"))),
        "webster_sd1_memorized": len(load_prompt_lines(path("webster_sd1_mem345"))),
        "webster_sd2_memorized": len(load_prompt_lines(path("webster_sd2_mem219"))),
        "webster_nonmemorized": len(load_prompt_lines(path("webster_nonmem500"))),
        "wen_sdv1_500": len(load_caption_jsonl(path("wen_sdv1_500"))),
    }


def cmd_summary(args: argparse.Namespace) -> int:
    print(json.dumps(summary_counts(args.data_dir, args.cache_dir), indent=2))
    return 0


def cmd_files(args: argparse.Namespace) -> int:
    from membench_eval.errors import DataError
    from membench_eval.fetch.download import load_manifest, resolve_file

    failed = 0
    for name, entry in load_manifest().items():
        try:
            where = str(resolve_file(name, args.data_dir, cache=args.cache_dir, download=not args.no_download))
            status = "ok" if entry.sha256 else "UNVERIFIED"
        except DataError as exc:
            where, status = str(exc), "missing"
            failed += 1
        print(f"{status:10s} {name:24s} {where}")
    return 1 if failed else 0


def _validate_trigger(path: str, allow_duplicates: bool = False) -> dict[str, int]:
    """Counts of a trigger CSV; merged duplicates are counted and shown as one warning line."""
    import sys

    from membench_eval.suites.loaders import DuplicatePromptWarning, load_trigger_prompts

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DuplicatePromptWarning)
        prompts, images = load_trigger_prompts(path, allow_duplicates=allow_duplicates)
    merged = 0
    for w in caught:
        if isinstance(w.message, DuplicatePromptWarning):
            merged += len(w.message.duplicates)
            print(f"membench: warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    counts = {"prompts": len(prompts), "memorized_images": len(images),
              "url_entries": sum(len(p.memorized_ids) for p in prompts.prompts)}
    if allow_duplicates:
        counts["duplicate_prompts_merged"] = merged
    return counts


def _validate_coco(path: str) -> dict[str, int]:
    from membench_eval.suites.loaders import load_coco_prompts

    return {"prompts": len(load_coco_prompts(path))}


def _validate_lines(path: str) -> dict[str, int]:
    from membench_eval.suites.loaders import load_prompt_lines

    return {"prompts": len(load_prompt_lines(path))}


def _validate_jsonl(path: str) -> dict[str, int]:
    from membench_eval.suites.loaders import load_caption_jsonl

    return {"prompts": len(load_caption_jsonl(path))}


_VALIDATORS = {"trigger-csv": _validate_trigger, "coco-captions": _validate_coco,
               "prompt-lines": _validate_lines, "caption-jsonl": _validate_jsonl}


def cmd_validate(args: argparse.Namespace) -> int:
    from membench_eval.cli import CliError

    if args.allow_duplicates and args.kind != "trigger-csv":
        raise CliError("--allow-duplicates applies to trigger-csv files only")
    extra = {"allow_duplicates": True} if args.allow_duplicates else {}
    print(json.dumps(_VALIDATORS[args.kind](args.path, **extra), indent=2))
    return 0


def fetch_settings_from_args(args: argparse.Namespace) -> FetchSettings:
    """FetchSettings from the command line; an invalid value is one line naming the option
    (``invalid --retries -1: must be an integer >= 0``), raised before any data is read."""
    from membench_eval.fetch.settings import FetchSettings, FetchSettingsError

    try:
        return FetchSettings(read_timeout_s=args.timeout, total_timeout_s=args.total_timeout,
                             retries=args.retries, workers=args.workers)
    except FetchSettingsError as exc:
        raise FetchSettingsError(_FETCH_OPTIONS.get(exc.setting, exc.setting), exc.value, exc.requirement) from None


def _reasons_by_kind(unavailable: dict[str, str]) -> dict[str, int]:
    """Count reasons by their kind ("dead link: HTTP 404", "dead link: timeout", ...), without
    the per-URL details and attempt counts."""
    reasons: dict[str, int] = {}
    for reason in unavailable.values():
        key = ": ".join(reason.split(" (after")[0].split(": ")[:2])
        reasons[key] = reasons.get(key, 0) + 1
    return reasons


def cmd_fetch_references(args: argparse.Namespace) -> int:
    from membench_eval.cli import CliError
    from membench_eval.suites import get_suite
    from membench_eval.fetch.reference_store import ReferenceStore
    from membench_eval.suites.references import fetch_suite_references
    from membench_eval.suites.url_lists import url_list_suite

    settings = fetch_settings_from_args(args)
    if (args.urls is None) != (args.out is None):
        raise CliError("--urls FILE and --out DIR go together (suite images always go to the cache, "
                       "where scoring looks for them)")
    if args.urls is not None:
        suite, store = url_list_suite(args.urls), ReferenceStore(args.out)
    else:
        suite, store = get_suite(args.suite or "sd1", args.data_dir), ReferenceStore.in_cache(args.cache_dir)
    _, coverage = fetch_suite_references(suite, settings=settings, store=store,
                                         retry_dead=not args.no_retry_dead)
    report = {"suite": suite.name, **coverage.to_dict(),
              "unavailable_by_reason": _reasons_by_kind(coverage.unavailable)}
    del report["unavailable"]
    if args.urls is not None:
        for key in ("suite", "prompts_scorable", "prompts_total"):
            del report[key]
        report = {"urls": args.urls, "out": str(store.root), "log": str(store.coverage_file), **report,
                  "dead": {suite.memorized[i].source: r for i, r in coverage.unavailable.items()}}
    print(json.dumps(report, indent=2))
    print(coverage.summary())
    return 0
