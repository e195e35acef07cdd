"""The Ray engine end to end on a local 2-CPU Ray cluster: the mini suite (base + RNA, 1 prompt per
scenario) through 2 actors (``pytest --membench-engine ray``) gives the serial run's images and
leaderboard, byte for byte.

Compared: the leaderboard markdown bytes, the whole leaderboard JSON (it holds no timing field:
nothing is excluded), and every PNG under its key. The Ray run writes every key once (claims), and
``membench run --engine ray`` writes the same leaderboard from what ``run_on_ray`` returns (checked
in-process with the cluster call replaced by the serial evaluation: a third cluster run was ~35 s
of actor start-up for what the plugin run already shows).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from membench_eval.store.run_store import RunStore

pytest.importorskip("ray.data", reason='the Ray engine needs the ray extra: pip install -e ".[ray]"')

REPO = Path(__file__).resolve().parents[2]
RNA = REPO / "mitigations" / "rna.py"
STEM = "mini.limit-1"


@pytest.fixture
def ray_address():
    """A local Ray cluster with 2 CPUs on 127.0.0.1 only, started and stopped by this test."""
    import ray

    from membench_eval.scaleout.ray_engine import loopback_only

    if ray.is_initialized():
        pytest.skip("a Ray cluster is already connected in this process")
    undo = loopback_only(ray)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        address = ray.get_runtime_context().gcs_address
        assert address.startswith("127.0.0.1:"), address
        yield address
    finally:
        ray.shutdown()
        undo()


def _membench(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "membench_eval.cli", "run", str(RNA), "--suite", "mini", "--limit", "1",
                           "--no-progress", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_ray_engine_gives_the_serial_leaderboard(ray_address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture):
    # One torch thread everywhere: CPU pixels depend on the thread count (the actors use the driver's).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MEMBENCH_CACHE_DIR": str(tmp_path / "cache")}
    serial_store, ray_store = tmp_path / "serial", tmp_path / "ray"
    _membench(["--store", str(serial_store), "--out", str(tmp_path / "lb-serial")], env)
    md = (tmp_path / "lb-serial" / f"{STEM}.md").read_bytes()
    serial_json = json.loads((tmp_path / "lb-serial" / f"{STEM}.json").read_text())

    # The pytest plugin's Ray engine on a fresh store, 2 actors per stage.
    out = tmp_path / "lb-ray"
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--membench", str(RNA),
                           "--membench-suite", "mini", "--membench-limit", "1", "--membench-store", str(ray_store),
                           "--membench-out", str(out), "--membench-engine", "ray", "--membench-ray-address", ray_address,
                           "--membench-ray-actors", "2"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "membench: ray engine: 2 cpu actor(s); generation " in done.stdout, done.stdout[-2000:]
    total = 2 * (10 + 1)  # (base, rna) x (1 trigger prompt x 10 images + 1 general x 1)
    assert f"membench: {total} images generated, 0 reused from the store" in done.stdout, done.stdout[-2000:]
    assert "collect step generated" not in done.stdout  # the actors stored every key the serial path asks for
    assert (out / f"{STEM}.md").read_bytes() == md
    assert json.loads((out / f"{STEM}.json").read_text()) == serial_json

    serial, parallel = RunStore(serial_store, shard="reader"), RunStore(ray_store, shard="reader")
    keys = {r["key"] for r in serial.records()}
    assert len(keys) == total and {r["key"] for r in parallel.records()} == keys
    for key in keys:
        assert parallel.image_path(key).read_bytes() == serial.image_path(key).read_bytes()
    rows = [json.loads(line)["key"] for f in (ray_store / "records").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert len(rows) == len(set(rows)) == total  # no key generated twice across the actors
    assert not list((ray_store / "claims").glob("*.claim"))

    # `membench run --engine ray`: the CLI hands its plan to the same run_on_ray and writes what comes
    # back. Here in-process, with the cluster run replaced by the serial evaluation of that plan on the
    # Ray store (the cluster itself is the plugin run above; actors are ~10 s of imports each).
    import membench_eval.scaleout.ray_engine as ray_engine
    from membench_eval.cli import main

    def serial_cluster(evaluation, plan, method_files, params):  # noqa: ANN001, ANN202 - run_on_ray's signature
        assert [Path(f).name for f in method_files] == ["rna.py"] and list(params) == []
        results = evaluation.evaluate_plan(plan)
        return ray_engine.RayOutcome(results, evaluation.quality_status(), dict(evaluation.counts),
                                     list(evaluation.store.problems), actors=1, device="cpu", seconds={"collect": 0.0})

    monkeypatch.setattr(ray_engine, "run_on_ray", serial_cluster)
    monkeypatch.setenv("MEMBENCH_CACHE_DIR", env["MEMBENCH_CACHE_DIR"])
    cli_out = tmp_path / "lb-cli"
    assert main(["run", str(RNA), "--suite", "mini", "--limit", "1", "--store", str(ray_store), "--out", str(cli_out),
                 "--engine", "ray", "--ray-address", ray_address, "--ray-actors", "1", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "membench: ray engine: 1 cpu actor(s); collect 0.0 s" in captured.err, captured.err
    assert re.search(r"membench: 0 images generated, \d+ reused from the store", captured.out), captured.out
    assert (cli_out / f"{STEM}.md").read_bytes() == md


def test_plugin_refuses_ray_with_xdist(tmp_path: Path):
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "2", "--membench",
                           str(RNA), "--membench-engine", "ray", "--membench-store", str(tmp_path / "s")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 4 and "without -n" in done.stderr + done.stdout, done.stderr[-2000:]
