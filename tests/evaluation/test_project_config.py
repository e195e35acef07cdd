"""Where a run's gates come from: found upward from the working directory (as pytest finds its rootdir),
``--gate-file`` over that, ``--gate`` over both; the same in ``membench run`` and ``pytest --membench``,
and every run says which."""

from __future__ import annotations

from pathlib import Path

import pytest

from membench_eval.evaluation.project_config import find_config_file, resolve_gates
from membench_eval.evaluation.gates import GateSpecError

GATES = '[tool.membench]\ngate = ["top1_sscd <= 0.3", "clip >= base - 0.01"]\n'


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """A researcher's repository: gates at its root, a subproject pyproject.toml without the table."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n' + GATES)
    (tmp_path / "experiments" / "sub").mkdir(parents=True)
    (tmp_path / "experiments" / "pyproject.toml").write_text('[project]\nname = "y"\n')
    return tmp_path


def test_gates_are_found_from_a_subdirectory(repo: Path) -> None:
    config = resolve_gates(None, None, repo / "experiments" / "sub")
    assert [g.text for g in config.gates] == ["top1_sscd <= 0.3", "clip >= base - 0.01"]
    assert config.describe() == f"gates: 2 from {(repo / 'pyproject.toml').resolve()}"


def test_the_nearest_table_wins_and_none_means_no_gates(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    (repo / "experiments" / "pyproject.toml").write_text('[tool.membench]\ngate = ["clip >= 0.2"]\n')
    assert find_config_file(repo / "experiments" / "sub") == (repo / "experiments" / "pyproject.toml").resolve()
    empty = tmp_path_factory.mktemp("empty")
    if find_config_file(empty) is None:  # a pyproject.toml above the temp root would be found, rightly
        assert resolve_gates(None, None, empty).describe() == "no gates configured"
    (repo / "experiments" / "pyproject.toml").write_text("[tool.membench]\ngate = []\n")
    config = resolve_gates(None, None, repo / "experiments")
    assert config.describe() == f"no gates configured ({(repo / 'experiments' / 'pyproject.toml').resolve()} has none)"


def test_gate_file_and_gate_lines_override_the_search(repo: Path) -> None:
    own = repo / "ci-gates.toml"
    own.write_text('[tool.membench]\ngate = "top1_sscd <= 0.5"\n')
    from_file = resolve_gates(None, own, repo / "experiments" / "sub")
    assert [g.text for g in from_file.gates] == ["top1_sscd <= 0.5"] and from_file.source == str(own)
    lines = resolve_gates(["top3_sscd < 0.4"], own, repo)
    assert lines.describe() == "gates: 1 from --gate"


def test_bad_gate_files_are_named(repo: Path) -> None:
    with pytest.raises(GateSpecError, match="missing.toml: gate file not found"):
        resolve_gates(None, repo / "missing.toml", repo)
    with pytest.raises(GateSpecError, match=r"no \[tool.membench\] table"):
        resolve_gates(None, repo / "experiments" / "pyproject.toml", repo)
    (repo / "experiments" / "sub" / "pyproject.toml").write_text("[tool.membench\n")
    with pytest.raises(GateSpecError, match="sub/pyproject.toml: not valid TOML"):
        resolve_gates(None, None, repo / "experiments" / "sub")


def test_the_store_comes_from_the_same_file_relative_to_it(repo: Path) -> None:
    from membench_eval.errors import DataError
    from membench_eval.evaluation.project_config import configured_store

    assert configured_store(repo / "experiments" / "sub") is None
    (repo / "pyproject.toml").write_text(GATES + 'store = ".membench/runs"\n')
    assert configured_store(repo / "experiments" / "sub") == str((repo / ".membench" / "runs").resolve())
    (repo / "pyproject.toml").write_text(GATES + "store = 3\n")
    with pytest.raises(DataError, match="field 'tool.membench.store'"):
        configured_store(repo)
