"""The suite file being read: where its relative paths point, typed lookups, and the files it read.

Shared by ``suite_file`` (the TOML's tables) and ``suite_prompts`` (the prompt tables), so every
error names the suite file, the key and the value the same way, and every file a suite reads
enters its content hash in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from membench_eval.errors import DataError


def type_names(types: type | tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))


class SuiteFileContext:
    """``path``: the suite file; ``base``: the folder its relative paths resolve against (the
    file's own folder, or a copy's root for a built-in suite read for another folder);
    ``builtin``: one of the package's own files, whose upstream-data errors pass through unwrapped
    (the user never wrote the file; the download's own message says what to fetch)."""

    def __init__(self, path: Path, data_dir: Any, *, base: Path | None = None, builtin: bool = False) -> None:
        self.path, self.data_dir, self.builtin = path, data_dir, builtin
        self.base = base if base is not None else path.parent
        self.read: dict[str, str] = {}  # file -> sha256 (the files in the suite's content hash)
        self.hashing = True  # False for a suite without a content hash: read files, hash none

    def error(self, key: str, message: str) -> DataError:
        return DataError(self.path, message, field=key)

    def get(self, table: dict[str, Any], key: str, types: type | tuple[type, ...], prefix: str,
            default: Any = None, required: bool = False) -> Any:
        full = f"{prefix}.{key}" if prefix else key
        if key not in table:
            if required:
                raise self.error(full, "missing required key")
            return default
        value = table[key]
        allowed = types if isinstance(types, tuple) else (types,)
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, types):
            raise self.error(full, f"expected {type_names(types)}, got {value!r}")
        return value

    def check_keys(self, table: dict[str, Any], allowed: set[str], prefix: str) -> None:
        for key in table:
            if key not in allowed:
                where = f"{prefix}.{key}" if prefix else key
                raise self.error(where, f"unknown key (value {table[key]!r}); known keys: {', '.join(sorted(allowed))}")

    def hash_file(self, path: Path) -> str:
        from membench_eval.fetch.download import file_sha256

        return self.read.setdefault(str(path), file_sha256(path))

    def file(self, value: str, key: str, *, folder: bool = False, hashed: bool = True, must_exist: bool = True) -> Path:
        """``value`` as a path (relative to ``base``, or ``manifest:<key>``) that must exist (unless
        not ``must_exist``); a ``hashed`` file is part of the suite's content hash."""
        if value.startswith("manifest:"):
            from membench_eval.fetch.download import resolve_file

            try:
                found = Path(resolve_file(value[len("manifest:"):], self.data_dir))
            except DataError as exc:
                if self.builtin:
                    raise
                raise self.error(key, f"{value!r}: {exc}") from None
        else:
            found = Path(value).expanduser()
            found = (found if found.is_absolute() else self.base / found).resolve()
        if not must_exist:
            return found
        if folder:
            if not found.is_dir():
                raise self.error(key, f"{value!r}: folder {found} does not exist")
        elif not found.is_file():
            raise self.error(key, f"{value!r}: file {found} does not exist")
        elif hashed and self.hashing:
            self.hash_file(found)
        return found
