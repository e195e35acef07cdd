"""Which source code a method's images come from: a hash that enters every image's store key.

Why: the store reuses images by key. With only a method's name and parameters in the key, editing
the method's code and rerunning silently reported the OLD images. The fingerprint hashes:

- the method's own file;
- every module that file imports from its own folder, recursively (the user's helpers);
- every harness helper module it imports directly (``membench_eval.*``, e.g. ``prompt_edits``),
  except the plugin API itself (``membench_eval.mitigation``, ``membench_eval.detector``,
  ``membench_eval.extraction_method``, their base ``membench_eval.hyperparams``,
  ``membench_eval.errors``), whose behaviour is versioned with the engine and the detection runner
  (``GENERATION_CODE_VERSION``, ``DETECTION_CODE_VERSION``).

Detectors are fingerprinted the same way (``fingerprint_method`` takes any plugin object).

Imports are found by reading the file's syntax tree (``ast``), not by importing it, so the
fingerprint of a stored method can be checked cheaply (``membench store prune``, the plan's stored
configs) and does not depend on what else happens to be imported. Third-party and standard-library
imports are not hashed: their versions are recorded in the run metadata.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from membench_eval.detector import Detector
    from membench_eval.mitigation import Mitigation

FINGERPRINT_SCHEME = "membench-method-source/v1"
# The plugin API: versioned by GENERATION_CODE_VERSION / DETECTION_CODE_VERSION, not by file content.
API_MODULES = frozenset({"membench_eval.mitigation", "membench_eval.detector", "membench_eval.extraction_method",
                         "membench_eval.hyperparams", "membench_eval.errors", "membench_eval", "membench_eval.models"})
BUILTIN_BASE = "builtin:membench_eval.mitigation.Mitigation"


@dataclass(frozen=True)
class MethodSource:
    """The method's file and the hash of every source file its images depend on."""

    path: str | None  # the method file (None for the built-in no-op base)
    sha256: str
    files: tuple[str, ...]  # every hashed file, method file first

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "sha256": self.sha256, "files": list(self.files)}


def fingerprint_file(path: str | Path) -> MethodSource:
    """Fingerprint of the method defined in ``path`` (read with ``ast``; nothing is imported)."""
    root = Path(path).expanduser().resolve()
    files = _collect(root)
    h = hashlib.sha256(FINGERPRINT_SCHEME.encode() + b"\n")
    for file in files:
        data = file.read_bytes()
        h.update(f"{_label(file, root)}\0{len(data)}\0".encode())
        h.update(data)
    return MethodSource(str(root), h.hexdigest(), tuple(str(f) for f in files))


def fingerprint_method(method: "Mitigation | Detector") -> MethodSource:
    """Fingerprint of a configured method or detector object (its class's source file)."""
    from membench_eval.mitigation import Mitigation

    cls = type(method)
    if cls is Mitigation:
        return MethodSource(None, hashlib.sha256(BUILTIN_BASE.encode()).hexdigest(), ())
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    if file is None:
        try:
            file = inspect.getsourcefile(cls)
        except TypeError:
            file = None
    if file is None or not Path(file).is_file():
        raise ValueError(f"method {cls.name!r} ({cls.__qualname__}): its source file cannot be found, so its images "
                         "cannot be keyed by its code; define it in a .py file")
    return fingerprint_file(file)


def _label(file: Path, root: Path) -> str:
    """Name of a hashed file in the digest: relative to the method's folder, or its module path."""
    try:
        return file.relative_to(root.parent).as_posix()
    except ValueError:
        return "membench_eval:" + file.name if "membench_eval" in file.parts else file.name


def _collect(root: Path) -> list[Path]:
    """The method file, then its local and harness imports (see module docstring), sorted."""
    folder = root.parent
    seen: dict[Path, None] = {root: None}
    todo = [root]
    while todo:
        file = todo.pop()
        for found, recurse in _imports(file, folder):
            if found not in seen:
                seen[found] = None
                if recurse:
                    todo.append(found)
    rest = sorted((p for p in seen if p != root), key=lambda p: _order_key(p, folder))
    return [root, *rest]


def _order_key(file: Path, folder: Path) -> str:
    """Where ``file`` sorts in the digest: its path as in a source checkout (``mitigations/wen.py``,
    ``membench_eval/paths.py``), not its absolute path. In a checkout the two orders agree (so the keys
    stored there stand); the absolute order changed with where the package was installed, so an
    installed wheel, or a runner whose venv moved, keyed the same method differently."""
    if file.is_relative_to(folder):
        return f"{folder.name}/{file.relative_to(folder).as_posix()}"
    package = Path(__file__).resolve().parents[1]  # the membench_eval package the harness modules come from
    if file.is_relative_to(package):
        return f"{package.name}/{file.relative_to(package).as_posix()}"
    return file.as_posix()


def _imports(file: Path, folder: Path) -> list[tuple[Path, bool]]:
    """(source file, recurse into it?) for each hashed import of ``file``."""
    try:
        tree = ast.parse(file.read_bytes(), filename=str(file))
    except SyntaxError:
        return []  # the import itself reports the error; the file's own bytes are still hashed
    names: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            names.append((base, node.level))
            names += [(f"{base}.{alias.name}" if base else alias.name, node.level) for alias in node.names]
    out: list[tuple[Path, bool]] = []
    for name, level in names:
        local = _local_module(name, level, file.parent, folder)
        if local is not None:
            out.append((local, True))
        elif level == 0 and name.startswith("membench_eval.") and name not in API_MODULES:
            harness = _harness_module(name)
            if harness is not None:
                out.append((harness, False))
    return out


def _local_module(name: str, level: int, here: Path, folder: Path) -> Path | None:
    """``name`` as a file under the method's folder (plain or relative import), if it is one."""
    if not name and level == 0:
        return None
    base = here
    for _ in range(max(level - 1, 0)):
        base = base.parent
    parts = [p for p in name.split(".") if p]
    candidate = base.joinpath(*parts) if parts else base
    for path in (candidate.with_suffix(".py"), candidate / "__init__.py"):
        if path.is_file():
            resolved = path.resolve()
            if resolved.is_relative_to(folder):
                return resolved
    return None


def _harness_module(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None) if spec is not None else None
    if origin and origin.endswith(".py") and Path(origin).is_file():
        return Path(origin).resolve()
    return None


def call_user_code(plugin: Any, fn: Callable[[], Any], error_for: Callable[[str], Exception]) -> Any:
    """``fn()``; an exception from the user's code becomes ``error_for("raised T: message")`` (a
    MembenchError naming the plugin, its hook and the prompts), carrying the traceback of the
    plugin's own frames in ``details``. Harness errors (MitigationError, DetectorError) pass as they are."""
    from membench_eval.errors import EXIT_METHOD_RAISED, MitigationError, user_traceback

    try:
        return fn()
    except MitigationError:
        raise
    except Exception as exc:
        try:
            files: tuple[str, ...] = fingerprint_method(plugin).files
        except ValueError:
            files = ()
        error = error_for(f"raised {type(exc).__name__}: {exc}")
        error.exit_code = EXIT_METHOD_RAISED  # type: ignore[attr-defined] - its own code, in both shells
        error.details = user_traceback(exc, files)  # type: ignore[attr-defined]
        raise error from exc
