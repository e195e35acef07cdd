"""``membench families``: the model families, what each offers, and which bundled plugins apply."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "families", help="list the model families and which methods / detectors apply to each",
        description="One row per model family (chosen by a model's model_index.json _class_name): pipeline "
                    "class, prediction type, text encoders, capabilities offered, and the bundled methods and "
                    "detectors that apply (the others read n/a on that family's leaderboard, with what they need).")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=run_families)


def run_families(args: argparse.Namespace) -> int:
    from membench_eval.analysis.family_table import family_rows, markdown

    rows = family_rows()
    print(json.dumps(rows, indent=1, sort_keys=True) if args.json else markdown(rows))
    return 0
