"""``membench data``: inspect and fetch the upstream data (counts, files, reference images)."""

from __future__ import annotations

import argparse
import json


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
    validate.set_defaults(func=cmd_validate)

    fetch = sub.add_parser("fetch-references", help="download a suite's memorized reference images and print coverage")
    fetch.add_argument("--suite", default="sd1", help="suite name (default sd1)")
    _add_data_dir(fetch)
    _add_cache_dir(fetch)
    fetch.add_argument("--workers", type=int, default=8, help="parallel downloads (default 8)")
    fetch.add_argument("--timeout", type=float, default=30.0, help="read timeout per request in seconds")
    fetch.add_argument("--retries", type=int, default=3, help="extra attempts for transient failures")
    fetch.add_argument("--no-retry-dead", action="store_true", help="skip URLs already recorded as dead")
    fetch.set_defaults(func=cmd_fetch_references)


def summary_counts(data_dir: str | None = None, cache: str | None = None) -> dict[str, int]:
    """Counts of every upstream prompt file (each file parsed and validated in full)."""
    from membench_eval.suites.download import resolve_file
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
    from membench_eval.suites.download import load_manifest, resolve_file

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


def _validate_trigger(path: str) -> dict[str, int]:
    from membench_eval.suites.loaders import load_trigger_prompts

    prompts, images = load_trigger_prompts(path)
    return {"prompts": len(prompts), "memorized_images": len(images),
            "url_entries": sum(len(p.memorized_ids) for p in prompts.prompts)}


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
    print(json.dumps(_VALIDATORS[args.kind](args.path), indent=2))
    return 0


def cmd_fetch_references(args: argparse.Namespace) -> int:
    from membench_eval.suites import get_suite
    from membench_eval.suites.references import FetchSettings, fetch_suite_references

    suite = get_suite(args.suite, args.data_dir)
    settings = FetchSettings(read_timeout_s=args.timeout, retries=args.retries, workers=args.workers)
    _, coverage = fetch_suite_references(suite, args.cache_dir, settings=settings,
                                         retry_dead=not args.no_retry_dead)
    reasons: dict[str, int] = {}
    for reason in coverage.unavailable.values():
        key = reason.split(" (after")[0]  # "dead link: HTTP 404", "dead link: ReadTimeout", ...
        key = ": ".join(key.split(": ")[:2])
        reasons[key] = reasons.get(key, 0) + 1
    report = {"suite": suite.name, **coverage.to_dict(), "unavailable_by_reason": reasons}
    del report["unavailable"]
    print(json.dumps(report, indent=2))
    print(coverage.summary())
    return 0
