"""Scale-out throughput, measured side by side in one run (fresh run store for every configuration).

CPU machine (no CUDA): images/s of the mini suite (base + a method) run serially (`membench run`),
under pytest-xdist (`pytest -n 2 --membench`) and on the Ray engine with 2 actors on a local
cluster (`membench run --engine ray --ray-actors 2`), end to end (start-up, model loading,
generation, scoring, leaderboard), printed as ratios to serial, and over the generation phase
alone (first to last PNG written, the same measure for every engine; serial and xdist score each
batch during it, Ray scores in a stage after it). Every run's leaderboard must be the serial one,
byte for byte (checked, printed).

GPU machine: per-device efficiency = (images/s with N devices / N) / (images/s with 1 device), for
`pytest -n N` (one device per worker) and, with --ray, the Ray engine with N actors (goal >= 0.9;
use a suite and --limit whose generation dominates start-up, e.g. --suite sd1 --limit 40).

    python bench/scaling.py [--limit 8] [--method mitigations/rna.py] [--suite mini] [--ray/--no-ray]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return wall, done.stdout + done.stderr


def _generated(text: str) -> int:
    m = re.search(r"membench: (\d+) images generated", text)
    return int(m.group(1)) if m else 0


def measure(kind: str, n: int, args: argparse.Namespace, tmp: Path, env: dict[str, str]) -> dict:
    """One configuration on a fresh store: wall seconds, images generated, leaderboard bytes."""
    store, out = tmp / f"store-{kind}-{n}", tmp / f"lb-{kind}-{n}"
    common = ["--suite", args.suite] + (["--limit", str(args.limit)] if args.limit else [])
    if kind == "xdist":
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--membench", args.method,
               "--membench-suite", args.suite, "--membench-store", str(store), "--membench-out", str(out)]
        cmd += (["--membench-limit", str(args.limit)] if args.limit else []) + (["-n", str(n)] if n > 1 else [])
    else:
        cmd = [sys.executable, "-m", "membench_eval.cli", "run", args.method, *common, "--store", str(store),
               "--out", str(out), "--no-progress"]
        if kind == "ray":
            cmd += ["--engine", "ray", "--ray-actors", str(n)]
    wall, text = _run(cmd, tmp, env)
    boards = sorted(out.glob(f"{args.suite}*.md"))
    return {"kind": kind, "n": n, "wall": wall, "images": _generated(text), "md": boards[0].read_bytes() if boards else b"",
            "phase": _generation_phase_rate(store)}


def _generation_phase_rate(store: Path) -> float | None:
    """Images/s from the first to the last PNG written (PNG mtimes): generation without the
    start-up and the final aggregation, the same measure for every engine."""
    times = sorted(f.stat().st_mtime for f in store.glob("images/*/*.png"))
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    later = sum(1 for t in times if t > times[0] + 0.05)  # the first batch lands at once: not timed
    return later / (times[-1] - times[0])


def _line(r: dict, base: dict, per_device: bool) -> str:
    rate = r["images"] / r["wall"]
    text = f"{r['kind']:>6} x{r['n']}: {r['images']} images in {r['wall']:6.1f} s = {rate:6.2f} img/s"
    base_rate = base["images"] / base["wall"]
    if per_device:
        text += f"; per device {rate / r['n']:.2f} img/s, efficiency {rate / r['n'] / base_rate:.2f}"
    else:
        text += f"; vs serial {rate / base_rate:.2f}x"
    if r["phase"] and base["phase"]:
        text += f"; generation phase {r['phase']:.2f} img/s ({r['phase'] / base['phase'] / (r['n'] if per_device else 1):.2f}x)"
    return text + ("; leaderboard = serial" if r["md"] == base["md"] else "; LEADERBOARD DIFFERS FROM SERIAL")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", default="mini")
    p.add_argument("--limit", type=int, default=8, help="prompts per prompt set (0: all)")
    p.add_argument("--method", default=str(REPO / "mitigations" / "rna.py"))
    p.add_argument("--ray", action=argparse.BooleanOptionalAction, default=None,
                   help="include the Ray engine (default: when ray is installed)")
    args = p.parse_args()
    args.limit = args.limit or None
    import importlib.util

    has_ray = importlib.util.find_spec("ray") is not None
    use_ray = has_ray if args.ray is None else args.ray
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    # One torch thread per process on CPU (pixels depend on it; every configuration gets the same).
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1") if not gpus else
           os.environ.get("OMP_NUM_THREADS", "4")}
    print(f"bench/scaling.py: suite {args.suite}, limit {args.limit}, method {Path(args.method).name}, "
          f"{os.cpu_count()} CPUs, {gpus} GPU(s), ray {'on' if use_ray else 'off'}; load average "
          f"{os.getloadavg()[0]:.1f} (ratios need an otherwise idle machine)", flush=True)
    with tempfile.TemporaryDirectory(prefix="membench-scaling-") as t:
        tmp = Path(t)
        env["MEMBENCH_CACHE_DIR"] = os.environ.get("MEMBENCH_CACHE_DIR", str(tmp / "cache"))
        if not gpus:
            plan = [("serial", 1), ("xdist", 2)] + ([("ray", 2)] if use_ray else [])
            results = []
            for kind, n in plan:
                results.append(measure(kind, n, args, tmp, env))
                print(_line(results[-1], results[0], per_device=False) + f" [load {os.getloadavg()[0]:.1f}]",
                      flush=True)
            return
        counts = sorted({1, gpus})
        for kind in ["xdist"] + (["ray"] if use_ray else []):
            base = None
            for n in counts:
                r = measure(kind, n, args, tmp, env)
                base = base or r
                print(_line(r, base, per_device=True), flush=True)


if __name__ == "__main__":
    main()
