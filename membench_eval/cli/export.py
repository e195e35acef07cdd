"""``membench export``: a run's leaderboard as a Hugging Face Hub dataset folder (and, with a token and a
repo id, pushed there), so results can be shared and merged into one leaderboard (``membench board``)."""

from __future__ import annotations

import argparse
import os


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="write a run's results in the Hub's dataset layout (+ .eval_results YAML); optionally upload",
        description="Write <to>/results.json (provenance and row summaries), leaderboard/<stem>.json, "
        "data/samples.parquet, data/leaderboard.parquet, README.md (dataset card) and .eval_results/*.yaml from "
        "the leaderboard JSON in --out. With --repo-id and a token (--token or $HF_TOKEN) the folder is uploaded "
        "to that Hub dataset repo.",
    )
    p.add_argument("--out", default="leaderboard", metavar="DIR",
                   help="leaderboard folder to read (default: leaderboard)")
    p.add_argument("--to", required=True, metavar="DIR", help="export folder to write")
    p.add_argument("--suite", default=None, help="which leaderboard of the folder (default: the only one)")
    p.add_argument("--data-dir", default=None, metavar="DIR", help="as for `membench report --suite FILE.toml`")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="the leaderboard of a --limit N run")
    p.add_argument("--subset", choices=["stratified"], default=None, help="the leaderboard of a --subset run")
    p.add_argument("--failed", action="store_true", help="the .failed leaderboard of a run with failing items")
    p.add_argument("--json", default=None, metavar="FILE", help="export this leaderboard JSON")
    p.add_argument("--repo-id", default=None, metavar="OWNER/NAME", help="Hub dataset repo to upload to")
    p.add_argument("--token", default=None, help="Hub token (default: $HF_TOKEN)")
    p.add_argument("--endpoint", default=None, metavar="URL", help="Hub endpoint (default: huggingface_hub's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from membench_eval.cli.report import find_json
    from membench_eval.errors import MembenchError
    from membench_eval.report.hub import export_run, upload
    from membench_eval.report.rebuild import read_leaderboard_json

    path = find_json(args)
    read_leaderboard_json(path)  # a foreign or damaged file is bad input, said here
    results = export_run(path, args.to, repo_id=args.repo_id)
    print(f"membench: exported {path} to {results.parent}")
    if args.repo_id:
        token = args.token or os.environ.get("HF_TOKEN")
        if not token:
            raise MembenchError("--repo-id needs a Hub token: pass --token or set HF_TOKEN")
        print(f"membench: uploaded to {upload(results.parent, args.repo_id, token, args.endpoint)}")
    return 0
