"""``membench suite check FILE``: validate a suite file alone and print its counts.

Runs exactly the loader ``--suite FILE.toml`` uses (``membench_eval.suites.suite_file``), so a file
that checks is a file that runs; nothing is generated or downloaded (except a ``manifest:`` file
that is neither in ``--data-dir`` nor the cache).
"""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("suite", help="check a suite file (TOML)",
                              description="Suite files: a benchmark (model, prompts, references) in TOML.")
    sub = p.add_subparsers(dest="suite_command", required=True, metavar="ACTION")
    check = sub.add_parser("check", help="validate a suite file and print its counts",
                           description="Exit 0 when the file is valid, 2 with the file, key and value when not.")
    check.add_argument("file", metavar="FILE", help="suite file, e.g. my_suite.toml (or a built-in name)")
    check.add_argument("--data-dir", default=None, help="local copy of upstream files (manifest: entries)")
    check.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    from membench_eval.suites import builtin_suite_file, get_suite
    from membench_eval.suites.suite_file import suite_counts

    counts = suite_counts(get_suite(args.file, args.data_dir))
    if args.json:
        print(json.dumps(counts, sort_keys=True))
        return 0
    where = counts["file"] or ("built-in: " + ", ".join(str(builtin_suite_file(part)) for part in args.file.split("+")))
    print(f"{counts['suite']}: ok ({where})")
    print(f"  model: {counts['model']}" + (f" @ {counts['revision']}" if counts["revision"] else ""))
    ipp = counts["images_per_prompt"]
    print(f"  trigger prompts: {counts['trigger_prompts']} (x{ipp['trigger']} images); "
          f"general prompts: {counts['general_prompts']} (x{ipp['general']} images)")
    print(f"  reference images: {counts['reference_images']} ({counts['local_references']} local files, "
          f"{counts['url_references']} URLs); trigger prompts with a reference: "
          f"{counts['trigger_prompts_with_reference']} of {counts['trigger_prompts']}")
    print(f"  generation: {counts['generation'] or 'SD 1.4 defaults'}; sscd: {counts['sscd_backend']}")
    if counts["sha256"]:
        print(f"  sha256: {counts['sha256']}")
    return 0
