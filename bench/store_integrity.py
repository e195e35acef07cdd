"""Run-store integrity and sharing, measured side by side in one run.

1. Checksum cost: time to verify (size + sha256) every stored PNG of a store vs the time to score
   the same images with SSCD (the work a read is followed by). Printed as a ratio (target: small).
   Images are 512x512 (SD 1.4's size; random-textured so PNG sizes are realistic) or --size.
2. Concurrent runs: the wall time of one ``membench generate`` on a fresh store vs two at once on
   one fresh store (they split the batches through claims). Printed: two-at-once / one (target:
   well under 2.0; on a 2-core machine two processes also share the cores, so about 1.0-1.3 means
   the work was split, 2.0 would mean each did everything).

    python bench/store_integrity.py [--images 200] [--size 512] [--limit 4]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def checksum_cost(n: int, size: int) -> None:
    import numpy as np
    from PIL import Image

    from membench_eval.metrics.sscd import load_sscd
    from membench_eval.store.run_store import RunStore

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp)
        keys = []
        for i in range(n):
            base = rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
            img = Image.fromarray(base).resize((size, size), Image.BILINEAR)
            key = f"{i:064x}"
            store.put_image(key, img, {"i": i})
            keys.append(key)
        fresh = RunStore(tmp)
        t0 = time.perf_counter()
        assert all(fresh.has(k) for k in keys)  # size + sha256 of every PNG, first look
        verify_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        images = [fresh.get_image(k) for k in keys]
        read_s = time.perf_counter() - t0
        sscd = load_sscd("disc_mixup_onnx", device="cpu")
        t0 = time.perf_counter()
        sscd.embed(images)
        score_s = time.perf_counter() - t0
        mb = sum(fresh.image_path(k).stat().st_size for k in keys) / 2**20
    print(f"checksum: {n} PNGs of {size}x{size} ({mb:.1f} MiB): verify {verify_s * 1e3 / n:.2f} ms/img, "
          f"read+check+decode {read_s * 1e3 / n:.2f} ms/img, SSCD scoring {score_s * 1e3 / n:.2f} ms/img; "
          f"verify / scoring = {verify_s / score_s:.3f}")


def concurrent_runs(limit: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cmd(store: Path) -> list[str]:
        return [sys.executable, "-m", "membench_eval.cli", "generate", "--suite", "mini", "--limit", str(limit),
                "--store", str(store), "--device", "cpu", "--no-progress"]

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run(cmd(Path(tmp) / "one"), cwd=REPO, env=env, check=True, capture_output=True)
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        procs = [subprocess.Popen(cmd(Path(tmp) / "shared"), cwd=REPO, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for _ in range(2)]
        outs = [p.communicate()[0].strip().splitlines()[-1] for p in procs]
        two = time.perf_counter() - t0
    print(f"concurrent: one run {one:.1f} s; two runs on one store {two:.1f} s; two / one = {two / one:.2f} "
          f"(each alone would be 2.00); {outs}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--limit", type=int, default=4, help="mini prompts per role for the concurrency run")
    args = parser.parse_args()
    checksum_cost(args.images, args.size)
    concurrent_runs(args.limit)


if __name__ == "__main__":
    main()
