"""The package's shape: no import loop between folders, no module too long to read in one sitting.

A loop between two folders means neither can be understood, tested or replaced without the
other (store <-> generation and suites <-> metrics were such loops). The graph is read from the
source with ``ast``, so imports inside functions (lazy ones) and under ``TYPE_CHECKING`` count
too: they tie the folders together just the same.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path


PACKAGE = Path(__file__).resolve().parents[1] / "membench_eval"
MAX_LINES = 420  # "nothing over ~400 lines", with a little slack


def _node(module: str) -> str:
    """The graph node of a dotted module name: its top folder under the package, or the loose
    root module itself (the package root is not one folder: its modules are separate nodes)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> tuple[str, bool]:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    is_package = path.name == "__init__.py"
    parts = rel.parts[:-1] if is_package else rel.parts
    return ".".join(parts), is_package


def _imported_modules(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every ``membench_eval`` module named by an import anywhere in ``tree``."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "membench_eval":  # ``from membench_eval import errors``: the names are modules
                found.update(f"membench_eval.{alias.name}" for alias in node.names)
            else:
                found.add(target)
    return {name for name in found if name.startswith("membench_eval.")}


def folder_graph() -> dict[str, dict[str, list[str]]]:
    """node -> {imported node: ["module imports module", ...]}, edges between different nodes only."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(PACKAGE.rglob("*.py")):
        module, is_package = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        source = _node(module)
        for target in sorted(_imported_modules(tree, module, is_package)):
            if _node(target) != source:
                graph[source][_node(target)].append(f"{module} imports {target}")
    return graph


def folder_cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_no_import_cycle_between_folders() -> None:
    graph = folder_graph()
    assert graph["generation"], "the graph reader found no imports: it is broken, not the package clean"
    lines = []
    for component in folder_cycles(graph):
        lines.append(" <-> ".join(component))
        for source in component:
            for target in component:
                lines.extend(f"    {edge}" for edge in graph[source].get(target, []))
    assert not lines, "import cycles between folders of membench_eval:\n" + "\n".join(lines)


def test_the_cycle_finder_sees_a_cycle() -> None:
    graph = {"a": {"b": ["x"]}, "b": {"c": ["y"]}, "c": {"a": ["z"]}, "d": {"a": ["w"]}}
    assert folder_cycles(graph) == [["a", "b", "c"]]
    assert folder_cycles({"a": {"b": ["x"]}}) == []


def _line_counts() -> dict[str, int]:
    return {str(path.relative_to(PACKAGE.parent)): len(path.read_text(encoding="utf-8").splitlines())
            for path in sorted(PACKAGE.rglob("*.py"))}


def test_no_module_over_the_line_limit() -> None:
    too_long = {name: n for name, n in _line_counts().items() if n > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines (split them by job): {too_long}"
