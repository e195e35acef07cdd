"""Does a method's effect transfer from UNet/epsilon to MMDiT/flow? The cross-architecture tables.

Runs every bundled mitigation at its strongest setting and every bundled detector on ``mini`` (a
tiny SD 1.x-style UNet) and ``mini-sd3`` (a tiny SD3-style MMDiT), which share photos, captions,
prompts, references, SSCD and CLIP, through the normal CLI (``membench run`` / ``membench detect``),
then puts the paired deltas to base (Top-1 own, Top-1 any, CLIP, COCO CLIP; 95% cluster-bootstrap
intervals) and the detectors' AUCs side by side, with a verdict per method:

- **transfers**: same sign on both, both intervals exclude zero;
- **does not transfer**: measured on both, but the signs differ or an interval includes zero;
- **cannot be measured**: n/a on a model (the reason the leaderboard gives).

The verdict reads MemBench's metric (delta Top-1 own); the other columns are shown beside it.

Usage (from the repository root; the run store makes a rerun reuse every image)::

    python benchmark_data/mini_sd3/cross_arch.py                 # both suites, all methods, all prompts
    python benchmark_data/mini_sd3/cross_arch.py --limit 5       # the shipped tables: 5 + 5 prompts
    python benchmark_data/mini_sd3/cross_arch.py --tables-only   # rebuild the tables from the JSONs

The runs' leaderboards go to ``--work`` (default ``leaderboard/cross-arch``); their JSONs are copied
to ``docs/results/<suite>.json`` and ``.detect.json`` (the docs render them) and the tables are
written between the ``cross-arch`` markers of ``benchmark_data/mini_sd3/README.md`` and
``docs/cross-architecture.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SUITES = ("mini", "mini-sd3")
DELTA_COLUMNS = (("top1_sscd", "Top-1 own"), ("top1_any", "Top-1 any"), ("clip", "CLIP"), ("coco_clip", "COCO CLIP"))
BEGIN, END = "<!-- cross-arch:begin -->", "<!-- cross-arch:end -->"


def methods() -> list[str]:
    """Every bundled mitigation but base (base always runs)."""
    return [p.stem for p in sorted((REPO / "mitigations").glob("*.py")) if p.stem != "base"]


def stem(suite: str, limit: int | None) -> str:
    """The leaderboard files' name (as the CLI writes them)."""
    return f"{suite}.limit-{limit}" if limit else suite


