"""Crash safety end to end: SIGKILL and Ctrl-C a real `membench generate` run, then resume it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from membench_eval.store.run_store import RunStore

REPO = Path(__file__).resolve().parents[2]
TOTAL = 6 * 3 + 2  # 6 trigger prompts x 3 images + 2 general prompts x 1
BATCH = 2
# Enough denoising steps that a run lasts several seconds: the signals below must land mid-run even
# on a fast idle machine (at 6 steps the whole run took 1 s and could finish before SIGINT arrived).
STEPS = 40
# One thread per process: on a busy 2-core machine OpenMP threads of several processes thrash.
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}

DRIVER = '''
import signal
import sys
# Ctrl-C as in a terminal: a child inherits an ignored SIGINT from its parent (an xdist worker can
# have one), and Python then installs no KeyboardInterrupt handler: the run finished and exited 0.
signal.signal(signal.SIGINT, signal.default_int_handler)
from membench_eval import suites
from membench_eval.suites.types import Prompt, PromptSet, Suite

model_dir = sys.argv[1]
trigger = tuple(Prompt(f"t{i}", f"trigger prompt number {i}") for i in range(6))
general = tuple(Prompt(f"g{i}", f"a general prompt {i}") for i in range(2))
suite = Suite(
    name="tinytest", model=model_dir, trigger=PromptSet("trigger", trigger, 3), general=PromptSet("general", general, 1),
    generation_defaults={"height": 32, "width": 32, "num_inference_steps": int(sys.argv[2])},
)
suites.get_suite = lambda name, data_dir=None: suite  # the CLI looks the registry up at call time
from membench_eval.cli import main
sys.exit(main(sys.argv[3:]))
'''


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from membench_eval.models.tiny import build_random_tiny_pipeline

    import torch

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("tiny-model")
    build_random_tiny_pipeline(seed=4, sample_size=32).save_pretrained(path)
    return path


def _cmd(tmp_path: Path, model_dir: Path, out: Path) -> list[str]:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    return [sys.executable, str(driver), str(model_dir), str(STEPS), "generate", "--suite", "tinytest", "--store", str(out),
            "--device", "cpu", "--batch-size", str(BATCH), "--no-progress"]


def _rows_on_disk(store: Path) -> list[str]:
    """Keys of every complete row in every shard (duplicates included)."""
    import json

    keys = []
    for shard in (store / "records").glob("*.jsonl"):
        for line in shard.read_text().splitlines(keepends=True):
            if line.endswith("\n"):
                keys.append(json.loads(line)["key"])
    return keys


def _start_and_signal(cmd: list[str], out: Path, sig: int, after_rows: int) -> tuple[int, str]:
    """Start ``cmd``, send ``sig`` once ``after_rows`` distinct images are stored."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while len(set(_rows_on_disk(out))) < after_rows and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=240)
    return proc.returncode, output


@pytest.mark.slow
def test_ctrl_c_and_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, model_dir):
    out = tmp_path / "store"
    cmd = _cmd(tmp_path, model_dir, out)

    # 1. Ctrl-C: the batch in flight is finished and stored, then the run stops with status 130.
    rc, output = _start_and_signal(cmd, out, signal.SIGINT, after_rows=1)
    assert rc == 130, output
    assert "everything finished so far is stored" in output and "(interrupted)" in output
    keys = _rows_on_disk(out)
    assert len(keys) == len(set(keys)) and 0 < len(keys) < TOTAL and len(keys) % BATCH == 0
    assert RunStore(out).verify() == []

    # 2. SIGKILL while resuming: no cleanup at all runs in the killed process.
    before = len(keys)
    rc, output = _start_and_signal(cmd, out, signal.SIGKILL, after_rows=before + 1)
    assert rc == -signal.SIGKILL, output
    survived = len(set(_rows_on_disk(out)))
    assert before < survived < TOTAL, f"kill did not land mid-run ({survived} of {TOTAL} stored)"

    # 3. Resume to the end: only the missing images are generated.
    done = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{TOTAL - survived} new, {survived} reused" in done.stdout
    keys = _rows_on_disk(out)
    assert len(keys) == len(set(keys)) == TOTAL  # nothing generated twice
    store = RunStore(out)
    assert store.verify() == []  # every row's PNG is complete and matches its checksum
    pngs = list((out / "images").rglob("*.png"))
    assert len(pngs) == TOTAL and {p.stem for p in pngs} == set(keys)

    # 4. Running again generates nothing and says so.
    again = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and f"0 new, {TOTAL} reused" in again.stdout, again.stdout + again.stderr

    # 5. An uninterrupted run (in this process) gives byte-identical images under the same keys.
    from membench_eval.cli.generate import suite_requests
    from membench_eval.generation.engine import generate
    from membench_eval.models.loading import load_pipeline
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.suites.types import Prompt, PromptSet, Suite

    suite = Suite(
        name="tinytest", model=str(model_dir),
        trigger=PromptSet("trigger", tuple(Prompt(f"t{i}", f"trigger prompt number {i}") for i in range(6)), 3),
        general=PromptSet("general", tuple(Prompt(f"g{i}", f"a general prompt {i}") for i in range(2)), 1),
        generation_defaults={"height": 32, "width": 32, "num_inference_steps": STEPS},
    )
    settings = GenerationSettings.for_suite(suite, batch_size=BATCH)
    ref_store = RunStore(tmp_path / "uninterrupted")
    report = generate(load_pipeline(str(model_dir), device="cpu"), suite_requests(suite, settings), None, settings,
                      ref_store, progress=False)
    assert report.new == TOTAL and set(report.keys) == set(keys)
    for key in keys:
        assert store.image_path(key).read_bytes() == ref_store.image_path(key).read_bytes()
