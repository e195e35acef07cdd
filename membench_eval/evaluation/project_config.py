"""A project's ``[tool.membench]`` settings, found the same way by ``membench run`` and ``pytest --membench``:
which gates a run checks (and from where), and where its run store is.

Why one place: the CLI read ``./pyproject.toml`` while the plugin read pytest's rootdir, so a run from a
subdirectory applied the gates under one shell and silently skipped them under the other. Now both
take, in order: ``--gate`` lines; else ``--gate-file FILE``; else the first ``pyproject.toml`` with a
``[tool.membench]`` table found upward from the working directory (as pytest finds its rootdir: a
pyproject.toml without the table is passed over). Every run says which with ``GateConfig.describe``.
``store = "runs"`` there is the run store when ``--store`` is not given, relative to that file, so a CI
runner and a laptop keep the project's images in the same place (``membench init`` writes both keys).
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from membench_eval.errors import DataError
from membench_eval.evaluation.gates import Gate, GateSpecError, gates_from_pyproject, parse_gates

CONFIG_FILE = "pyproject.toml"


@dataclass(frozen=True)
class GateConfig:
    """The parsed gates and where they came from (``--gate``, a file, or nowhere)."""

    gates: tuple[Gate, ...]
    source: str | None

    def describe(self) -> str:
        """``gates: 2 from /repo/pyproject.toml`` or ``no gates configured``: printed by every run."""
        if not self.gates:
            return "no gates configured" + (f" ({self.source} has none)" if self.source else "")
        return f"gates: {len(self.gates)} from {self.source}"


def has_membench_table(path: Path) -> bool:
    """Whether ``path`` is a TOML file with a ``[tool.membench]`` table (bad TOML is reported by the reader)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError:
        return True  # let gates_from_pyproject name the syntax error rather than skip the file
    except OSError:
        return False
    return isinstance(data.get("tool", {}).get("membench"), dict)


def find_config_file(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` with ``[tool.membench]`` in ``start`` or a folder above it."""
    start = start.resolve()
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_FILE
        if candidate.is_file() and has_membench_table(candidate):
            return candidate
    return None


def resolve_gates(lines: Sequence[str] | None, gate_file: str | Path | None, cwd: Path) -> GateConfig:
    """The run's gates (see the module docstring); a bad gate line or file is a ``GateSpecError``."""
    if lines:
        return GateConfig(tuple(parse_gates(list(lines))), "--gate")
    if gate_file is not None:
        path = Path(gate_file).expanduser()
        if not path.is_file():
            raise GateSpecError(f"{path}: gate file not found (--gate-file)")
        if not has_membench_table(path):
            raise GateSpecError(f"{path}: no [tool.membench] table (--gate-file wants a pyproject.toml-style file "
                                "with `[tool.membench]` and `gate = [...]`)")
        return GateConfig(tuple(parse_gates(gates_from_pyproject(path))), str(path))
    found = find_config_file(cwd)
    if found is None:
        return GateConfig((), None)
    return GateConfig(tuple(parse_gates(gates_from_pyproject(found))), str(found))


def configured_store(cwd: Path) -> str | None:
    """``[tool.membench] store`` of the nearest project config, resolved against its folder; None if unset."""
    found = find_config_file(cwd)
    if found is None:
        return None
    value = tomllib.loads(found.read_text(encoding="utf-8"))["tool"]["membench"].get("store")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise DataError(found, "expected a folder path (a string)", field="tool.membench.store")
    return str((found.parent / Path(value).expanduser()).resolve())
