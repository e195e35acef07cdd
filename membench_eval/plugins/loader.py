"""Loading a plugin class (a ``Mitigation``, a ``Detector`` or an ``ExtractionMethod``) from a Python file, with typed,
validated, sweepable parameters.

Both plugin kinds are dataclasses whose fields are their hyperparameters, defined in a user's file.
``load_configs(path, DETECTOR, param_items=["steps=1,50"])`` imports the file as its own module
(never through ``sys.path``), finds the subclass of the kind's base class DEFINED in it (classes
merely imported into it do not count), converts each parameter from text using the dataclass
field's type, and returns one configured instance per combination of the sweep. The mitigation and
detector loaders (``plugins.mitigations``, ``plugins.detectors``) are this module bound to one kind.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib.util
import itertools
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from membench_eval.detector import Detector
from membench_eval.errors import DetectorError, ExtractionError, MitigationError
from membench_eval.extraction_method import ExtractionMethod
from membench_eval.mitigation import Mitigation
from membench_eval.plugins.validation import check_bounds, check_class
from membench_eval.bundle import folder as bundled_folder

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
# ``--param strongest`` / ``--param sweep``: the paper's settings declared on the class.
SPECIAL_PARAMS = ("strongest", "sweep")


@dataclass(frozen=True)
class PluginKind:
    """What the loader needs to know about one plugin base class, for its work and its messages."""

    base: type
    noun: str  # how a configured class is named in errors: "method 'rna'", "detector 'wen_single'"
    file_noun: str  # "mitigation file not found", "detector file not found"
    example: str  # the line an error suggests writing
    error: type[MitigationError]
    folder: str  # the bundled folder its files ship in (``bundle.FOLDERS``)


MITIGATION = PluginKind(Mitigation, "method", "mitigation", "class MyMethod(Mitigation): ...", MitigationError,
                        "mitigations")
DETECTOR = PluginKind(Detector, "detector", "detector", "class MyDetector(Detector): ...", DetectorError, "detectors")
EXTRACTION = PluginKind(ExtractionMethod, "extraction method", "extraction",
                        "class MyAttack(ExtractionMethod): ...", ExtractionError, "extractions")
KINDS = (MITIGATION, DETECTOR, EXTRACTION)


def kind_of(cls: type) -> PluginKind:
    """The plugin kind whose base class ``cls`` derives from."""
    for kind in KINDS:
        if issubclass(cls, kind.base):
            return kind
    raise TypeError(f"{cls!r} is not a Mitigation, Detector or ExtractionMethod subclass")


def parse_params(items: list[str] | None) -> list[dict[str, str]]:
    """``["n=1,2,3", "c=1.3"]`` -> ``[{"n": "1", "c": "1.3"}, {"n": "2", ...}, {"n": "3", ...}]``.

    Comma-separated values are a sweep; several swept keys give their cartesian product, in the
    order given. No items -> ``[{}]`` (one run with the defaults).
    """
    keys: list[str] = []
    values: list[list[str]] = []
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise MitigationError(f"--param {item!r}: expected KEY=VALUE (a sweep as KEY=V1,V2,...)")
        if key in keys:
            raise MitigationError(f"--param {key!r} given twice; give a sweep as {key}=V1,V2,...")
        parts = [v.strip() for v in value.split(",")]
        if any(p == "" for p in parts):
            raise MitigationError(f"--param {item!r}: empty value")
        keys.append(key)
        values.append(parts)
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def _module_name(path: Path, kind: PluginKind) -> str:
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    return f"membench_user_{kind.file_noun}_{path.stem}_{digest}"


def bundled_names(kind: PluginKind) -> list[str]:
    """The names of the kind's bundled files (``rna``, ``wen``, ...), sorted."""
    return sorted(p.stem for p in bundled_folder(kind.folder).glob("*.py") if not p.stem.startswith("_"))


