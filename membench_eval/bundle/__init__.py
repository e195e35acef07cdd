"""Where the bundled folders are: inside an installed wheel, or at the top of a source checkout.

The repository keeps ``benchmark_data/``, ``mitigations/``, ``detectors/`` and ``extractions/`` at its
top; the wheel carries them inside the package as ``membench_eval/_bundled/<folder>/`` (``setup.py``
maps them in). ``folder(name)`` asks ``importlib.resources`` for the installed copy first, so an
installed membench-eval never depends on the working directory, and falls back to the checkout.

Why ``paths`` is re-pointed rather than edited: ``membench_eval/paths.py`` is hashed into the store keys
of bundled methods that import it (nemo, wen_gated; ``plugins.source``), so its bytes stay as they are
and the package's ``__init__`` calls ``point_paths_here()`` once, before any other module reads them.
"""

from __future__ import annotations

import atexit
import contextlib
from importlib import resources
from pathlib import Path

from membench_eval import paths

INSTALLED = "_bundled"  # the wheel's folder inside the package
FOLDERS = ("benchmark_data", "mitigations", "detectors", "extractions")
_EXTRACTED = contextlib.ExitStack()  # a zipped install is extracted once, kept until exit
atexit.register(_EXTRACTED.close)


def folder(name: str) -> Path:
    """The bundled folder ``name`` as a real path (models are read by path: diffusers, open_clip)."""
    if name not in FOLDERS:
        raise ValueError(f"{name!r} is not a bundled folder ({', '.join(FOLDERS)})")
    inside = resources.files("membench_eval").joinpath(INSTALLED, name)
    if inside.is_dir():
        return inside if isinstance(inside, Path) else _EXTRACTED.enter_context(resources.as_file(inside))
    return paths.PACKAGE_ROOT.parent / name


def is_installed_copy() -> bool:
    """Whether the bundled files come from an installed wheel rather than a source checkout."""
    return resources.files("membench_eval").joinpath(INSTALLED).is_dir()


def point_paths_here() -> None:
    """Set ``paths.BENCHMARK_DATA`` / ``paths.MINI_DIR`` to the bundled benchmark data (a no-op in a checkout)."""
    paths.BENCHMARK_DATA = folder("benchmark_data")
    paths.MINI_DIR = paths.BENCHMARK_DATA / "mini"
    paths.MINI_SD3_DIR = paths.BENCHMARK_DATA / "mini_sd3"
