"""Load the bundled method files (mitigations/*.py) by path, as the harness does."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

MITIGATIONS_DIR = Path(__file__).resolve().parent.parent / "mitigations"


def load_module(name: str):
    """Import ``mitigations/<name>.py`` as a module (cached, so classes compare equal)."""
    key = f"_membench_test_mitigations_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, MITIGATIONS_DIR / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]
