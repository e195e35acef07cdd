"""``membench board``: many runs' export folders merged into one static leaderboard site."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "board", help="merge exported runs (membench export) into one static leaderboard site",
        description="Rows of runs with the same suite hash, model, scorers and settings share a table; runs that "
        "differ get their own table, saying which field differs. Each row links to its run's provenance.",
    )
    p.add_argument("exports", nargs="+", metavar="EXPORT_DIR", help="folders written by `membench export`")
    p.add_argument("--out", required=True, metavar="SITE_DIR", help="site folder to write (index.html)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from membench_eval.report.site import write_site

    index = write_site(args.exports, args.out)
    print(f"membench: wrote {index}")
    return 0
