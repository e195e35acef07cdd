"""Where membench-eval reads upstream data and keeps its cache (one place, overridable)."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "MEMBENCH_DATA_DIR"
CACHE_DIR_ENV = "MEMBENCH_CACHE_DIR"

PACKAGE_ROOT = Path(__file__).resolve().parent
# benchmark_data/ lives beside the package in a source checkout.
BENCHMARK_DATA = PACKAGE_ROOT.parent / "benchmark_data"
MINI_DIR = BENCHMARK_DATA / "mini"
# The mini's training captions: attribution's and the MLM search's vocabulary (mitigations/wen_gated.py
# spells the path itself: editing a bundled method's file changes its store keys).
MINI_CAPTIONS = MINI_DIR / "training_captions.json"
MINI_SD3_DIR = BENCHMARK_DATA / "mini_sd3"  # mini-sd3: the mini on SD3's architecture


def cache_dir() -> Path:
    """User cache (downloads, reference images, embeddings). ``$MEMBENCH_CACHE_DIR`` overrides."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "membench-eval"


def local_data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """A local copy of the upstream files (``--data-dir`` or ``$MEMBENCH_DATA_DIR``), if any."""
    value = explicit if explicit is not None else os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else None