def run_suite(suite: str, work: Path, out: Path, store: Path | None, threads: int, limit: int | None,
              detect_limit: int | None) -> None:
    """``membench run`` (strongest settings) and ``membench detect`` (every detector) on one suite;
    their leaderboard JSONs copied to ``out`` as ``<suite>.json`` / ``<suite>.detect.json``."""
    common = [*(["--store", str(store)] if store else []), "--out", str(work), "--no-progress"]
    env_py = [sys.executable, "-m", "membench_eval.cli"]
    run = [*env_py, "run", *methods(), "--suite", suite, "--param", "strongest", "--no-stored-baselines", *common,
           *(["--limit", str(limit)] if limit else [])]
    detect = [*env_py, "detect", "--suite", suite, "--detector", *map(str, sorted((REPO / "detectors").glob("*.py"))),
              *common, *(["--limit", str(detect_limit)] if detect_limit else [])]
    for cmd in (run, detect):
        print("+", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, cwd=REPO, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    out.mkdir(parents=True, exist_ok=True)
    for ext in (".json", ".detect.json"):
        lim = limit if ext == ".json" else detect_limit
        written = [work / f"{name}{ext}" for name in (stem(suite, lim), suite)]
        shutil.copyfile(next((p for p in written if p.is_file()), written[0]), out / f"{suite}{ext}")


def _delta(cell: dict[str, Any] | None) -> dict[str, float] | None:
    return (cell or {}).get("delta_to_base") if (cell or {}).get("available") else None


def _short(why: str | None) -> str | None:
    """A leaderboard's n/a reason without its "n/a: " prefix."""
    return why.removeprefix("n/a: ") if why else why


def _fmt(d: dict[str, float] | None, why: str | None) -> str:
    if d is None:
        return "n/a" if why else ""
    return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def verdict(a: dict[str, float] | None, b: dict[str, float] | None, why: str | None) -> str:
    """transfers / does not transfer / cannot be measured, from the two paired deltas."""
    if a is None or b is None:
        return f"cannot be measured: {_short(why)}" if why else "cannot be measured"
    excludes = lambda d: d["low"] > 0 or d["high"] < 0  # noqa: E731
    if excludes(a) and excludes(b) and (a["mean"] > 0) == (b["mean"] > 0):
        return "transfers"
    if not excludes(a) and not excludes(b):
        return "no effect on either"
    return "does not transfer"


def _rows(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["method"]: r for r in board["rows"] if r.get("kind") in ("base", "method")}


def _na(row: dict[str, Any] | None) -> str | None:
    if row is None:
        return "not run"
    cell = row["metrics"].get("top1_sscd") or {}
    return None if cell.get("available") else cell.get("reason")


def mitigation_table(boards: dict[str, dict[str, Any]]) -> str:
    a, b = (_rows(boards[s]) for s in SUITES)
    head = ["method", *[f"{s} delta {h}" for _, h in DELTA_COLUMNS for s in SUITES], "effect on Top-1 own"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in [m for m in a if m != "base"]:
        ra, rb = a.get(name), b.get(name)
        why = _na(rb) or _na(ra)
        cells = [ra["label"] if ra else name]
        for key, _ in DELTA_COLUMNS:
            for row in (ra, rb):
                cells.append(_fmt(_delta(row["metrics"].get(key)) if row else None, _na(row)))
        cells.append(verdict(_delta(ra["metrics"].get("top1_sscd")) if ra else None,
                             _delta(rb["metrics"].get("top1_sscd")) if rb else None, why))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def detector_table(detects: dict[str, dict[str, Any]]) -> str:
    def by_name(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in board["detectors"]}

    a, b = (by_name(detects[s]) for s in SUITES)
    lines = ["| detector | mini AUC [95% CI] | mini-sd3 AUC [95% CI] | separates on both (lower bound > 0.5) |",
             "|---|---|---|---|"]

    def auc(row: dict[str, Any] | None) -> tuple[str, dict[str, float] | None]:
        if row is None:
            return "not run", None
        if not row.get("available") or row.get("auc") is None:
            return "n/a", None
        e = row["auc"]
        return f"{e['mean']:.3f} [{e['low']:.3f}, {e['high']:.3f}]", e

    for label in a:
        (ta, ea), (tb, eb) = auc(a.get(label)), auc(b.get(label))
        if ea is None or eb is None:
            why = next((r.get("reason") for r in (b.get(label), a.get(label)) if r and r.get("reason")), None)
            sep = f"cannot be measured: {_short(why)}" if why else "cannot be measured"
        else:
            sep = "yes" if ea["low"] > 0.5 and eb["low"] > 0.5 else "no"
        lines.append(f"| {label} | {ta} | {tb} | {sep} |")
    return "\n".join(lines)


def write_tables(out: Path, pages: list[Path]) -> str:
    boards = {s: json.loads((out / f"{s}.json").read_text(encoding="utf-8")) for s in SUITES}
    detects = {s: json.loads((out / f"{s}.detect.json").read_text(encoding="utf-8")) for s in SUITES}
    text = (f"Mitigations, strongest setting, paired delta to each model's own base [95% CI]:\n\n"
            f"{mitigation_table(boards)}\n\nDetectors, trigger vs general prompts:\n\n{detector_table(detects)}\n")
    for page in pages:
        doc = page.read_text(encoding="utf-8")
        if BEGIN in doc and END in doc:
            doc = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: f"{BEGIN}\n{text}{END}", doc, flags=re.S)
            page.write_text(doc, encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "results", help="where the leaderboard JSONs go")
    ap.add_argument("--work", type=Path, default=REPO / "leaderboard" / "cross-arch", help="the runs' leaderboards")
    ap.add_argument("--store", type=Path, default=None, help="run store (default: membench's)")
    ap.add_argument("--pages", type=Path, nargs="*", default=[HERE / "README.md", REPO / "docs" / "cross-architecture.md"],
                    help="files whose cross-arch markers receive the tables")
    ap.add_argument("--suites", nargs="+", default=list(SUITES), choices=SUITES, help="suites to (re)run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None,
                    help="mitigations: first N prompts of each set (the shipped table: 5, see the README)")
    ap.add_argument("--detect-limit", type=int, default=None, help="detectors: first N prompts of each set")
    ap.add_argument("--tables-only", action="store_true", help="only rebuild the tables from the JSONs")
    args = ap.parse_args(argv)
    if not args.tables_only:
        for suite in args.suites:
            run_suite(suite, args.work, args.out, args.store, args.threads, args.limit, args.detect_limit)
    print(write_tables(args.out, args.pages))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
