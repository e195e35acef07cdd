"""``membench store verify|prune``: check a run store's files against their checksums, and remove
entries that current code can never reuse (stale: an edited or removed method, an older engine)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("store", help="verify or prune a run store",
                              description="Maintenance of a run store (the folder given as --store to run/generate).")
    sub = p.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    verify = sub.add_parser("verify", help="re-hash every stored PNG and check every row's checksum",
                            description="Exit 0 when every entry matches its checksums, 3 when some do not.")
    verify.add_argument("store", metavar="DIR", help="run store folder")
    verify.add_argument("--repair", action="store_true",
                        help="move damaged PNGs to quarantine/ so the next run regenerates and rescores them")
    verify.set_defaults(func=run_verify)
    prune = sub.add_parser("prune", help="delete stale entries (edited or removed methods or detectors, older engine)",
                           description="Delete images, rows and scores that current code never reuses.")
    prune.add_argument("store", metavar="DIR", help="run store folder")
    prune.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    prune.set_defaults(func=run_prune)


def _open(path: str):  # noqa: ANN202
    from pathlib import Path

    from membench_eval.errors import StoreError
    from membench_eval.store.run_store import RunStore

    if not (Path(path) / "STORE.json").is_file():
        raise StoreError(f"{path}: not a run store (no STORE.json)")
    return RunStore(path)


def run_verify(args: argparse.Namespace) -> int:
    store = _open(args.store)
    bad = store.verify(repair=args.repair)
    for line in store.problems:
        print(f"membench: {line}")
    for key in bad:
        if not args.repair:
            print(f"membench: {store.image_path(key)}: missing or checksum mismatch (key {key})")
    n_rows = sum(1 for line in store.problems if "checksum mismatch (edited" in line)
    print(f"membench: {len(store)} image(s) checked, {len(bad)} damaged, {n_rows} edited or damaged row(s)"
          + ("; damaged images quarantined, the next run regenerates them" if args.repair and bad else ""))
    store.close()
    n_detections, bad_detections = _verify_detections(store.root)
    if n_detections or bad_detections:
        print(f"membench: {n_detections} detector score(s) checked, {bad_detections} damaged row(s) "
              "(ignored when read: those prompts are scored again)")
    return 0 if not bad and not n_rows and not bad_detections else 3


def _verify_detections(root) -> tuple[int, int]:  # noqa: ANN001
    """(rows that pass their checks, damaged rows) of the store's ``detections/`` area, each
    damaged row printed with its file and line."""
    from membench_eval.store.detections import DetectionStore

    if not (root / "detections").is_dir():
        return 0, 0
    with DetectionStore(root) as detections:
        for line in detections.problems:
            print(f"membench: {line}")
        return len(detections), len(detections.problems)


def run_prune(args: argparse.Namespace) -> int:
    from membench_eval.store.maintenance import prune

    store = _open(args.store)
    try:
        report = prune(store, dry_run=args.dry_run)
    finally:
        store.close()
    print(f"membench: {report.summary(args.dry_run)}")
    return 0
