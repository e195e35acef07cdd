"""``membench report``: rebuild every artefact of a run from its leaderboard JSON and the run store.

No generation and no model loading: the tables come from the per-prompt values in
``<out>/<stem>.json``; the galleries take their images from the run store. Prompts whose images are
no longer in the store are left out and their rows reported incomplete (never averaged over
silently); ``--no-store`` rebuilds from the JSON alone (no image check, no galleries).

Bad input exits with status 2 and says what was expected: an empty or foreign folder, a file that is
not a leaderboard JSON, a folder that is not a run store.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report", help="rebuild the leaderboard's artefacts (tables, frontier, galleries, HTML) from a run's JSON",
        description="Rebuild <out>/<stem>.md, .json, .html, .tex, .csv and <stem>_files/ (frontier, worst-copy "
        "galleries) from the leaderboard JSON a previous `membench run` / `pytest --membench` wrote, plus the run "
        "store for the images. Nothing is generated and no model is loaded.",
    )
    p.add_argument("--out", default="leaderboard", metavar="DIR",
                   help="leaderboard folder to read <stem>.json from and write into (default: leaderboard)")
    p.add_argument("--suite", default=None, help="which leaderboard of the folder: a suite name or the suite file "
                   "path/to/suite.toml the run used (checked against the hash the run recorded); default: the only one")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="local copy of the upstream files a --suite FILE.toml reads (default: $MEMBENCH_DATA_DIR or the cache)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="the leaderboard of a --limit N run")
    p.add_argument("--subset", choices=["stratified"], default=None, help="the leaderboard of a --subset run")
    p.add_argument("--failed", action="store_true", help="the .failed leaderboard of a run with failing items")
    p.add_argument("--json", default=None, metavar="FILE", help="read this leaderboard JSON instead (written to --out)")
    p.add_argument("--store", default=None, metavar="DIR", help="run store with the images (default: the user cache)")
    p.add_argument("--no-store", action="store_true", help="tables from the JSON alone: no image check, no galleries")
    p.add_argument("--gallery-k", type=int, default=4, metavar="K", help="worst copies per method (default 4)")
    p.add_argument("--bands", default=None, metavar="LO,HI",
                   help="AMS/UMS bands: low < LO <= mid <= HI < high (default: the run's, else 0.5,0.6)")
    p.set_defaults(func=run)


def find_json(args: argparse.Namespace) -> Path:
    """The leaderboard JSON to rebuild from (MembenchError naming what was expected otherwise)."""
    from membench_eval.errors import MembenchError
    from membench_eval.report.output import leaderboard_stem
    from membench_eval.report.rebuild import EXPECTED, is_leaderboard_json
    from membench_eval.suites.suite_file import is_suite_file

    if args.json:
        return Path(args.json)
    out = Path(args.out)
    if not out.is_dir():
        raise MembenchError(f"{out}: no such folder; expected the leaderboard folder of a previous run (its --out), "
                            f"holding {EXPECTED}")
    if args.suite:
        name = suite_of(args).name if is_suite_file(args.suite) else args.suite
        stem = leaderboard_stem(name, args.limit, args.subset) + (".failed" if args.failed else "")
        path = out / f"{stem}.json"
        if not path.is_file():
            have = sorted(p.name for p in out.glob("*.json"))
            raise MembenchError(f"{path}: not found; expected {EXPECTED}"
                                + (f"; the folder has {', '.join(have)}" if have else "; the folder has no JSON file"))
        return path
    import json

    found = []
    for path in sorted(out.glob("*.json")):
        try:
            if is_leaderboard_json(json.loads(path.read_text(encoding="utf-8"))):
                found.append(path)
        except (OSError, UnicodeDecodeError, ValueError):
            continue
    if not found:
        what = "is empty" if not any(out.iterdir()) else "holds no leaderboard JSON"
        raise MembenchError(f"{out}: the folder {what}; expected {EXPECTED} (run `membench run` first, or pass --json)")
    if len(found) > 1:
        raise MembenchError(f"{out}: several leaderboards ({', '.join(p.name for p in found)}); choose one with "
                            "--suite [--limit N] [--subset S] [--failed], or --json FILE")
    return found[0]


def suite_of(args: argparse.Namespace):
    """The suite file of ``--suite FILE.toml``, validated (read once per command)."""
    if getattr(args, "_suite", None) is None:
        from membench_eval.suites.suite_file import load_suite_file

        args._suite = load_suite_file(args.suite, args.data_dir)
    return args._suite


def check_suite_hash(args: argparse.Namespace, path: Path, metadata: dict) -> None:
    """A leaderboard rebuilt for ``--suite FILE.toml`` must come from that file's content: files are
    named by suite name, so another version of the file (or another file of that name) may have
    written it."""
    from membench_eval.errors import MembenchError
    from membench_eval.suites.suite_file import is_suite_file

    if not (args.suite and is_suite_file(args.suite)):
        return
    want, have = suite_of(args).content_sha256, metadata.get("suite_sha256")
    if have != want:
        made = f"from a suite with content sha256 {have[:12]}... ({metadata.get('suite_file')})" if have else \
            "from a built-in suite, not a suite file"
        raise MembenchError(f"{path}: this leaderboard was made {made}; {args.suite} now has sha256 {want[:12]}... "
                            f"(the file or a file it reads changed): rerun `membench run --suite {args.suite}`")


def open_store(path: str | None):
    """The run store at ``path`` (default: the user cache), opened read-only in effect: a folder that
    is not a store is bad input (exit 2), never made into one."""
    from membench_eval.errors import MembenchError
    from membench_eval.paths import cache_dir
    from membench_eval.store.run_store import RunStore

    root = Path(path) if path else cache_dir() / "runs"
    if not (root / "STORE.json").is_file():
        what = "does not exist" if not root.exists() else "is not a run store"
        raise MembenchError(f"{root}: {what}; expected the run store the run wrote its images to (a folder with "
                            "STORE.json, images/, records/, scores/: the --store of `membench run`), or pass "
                            "--no-store to rebuild the tables from the JSON alone")
    return RunStore(root)


def run(args: argparse.Namespace) -> int:
    from membench_eval.errors import MembenchError
    from membench_eval.metrics.memorization import MemorizationBands
    from membench_eval.report.artefacts import write_report
    from membench_eval.report.gallery import NOT_GENERATED, StoreImages
    from membench_eval.report.rebuild import leaderboard_from_json, read_leaderboard_json

    if args.gallery_k < 1:
        raise MembenchError(f"--gallery-k must be >= 1, got {args.gallery_k}")
    try:
        bands = MemorizationBands.parse(args.bands) if args.bands else None
    except ValueError as exc:
        raise MembenchError(f"--bands: {exc}") from None
    path = find_json(args)
    data = read_leaderboard_json(path)
    check_suite_hash(args, path, data.get("metadata") or {})
    failed = path.name.endswith(".failed.json")
    store = None if args.no_store else open_store(args.store)
    warnings: list[str] = []
    keep = None
    if store is not None:
        images = StoreImages(store, data.get("metadata") or {})
        kinds = {r["label"]: r["kind"] for r in data["rows"]}
        dropped: dict[str, list[str]] = {}
        checked = [0]

        def keep(result) -> bool:  # noqa: F811 - the filter given to the rebuild
            if kinds.get(result.label) in NOT_GENERATED:
                return True
            checked[0] += 1
            missing = images.missing_images(result)
            if missing:
                dropped.setdefault(result.label, []).append(f"{result.prompt_id} ({result.role}, {missing} of "
                                                            f"{result.n_images} images)")
                return False
            return True

    board = leaderboard_from_json(data, keep=keep)
    if store is not None:
        for label, items in dropped.items():
            more = " ..." if len(items) > 5 else ""
            warnings.append(f"{label}: {len(items)} prompt(s) without their images in {store.root}, reported as "
                            f"incomplete and not averaged over: {', '.join(items[:5])}{more}")
        if checked[0] and sum(len(v) for v in dropped.values()) == checked[0]:
            warnings.append(f"no image of this leaderboard is in {store.root}: is it the store the run used (--store)?")
    refs = (data.get("metadata") or {}).get("reference_images")
    if not refs and store is not None:
        warnings.append("the leaderboard JSON records no reference images (written by an older membench): the "
                        "galleries show the generated images only")
    files = write_report(board, args.out, store=store, failed=failed, references=refs, bands=bands,
                         gallery_k=args.gallery_k, warnings=warnings)
    for line in files.summary_lines():
        print(line, file=sys.stderr if line.startswith("membench: warning") else sys.stdout)
    return 0
