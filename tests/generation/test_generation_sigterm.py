"""SIGTERM is handled like Ctrl-C (issue 33, case 8): the current batch is finished and stored, its
claim released, and ``membench`` exits 143 with a message (a rerun continues from the store)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.plugin.test_plugin_failures import tiny_suite

SELF_TERMINATING = '''
import os
import signal
from pathlib import Path
from membench_eval.mitigation import Mitigation


class Once(Mitigation):
    name = "once"

    def rewrite_prompt(self, prompt, rng):
        mark = Path(os.environ["TERM_MARK"])
        if not mark.exists():  # what a CI runner's timeout sends, mid-batch
            mark.write_text("sent")
            os.kill(os.getpid(), signal.SIGTERM)
        return prompt
'''


def test_sigterm_drains_the_batch_releases_claims_and_exits_143(tmp_path: Path):
    suite = tiny_suite(tmp_path)
    (tmp_path / "once.py").write_text(SELF_TERMINATING)
    store = tmp_path / "store"
    env = {**os.environ, "TERM_MARK": str(tmp_path / "mark"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "membench_eval.cli", "generate", "--suite", str(suite), "--method",
           str(tmp_path / "once.py"), "--store", str(store), "--role", "general", "--batch-size", "2", "--no-progress"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 143, first.stderr
    assert "terminated (SIGTERM)" in first.stderr and "stopping after the current batch" in first.stdout + first.stderr
    assert len(list((store / "images").rglob("*.png"))) == 2  # the batch it was in, finished; not the next
    assert not list((store / "claims").glob("*.claim"))  # no claim for another host to wait on
