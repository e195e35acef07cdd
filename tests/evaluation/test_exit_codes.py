"""``membench run`` and ``pytest --membench`` end a run with the same exit status for the same outcome
(README, "Exit status"): a gate failed 1, a store fault 3, the method's own exception 6; bad input is 2
under membench and pytest's own 4 under pytest. Each case runs both shells on the tiny suite file.

pytest runs in this process through ``pytest.main`` (a subprocess would import torch again, seconds per
case), not pytester's in-process runner: that one drops the modules a test imported when it ends, and
torch cannot be imported twice in one process."""

from __future__ import annotations

from pathlib import Path

import pytest

from membench_eval.cli import main
from membench_eval.errors import EXIT_ENVIRONMENT, EXIT_GATE_FAILED, EXIT_METHOD_RAISED, EXIT_USAGE, PYTEST_USAGE

METHOD = '''
from membench_eval.mitigation import Mitigation


class Shout(Mitigation):
    name = "shout"
    fail: bool = False

    def rewrite_prompt(self, prompt, rng):
        if self.fail:
            raise RuntimeError("the method's own bug")
        return prompt.upper()
'''


@pytest.fixture()
def method(tmp_path: Path) -> Path:
    path = tmp_path / "shout.py"
    path.write_text(METHOD)
    return path


def _both(capsys: pytest.CaptureFixture[str], tiny_suite_file: Path, method: Path, tmp_path: Path, *extra: str,
          store: Path | None = None) -> tuple[int, int, str]:
    """(membench run's status, pytest --membench's status, both outputs) for the same options, from the
    working directory as it is (a folder of tmp_path unless the test moved it)."""
    store = store or tmp_path / "store"
    extra = ("--batch-size", "1", *extra)  # one image per call: no padding to the default batch of 10
    cli = main(["run", str(method), "--suite", str(tiny_suite_file), "--store", str(store), "--out",
                str(tmp_path / "lb-cli"), "--no-progress", "--device", "cpu", *extra])
    flags = [f"--membench-{a[2:]}" if a.startswith("--") else a for a in extra]
    plugin = pytest.main(["-s", "-p", "no:cacheprovider", "--rootdir", str(Path.cwd()), "--membench", str(method),
                          "--membench-suite", str(tiny_suite_file), "--membench-store", str(store), "--membench-out",
                          str(tmp_path / "lb-pytest"), "--membench-device", "cpu", *flags])
    captured = capsys.readouterr()
    return cli, int(plugin), captured.out + captured.err


@pytest.fixture(autouse=True)
def _away_from_the_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The inner pytest must not read this repository's conftest.py and pyproject.toml."""
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")


def test_a_failed_gate_and_a_raising_method_exit_alike(capsys: pytest.CaptureFixture[str], tiny_suite_file: Path,
                                                       method: Path, tmp_path: Path) -> None:
    cli, plugin, out = _both(capsys, tiny_suite_file, method, tmp_path, "--gate", "top1_sscd <= -1")
    assert cli == plugin == EXIT_GATE_FAILED, out
    assert "membench: gates: 1 from --gate" in out
    cli, plugin, out = _both(capsys, tiny_suite_file, method, tmp_path, "--param", "fail=true")
    assert cli == plugin == EXIT_METHOD_RAISED, out
    assert "raised RuntimeError: the method's own bug" in out


def test_a_store_fault_and_bad_input_exit_alike(capsys: pytest.CaptureFixture[str], tiny_suite_file: Path, method: Path,
                                                tmp_path: Path) -> None:
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    cli, plugin, _ = _both(capsys, tiny_suite_file, method, tmp_path, store=not_a_folder)
    assert cli == plugin == EXIT_ENVIRONMENT
    cli, plugin, _ = _both(capsys, tiny_suite_file, method, tmp_path, "--param", "colour=red")
    assert (cli, plugin) == (EXIT_USAGE, PYTEST_USAGE)


def test_gates_found_from_a_subdirectory_apply_in_both_shells(capsys: pytest.CaptureFixture[str], tiny_suite_file: Path,
                                                              method: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's case: run from below the project root, the CLI skipped the gate while pytest applied it."""
    project = Path.cwd()
    (project / "pyproject.toml").write_text('[tool.membench]\ngate = ["top1_sscd <= -1"]\n')
    (project / "experiments").mkdir()
    monkeypatch.chdir(project / "experiments")
    cli, plugin, out = _both(capsys, tiny_suite_file, method, tmp_path)
    assert cli == plugin == EXIT_GATE_FAILED, out
    assert out.count(f"membench: gates: 1 from {(project / 'pyproject.toml').resolve()}") == 2, out
