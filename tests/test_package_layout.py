"""The package's layout holds: a small root of public faces and foundations, an evaluation package
whose private state nobody else reads, and plugin loading below the levels that use it.

Read from the source files (``ast``), nothing is imported: the checks hold for lazy imports too."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "membench_eval"

# The package root: the plugin faces, their shared base and the foundations (issue 32).
ROOT_MODULES = {"__init__", "mitigation", "detector", "extraction_method", "hyperparams", "errors", "paths", "runtime",
                "prompt_edits"}
# A module at the root that is on its way into a package of its own (the pytest entry point).
# Receivers that name an Evaluation in the code base (``ev``, ``self.ev``, ``session._evaluation``, ...).
EVALUATION_NAMES = re.compile(r"^_?(ev|evaluation|\w+_ev|warm|other|seeded)$")
# Folders below evaluation/ (and reference/, on its level): none of them may import it.
BELOW_EVALUATION = ("report", "generation", "metrics", "store", "suites", "plugins", "models", "reference", "stats")


def _python_files(*folders: Path) -> list[Path]:
    return sorted(p for folder in folders if folder.exists() for p in folder.rglob("*.py"))


def _evaluation_class() -> tuple[Path, ast.ClassDef]:
    for path in _python_files(PACKAGE):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ClassDef) and node.name == "Evaluation":
                return path, node
    raise AssertionError("no class Evaluation in membench_eval")


def _private_names(cls: ast.ClassDef) -> set[str]:
    """``_x`` names the class defines: methods, ``self._x`` attributes, ``self.__dict__`` keys."""
    names: set[str] = set()
    for node in ast.walk(cls):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            names.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __dict__ keys ("_loaded", "_saved_reference")
    return {n for n in names if re.fullmatch(r"_[a-z]\w*", n)}


def _receiver(node: ast.expr) -> str | None:
    """The last name of an attribute's receiver: ``ev`` for ``ev.x``, ``ev`` for ``self.ev.x``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def test_package_root_holds_only_faces_and_foundations() -> None:
    loose = {p.stem for p in PACKAGE.glob("*.py")}
    extra = sorted(loose - ROOT_MODULES)
    assert not extra, f"modules loose at the package root (move them into the package they belong to): {extra}"
    assert len(loose - {"__init__"}) <= 8


def test_nothing_outside_evaluation_reads_its_private_state() -> None:
    """Helpers get what they need as arguments; outsiders use Evaluation's public API only."""
    home, cls = _evaluation_class()
    inside = home.parent if (home.parent / "__init__.py").exists() and home.parent != PACKAGE else home
    private = _private_names(cls)
    found = []
    for path in _python_files(PACKAGE, ROOT / "bench", ROOT / "tests"):
        if path == inside or inside in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Attribute):
                continue
            receiver = _receiver(node.value)
            if receiver is None or receiver in ("self", "cls") or not EVALUATION_NAMES.match(receiver):
                continue
            if node.attr == "__dict__" or node.attr in private:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {receiver}.{node.attr}")
    assert not found, "Evaluation's private state read from outside its package:\n" + "\n".join(found)


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def test_levels_of_evaluation_and_plugins() -> None:
    """evaluation/ sits above report, generation, metrics, store (and beside reference, which it
    may use but not the reverse); plugins/ sits below generation and imports only the plugin
    faces, errors and bundle (a foundation: where the bundled plugin files are)."""
    upward = []
    for folder in BELOW_EVALUATION:
        for path in _python_files(PACKAGE / folder):
            if any(n == "membench_eval.evaluation" or n.startswith("membench_eval.evaluation.") for n in _imports(path)):
                upward.append(str(path.relative_to(ROOT)))
    assert not upward, f"imports of membench_eval.evaluation from a lower level: {upward}"
    allowed = ("membench_eval.plugins", "membench_eval.mitigation", "membench_eval.detector",
               "membench_eval.extraction_method", "membench_eval.hyperparams", "membench_eval.errors", "membench_eval.bundle")
    plugin_files = _python_files(PACKAGE / "plugins")
    assert plugin_files, "membench_eval/plugins/ is missing"
    for path in plugin_files:
        harness = {n for n in _imports(path) if n.startswith("membench_eval")}
        bad = sorted(n for n in harness if not any(n == a or n.startswith(a + ".") for a in allowed))
        assert not bad, f"{path.relative_to(ROOT)} imports above the plugin level: {bad}"
