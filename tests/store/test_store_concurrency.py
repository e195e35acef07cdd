"""Two processes on one fresh run store split the work (batch claims) and write each key once."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from membench_eval.store.claims import Claims
from membench_eval.store.run_store import RunStore

REPO = Path(__file__).resolve().parents[2]


def test_claims_exclusive_stale_takeover_and_release(tmp_path: Path):
    a, b = Claims(tmp_path, "a", stale_s=0.5), Claims(tmp_path, "b", stale_s=0.5)
    keys = ["k1", "k2"]
    held = a.try_claim(keys)
    assert held is not None and b.try_claim(list(reversed(keys))) is None  # same batch, any order
    assert b.held_by_other(keys)
    a.release(held)
    assert not held.exists() and b.try_claim(keys) is not None
    # A claim whose owner died (a pid that does not exist on this host) is taken over at once.
    dead = tmp_path / "claims" / "dead.claim"
    dead.write_text(json.dumps({"pid": 2**22 + 12345, "host": a.host, "shard": "x", "time": 0}))
    assert a.is_stale(dead)
    # One with no heartbeat for stale_s seconds from another host too.
    other = tmp_path / "claims" / "other.claim"
    other.write_text(json.dumps({"pid": 1, "host": "elsewhere", "shard": "y", "time": 0}))
    os.utime(other, (0, 0))
    assert a.is_stale(other)
    a.close(), b.close()


@pytest.mark.slow
def test_two_processes_on_one_store_split_the_batches(tmp_path: Path):
    store = tmp_path / "store"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "membench_eval.cli", "generate", "--suite", "mini", "--limit", "4", "--store",
           str(store), "--device", "cpu", "--no-progress"]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    news = [int(re.search(r"base: (\d+) new, (\d+) reused", o).group(1)) for o in outputs]
    total = 4 * 10 + 4  # 4 trigger prompts x 10 images + 4 general prompts x 1
    rows = [json.loads(line)["key"] for f in (store / "records").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert len(rows) == len(set(rows)) == total  # each key written once, by one of the two
    assert sum(news) == total and min(news) > 0, outputs  # both did a share of the work
    assert RunStore(store).verify() == [] and not list((store / "claims").glob("*.claim"))


def test_two_writers_scoring_one_image_store_its_score_once(tmp_path):
    """Issue 33, case 9: the second writer had not seen the first's row when it scored, and appended
    its own; now the append re-reads under the store's score lock and skips a stored score."""
    from PIL import Image

    a, b = RunStore(tmp_path, shard="a"), RunStore(tmp_path, shard="b")
    key = "ef" * 32
    a.put_image(key, Image.new("RGB", (4, 4)), {})
    b.refresh()
    assert not a.has_score(key, "sscd", "disc") and not b.has_score(key, "sscd", "disc")  # both will score
    a.put_score(key, "sscd", "disc", 0.5)
    b.put_score(key, "sscd", "disc", 0.5)
    rows = [line for f in (tmp_path / "scores").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert len(rows) == 1 and b.get_score(key, "sscd", "disc") == 0.5
    a.quarantine(key, "test")  # a damaged image is rescored: its old score is no reason to skip
    a.put_image(key, Image.new("RGB", (4, 4)), {})
    a.put_score(key, "sscd", "disc", 0.5)
    rows = [line for f in (tmp_path / "scores").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert len(rows) == 2