def resolve_file(spec: str | Path, kind: PluginKind = MITIGATION) -> Path:
    """The plugin file ``spec`` names: a path as given, or a bare name (``rna``) of a bundled file.

    Why both: a user's own method is a file in their repository, given by its path; the bundled
    methods live inside the installed package, where no user can be expected to find them. A bare
    name that is an existing file still means that file."""
    path = Path(spec).expanduser()
    if path.is_file() or path.suffix or len(path.parts) != 1:
        return path
    candidate = bundled_folder(kind.folder) / f"{path.name}.py"
    if candidate.is_file():
        return candidate
    names = bundled_names(kind)
    close = difflib.get_close_matches(path.name, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise kind.error(f"unknown {kind.noun} {str(spec)!r}: not a file, and no bundled {kind.noun} has that name "
                     f"(bundled: {', '.join(names) or 'none'}; or give a .py file's path){hint}")


def import_file(path: str | Path, kind: PluginKind = MITIGATION) -> types.ModuleType:
    """Import ``path`` (or a bundled name, ``resolve_file``) as a fresh module with a unique name
    (re-imported on every call)."""
    file = resolve_file(path, kind).resolve()
    if not file.is_file():
        raise kind.error(f"{path}: {kind.file_noun} file not found")
    if file.suffix != ".py":
        raise kind.error(f"{path}: a {kind.file_noun} is a Python file ending in .py")
    name = _module_name(file, kind)
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise kind.error(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    # Registered before executing: dataclasses resolve string annotations through sys.modules.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise kind.error(f"{path}: importing the file failed: {type(exc).__name__}: {exc}") from exc
    return module


def plugin_classes(module: types.ModuleType, kind: PluginKind) -> list[type]:
    """Subclasses of the kind's base class defined in ``module`` itself, in definition order."""
    return [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, kind.base) and obj is not kind.base
        and obj.__module__ == module.__name__
    ]


def find_class(path: str | Path, kind: PluginKind, name: str | None = None) -> type:
    """The one plugin class of ``path`` (or the one whose ``name`` or class name is ``name``)."""
    base = kind.base.__name__
    classes = plugin_classes(import_file(path, kind), kind)
    if not classes:
        raise kind.error(f"{path}: defines no {base} subclass (write `{kind.example}`)")
    listing = ", ".join(f"{c.__name__} (name {c.name!r})" for c in classes)
    if name is None:
        if len(classes) > 1:
            raise kind.error(f"{path}: defines several {base} subclasses: {listing}; choose one by name")
        return _checked(classes[0], kind, path)
    chosen = [c for c in classes if name in (c.name, c.__name__)]
    if len(chosen) != 1:
        raise kind.error(f"{path}: no single {base} named {name!r}; the file defines: {listing}")
    return _checked(chosen[0], kind, path)


def _checked(cls: type, kind: PluginKind, path: str | Path) -> type:
    """``cls`` once ``plugins.validation`` finds nothing wrong with it (a misspelt hook, no hook at all)."""
    problems = check_class(cls, kind.base, where=str(path), noun=kind.noun)
    if problems:
        raise kind.error("; ".join(problems))
    return cls


def _field_types(cls: type) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(cls)
    except Exception:
        hints = {}
    return {f.name: hints.get(f.name, f.type) for f in dataclasses.fields(cls)}


def convert_value(value: Any, annotation: Any, *, where: str, error: type[MitigationError] = MitigationError) -> Any:
    """Convert ``value`` (text from the command line, or a Python value) to ``annotation``."""
    if isinstance(annotation, str):  # unresolved string annotation: use the plain builtin names
        annotation = {"int": int, "float": float, "bool": bool, "str": str}.get(annotation.strip(), annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            if len(options) < len(typing.get_args(annotation)):
                return None
        errors = []
        for option in options:
            try:
                return convert_value(value, option, where=where, error=error)
            except MitigationError as exc:
                errors.append(str(exc))
        raise error(errors[0] if errors else f"{where}: cannot convert {value!r}")
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        for option in allowed:
            if value == option or (isinstance(value, str) and value == str(option)):
                return option
        raise error(f"{where}: {value!r} is not one of {list(allowed)}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise error(f"{where}: expected a bool (true/false/1/0), got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise error(f"{where}: expected an int, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise error(f"{where}: expected a float, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise error(f"{where}: expected a str, got {value!r}")
    raise error(f"{where}: parameters of type {annotation!r} cannot be set from the command line")


def instantiate(cls: type, params: dict[str, Any] | None = None, *, source: str = "") -> Any:
    """``cls(**params)`` with names checked and values converted to the declared field types."""
    kind = kind_of(cls)
    types_ = _field_types(cls)
    where = source or cls.__name__
    unknown = sorted(set(params or {}) - set(types_))
    if unknown:
        known = ", ".join(f"{k}: {getattr(t, '__name__', t)}" for k, t in types_.items()) or "none"
        raise kind.error(f"{where}: {kind.noun} {cls.name!r} has no parameter {unknown[0]!r} (parameters: {known})")
    values = {
        k: convert_value(v, types_[k], where=f"{where}: parameter {k!r} of {kind.noun} {cls.name!r}", error=kind.error)
        for k, v in (params or {}).items()
    }
    try:
        obj = cls(**values)
    except MitigationError:
        raise
    except Exception as exc:
        raise kind.error(f"{where}: {kind.noun} {cls.name!r} rejected parameters {values}: {exc}") from exc
    problems = check_bounds(obj, where=where, noun=kind.noun)
    if problems:
        raise kind.error("; ".join(problems))
    return obj


def configs(cls: type, param_items: list[str] | None, *, source: str) -> list[Any]:
    """One configured ``cls`` per combination of ``param_items`` (CLI ``--param`` values).

    ``--param strongest`` uses the class's ``strongest`` setting and ``--param sweep`` its declared
    paper sweep (cartesian product of ``sweep``); other items override or extend them.
    """
    kind = kind_of(cls)
    items = list(param_items or [])
    special = [i for i in items if i.strip() in SPECIAL_PARAMS]
    rest = [i for i in items if i.strip() not in SPECIAL_PARAMS]
    if len(special) > 1:
        raise kind.error(f"--param: choose one of {SPECIAL_PARAMS}, not {special}")
    combos: list[dict[str, Any]] = parse_params(rest)
    if special:
        which = special[0].strip()
        declared = getattr(cls, which, None) or {}
        if not declared:
            raise kind.error(f"{source}: {kind.noun} {cls.name!r} declares no {which!r} setting")
        if which == "strongest":
            base_list = [dict(declared)]
        else:
            keys = list(declared)
            base_list = [dict(zip(keys, c)) for c in itertools.product(*(declared[k] for k in keys))]
        combos = [{**b, **c} for b in base_list for c in combos]
    return [instantiate(cls, c, source=source) for c in combos]


def load_configs(path: str | Path, kind: PluginKind, name: str | None = None,
                 param_items: list[str] | None = None) -> list[Any]:
    """Every configured instance of the ``kind`` class defined in ``path`` (see ``configs``)."""
    return configs(find_class(path, kind, name), param_items, source=str(path))
