"""A worker (xdist worker, Ray actor) killed while it holds a batch claim: the batch is taken over,
by exactly one of the survivors. (tests/store/test_store_concurrency.py checks ``is_stale`` on a forged
file; this kills a real claimer.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from membench_eval.store.claims import Claims, batch_id

KEYS = ["k-a", "k-b", "k-c"]
HOLDER = """
import sys, time
from pathlib import Path
from membench_eval.store.claims import Claims
c = Claims(Path(sys.argv[1]), "doomed")
assert c.try_claim(sys.argv[2:]) is not None
print("claimed", flush=True)
time.sleep(600)
"""


def test_killed_claimer_is_taken_over_once(tmp_path: Path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), *KEYS], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "claimed"
        path = tmp_path / "claims" / f"{batch_id(KEYS)}.claim"
        assert json.loads(path.read_text())["pid"] == holder.pid
        a, b = Claims(tmp_path, "a"), Claims(tmp_path, "b")
        assert a.try_claim(KEYS) is None  # alive: its claim holds
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        took = a.try_claim(KEYS)  # dead on this host: taken over at once, no STALE_S wait
        assert took == path and json.loads(path.read_text())["shard"] == "a"
        assert b.try_claim(KEYS) is None  # and only by one survivor
        a.release(took)
        assert b.try_claim(KEYS) is not None
        a.close(), b.close()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)


def test_claim_of_another_node_is_taken_over_only_when_its_heartbeat_stops(tmp_path: Path):
    a = Claims(tmp_path, "a", stale_s=1.0)
    path = tmp_path / "claims" / f"{batch_id(KEYS)}.claim"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": 1, "host": "another-node", "shard": "x", "time": time.time()}))
    assert a.try_claim(KEYS) is None  # its pid means nothing here: only the heartbeat counts
    old = time.time() - 5
    os.utime(path, (old, old))
    assert a.try_claim(KEYS) == path
    a.close()
