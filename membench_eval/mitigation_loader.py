"""Loading a mitigation method from a Python file, with typed, validated, sweepable parameters.

``load_mitigation("mitigations/rna.py", params={"n": "6"})`` imports the file as its own module
(never through ``sys.path``), finds the ``Mitigation`` subclass DEFINED in it (classes merely
imported into it do not count), converts each parameter from text using the dataclass field's
type, and returns the configured instance. ``parse_params(["n=1,2,3", "c=1.3"])`` expands a
command-line sweep into one parameter dict per combination.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import itertools
import sys
import types
import typing
from pathlib import Path
from typing import Any

from membench_eval.errors import MitigationError
from membench_eval.mitigation import Mitigation

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
# ``--param strongest`` / ``--param sweep``: the paper's settings declared on the class.
SPECIAL_PARAMS = ("strongest", "sweep")


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


def _module_name(path: Path) -> str:
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    return f"membench_user_mitigation_{path.stem}_{digest}"


def import_file(path: str | Path) -> types.ModuleType:
    """Import ``path`` as a fresh module with a unique name (re-imported on every call)."""
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise MitigationError(f"{path}: mitigation file not found")
    if file.suffix != ".py":
        raise MitigationError(f"{path}: a mitigation is a Python file ending in .py")
    name = _module_name(file)
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise MitigationError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    # Registered before executing: dataclasses resolve string annotations through sys.modules.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise MitigationError(f"{path}: importing the file failed: {type(exc).__name__}: {exc}") from exc
    return module


def mitigation_classes(module: types.ModuleType) -> list[type[Mitigation]]:
    """Mitigation subclasses defined in ``module`` itself, in definition order."""
    return [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, Mitigation) and obj is not Mitigation and obj.__module__ == module.__name__
    ]


def find_class(path: str | Path, name: str | None = None) -> type[Mitigation]:
    """The one Mitigation class of ``path`` (or the one whose ``name`` or class name is ``name``)."""
    classes = mitigation_classes(import_file(path))
    if not classes:
        raise MitigationError(f"{path}: defines no Mitigation subclass (write `class MyMethod(Mitigation): ...`)")
    listing = ", ".join(f"{c.__name__} (name {c.name!r})" for c in classes)
    if name is None:
        if len(classes) > 1:
            raise MitigationError(f"{path}: defines several Mitigation subclasses: {listing}; choose one by name")
        return classes[0]
    chosen = [c for c in classes if name in (c.name, c.__name__)]
    if len(chosen) != 1:
        raise MitigationError(f"{path}: no single Mitigation named {name!r}; the file defines: {listing}")
    return chosen[0]


def _field_types(cls: type) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(cls)
    except Exception:
        hints = {}
    return {f.name: hints.get(f.name, f.type) for f in dataclasses.fields(cls)}


def convert_value(value: Any, annotation: Any, *, where: str) -> Any:
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
                return convert_value(value, option, where=where)
            except MitigationError as exc:
                errors.append(str(exc))
        raise MitigationError(errors[0] if errors else f"{where}: cannot convert {value!r}")
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        for option in allowed:
            if value == option or (isinstance(value, str) and value == str(option)):
                return option
        raise MitigationError(f"{where}: {value!r} is not one of {list(allowed)}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise MitigationError(f"{where}: expected a bool (true/false/1/0), got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise MitigationError(f"{where}: expected an int, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise MitigationError(f"{where}: expected a float, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise MitigationError(f"{where}: expected a str, got {value!r}")
    raise MitigationError(f"{where}: parameters of type {annotation!r} cannot be set from the command line")


def instantiate(cls: type[Mitigation], params: dict[str, Any] | None = None, *, source: str = "") -> Mitigation:
    """``cls(**params)`` with names checked and values converted to the declared field types."""
    types_ = _field_types(cls)
    where = source or cls.__name__
    unknown = sorted(set(params or {}) - set(types_))
    if unknown:
        known = ", ".join(f"{k}: {getattr(t, '__name__', t)}" for k, t in types_.items()) or "none"
        raise MitigationError(f"{where}: method {cls.name!r} has no parameter {unknown[0]!r} (parameters: {known})")
    values = {k: convert_value(v, types_[k], where=f"{where}: parameter {k!r} of method {cls.name!r}") for k, v in (params or {}).items()}
    try:
        return cls(**values)
    except MitigationError:
        raise
    except Exception as exc:
        raise MitigationError(f"{where}: method {cls.name!r} rejected parameters {values}: {exc}") from exc


def load_mitigation(path: str | Path, name: str | None = None, params: dict[str, Any] | None = None) -> Mitigation:
    """The configured method defined in ``path`` (see module docstring)."""
    cls = find_class(path, name)
    return instantiate(cls, params, source=str(path))


def load_mitigations(path: str | Path | None, name: str | None = None, param_items: list[str] | None = None) -> list[Mitigation]:
    """One configured method per combination of ``param_items`` (CLI ``--param`` values).

    ``path`` None is the no-op base method. ``--param strongest`` uses the class's ``strongest``
    setting and ``--param sweep`` its declared paper sweep (cartesian product of ``sweep``).
    """
    cls: type[Mitigation] = Mitigation if path is None else find_class(path, name)
    source = str(path) if path is not None else "base"
    items = list(param_items or [])
    special = [i for i in items if i.strip() in SPECIAL_PARAMS]
    rest = [i for i in items if i.strip() not in SPECIAL_PARAMS]
    if len(special) > 1:
        raise MitigationError(f"--param: choose one of {SPECIAL_PARAMS}, not {special}")
    combos: list[dict[str, Any]] = parse_params(rest)
    if special:
        declared = cls.strongest if special[0].strip() == "strongest" else cls.sweep
        if not declared:
            raise MitigationError(f"{source}: method {cls.name!r} declares no {special[0].strip()!r} setting")
        if special[0].strip() == "strongest":
            base_list = [dict(cls.strongest)]
        else:
            keys = list(cls.sweep)
            base_list = [dict(zip(keys, c)) for c in itertools.product(*(cls.sweep[k] for k in keys))]
        combos = [{**b, **c} for b in base_list for c in combos]
    return [instantiate(cls, c, source=source) for c in combos]
