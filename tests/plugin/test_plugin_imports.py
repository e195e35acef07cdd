"""Bundled plugins import only the public toolkit (``membench_eval.models.PLUGIN_API_MODULES``):
internal modules may move, and a plugin that reaches into them breaks with them."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from membench_eval.models import PLUGIN_API_MODULES

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_FILES = sorted(p for folder in ("mitigations", "detectors", "extractions") for p in (ROOT / folder).glob("*.py"))
# Internal imports still made, each with why (the test fails when one goes away, so the list shrinks).
KNOWN_INTERNAL = {
    ("mitigations/nemo.py", "membench_eval.generation.batch"): "cached_setup: the per-pipeline setup cache",
}


def harness_imports(path: Path) -> set[str]:
    """Every ``membench_eval`` module ``path`` imports (lazy imports inside functions included):
    ``from a.b import c`` counts as ``a.b.c`` when that is a public module, else as ``a.b``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "membench_eval"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "membench_eval":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in PLUGIN_API_MODULES else node.module)
    return found


def test_every_public_module_exists() -> None:
    missing = [m for m in PLUGIN_API_MODULES if importlib.util.find_spec(m) is None]
    assert not missing


@pytest.mark.parametrize("path", PLUGIN_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_bundled_plugin_imports_only_public_modules(path: Path) -> None:
    rel = path.relative_to(ROOT).as_posix()
    internal = {m for m in harness_imports(path) if m not in PLUGIN_API_MODULES and (rel, m) not in KNOWN_INTERNAL}
    assert not internal, f"{rel} imports internal modules {sorted(internal)}; use membench_eval.models or a module in PLUGIN_API_MODULES"


def test_known_internal_imports_are_still_there() -> None:
    for (rel, module), why in KNOWN_INTERNAL.items():
        assert module in harness_imports(ROOT / rel), f"{rel} no longer imports {module} ({why}): drop the entry"


def test_the_checker_catches_an_internal_import(tmp_path: Path) -> None:
    plugin = tmp_path / "bad.py"
    plugin.write_text("from membench_eval.generation.denoise import denoise\n"
                      "def f():\n    from membench_eval.detection import signal\n    import membench_eval.store.keys\n")
    assert harness_imports(plugin) == {"membench_eval.generation.denoise", "membench_eval.detection.signal",
                                       "membench_eval.store.keys"}
