"""Soak: kills, SIGTERM and a flaky hook against one run store, then the clean leaderboard.

What it checks (issue 33), in this order on one store: a ``pytest -n 2 --membench`` run whose hook
fails once (must exit 6, the method raised, and write the ``.failed`` leaderboard, not the real one); a ``membench run``
SIGTERMed mid-run at run seed 3 (must exit 143 and leave no claim); ``--kills`` rounds of two concurrent
``membench run`` processes, one SIGKILLed at a random moment, until ``--kills`` SIGKILLs have hit a
live process (round i uses run seed 10 + i // 2: each seed gets two rounds, so every round has images
to generate and every second one resumes killed work); then a final run at seed 0 completes and:

- every image key has exactly one row in ``records/``,
- every (key, metric, backend) score has exactly one row in ``scores/``,
- the leaderboard Markdown and JSON per-prompt values equal a clean run's on a fresh store, byte for byte.

Runs on CPU with the miniature model at a few DDIM steps (a suite file written to a temp folder).

    python bench/soak_edges.py [--kills 20] [--seed 0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from membench_eval.errors import EXIT_METHOD_RAISED  # noqa: E402
MINI = REPO / "benchmark_data" / "mini"

SUITE = """name = "soak"
[model]
path = "{model}"
[trigger]
file = "t.csv"
references = "{refs}"
images_per_prompt = 4
[general]
file = "g.txt"
images_per_prompt = 1
[generation]
height = 64
width = 64
num_inference_steps = 4
[scoring]
sscd_backend = "disc_mixup_onnx"
allow_missing_quality_weights = true
"""

FLAKY = '''
import os
from pathlib import Path
from membench_eval.mitigation import Mitigation


class Suffix(Mitigation):
    name = "suffix"

    def rewrite_prompt(self, prompt, rng):
        mark = os.environ.get("SOAK_FLAKY_MARK")
        if mark and not Path(mark).exists() and "soup" in prompt:
            Path(mark).write_text("failed once")
            raise RuntimeError("flaky hook: fails once")
        return prompt + ", photo"
'''


def write_suite(folder: Path) -> tuple[Path, Path]:
    rows = (MINI / "trigger_prompts.csv").read_text().splitlines()[1:4]
    lines = [",prompt,urls"] + [f'{r.split(",")[0]},{r.split(",")[1]},"[\'{r.split("//")[-1]}\']"' for r in rows]
    (folder / "t.csv").write_text("\n".join(lines) + "\n")
    (folder / "g.txt").write_text("a red bicycle\na bowl of soup\na green car\na blue house\na quiet lake\n")
    (folder / "s.toml").write_text(SUITE.format(model=MINI / "model", refs=MINI / "references"))
    (folder / "suffix.py").write_text(FLAKY)
    return folder / "s.toml", folder / "suffix.py"


def command(suite: Path, method: Path, store: Path, out: Path, seed: int = 0) -> list[str]:
    return [sys.executable, "-m", "membench_eval.cli", "run", str(method), "--suite", str(suite), "--store", str(store),
            "--out", str(out), "--batch-size", "2", "--no-progress", "--no-stored-baselines", "--seed", str(seed)]


def pytest_command(suite: Path, method: Path, store: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "2", "--membench", str(method),
            "--membench-suite", str(suite), "--membench-store", str(store), "--membench-out", str(out),
            "--membench-batch-size", "2", "--membench-no-stored-baselines"]


def run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def counts(store: Path) -> tuple[int, int, int, int]:
    """(image keys, image rows beyond one per key, score idents, score rows beyond one per ident)."""
    keys, scores = Counter(), Counter()
    for f in (store / "records").glob("*.jsonl"):
        for line in f.read_text().splitlines():
            if line.strip():
                keys[json.loads(line)["key"]] += 1
    for f in (store / "scores").glob("*.jsonl"):
        for line in f.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                scores[(r["key"], r["metric"], r["backend"])] += 1
    return len(keys), sum(keys.values()) - len(keys), len(scores), sum(scores.values()) - len(scores)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", default=None, help="work in this folder and keep it (default: a temp folder)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(args.keep or tempfile.mkdtemp(prefix="membench-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    suite, method = write_suite(work)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()

    clean = run(command(suite, method, work / "clean-store", work / "clean-lb"), env)
    assert clean.returncode == 0, clean.stderr
    clean_s = time.perf_counter() - t0
    print(f"clean run: {clean_s:.0f} s; {counts(work / 'clean-store')}", flush=True)

    store, out = work / "soak-store", work / "soak-lb"
    flaky = subprocess.run(pytest_command(suite, method, store, out), cwd=work, capture_output=True, text=True,
                           timeout=900, env={**env, "SOAK_FLAKY_MARK": str(work / "flaky-mark")})
    failed_md = out / "soak.failed.md"
    flaky_ok = flaky.returncode == EXIT_METHOD_RAISED and failed_md.is_file() and not (out / "soak.md").exists()
    print(f"flaky hook under pytest -n 2: exit {flaky.returncode} ({EXIT_METHOD_RAISED} expected: the method raised); .failed leaderboard only: "
          f"{flaky_ok}; {flaky.stdout.strip().splitlines()[-1] if flaky.stdout.strip() else ''}", flush=True)

    # Seed 3: images no other step makes, so the run is mid-generation when the signal comes.
    term = subprocess.Popen(command(suite, method, store, out, seed=3), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(0.5 * clean_s)
    term.send_signal(signal.SIGTERM)
    _, err = term.communicate(timeout=900)
    claims = list((store / "claims").glob("*.claim"))
    print(f"SIGTERM: exit {term.returncode} (143 expected); claims left {len(claims)}; "
          f"{err.strip().splitlines()[-1] if err.strip() else ''}", flush=True)

    killed, i = 0, 0
    while killed < args.kills and i < 3 * args.kills:
        seed = 10 + i // 2
        cmd = command(suite, method, store, out, seed=seed)
        a = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        b = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.0) * clean_s)
        victim = rng.choice([a, b])
        if victim.poll() is None:
            victim.send_signal(signal.SIGKILL)
            killed += 1
        for p in (a, b):
            try:
                p.wait(timeout=900)
            except subprocess.TimeoutExpired:
                p.kill()
        print(f"round {i + 1} (seed {seed}): {killed} SIGKILLs so far; exit codes {a.returncode}, {b.returncode}",
              flush=True)
        i += 1

    final = run(command(suite, method, store, out), env)
    same_md = (out / "soak.md").read_bytes() == (work / "clean-lb" / "soak.md").read_bytes()
    same_json = (json.loads((out / "soak.json").read_text())["per_prompt"]
                 == json.loads((work / "clean-lb" / "soak.json").read_text())["per_prompt"])
    n_keys, extra_rows, n_scores, extra_scores = counts(store)
    print(f"final run: exit {final.returncode}; {n_keys} keys, {extra_rows} extra image rows; {n_scores} scores, "
          f"{extra_scores} extra score rows; leaderboard .md identical: {same_md}, per-prompt JSON identical: "
          f"{same_json}; {killed} SIGKILLs; total {time.perf_counter() - t0:.0f} s", flush=True)
    ok = (killed >= args.kills and final.returncode == 0 and term.returncode == 143 and not claims and flaky_ok
          and extra_rows == 0 and extra_scores == 0 and same_md and same_json)
    print("SOAK OK" if ok else "SOAK FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
