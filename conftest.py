"""Repository-level pytest configuration: where the shared upstream data lives for tests.

The upstream MemBench/COCO/Webster files are never copied into this tree; tests read them from
``../shared/data`` (or ``$MEMBENCH_DATA_DIR``), the same layout the downloader produces.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Under pytest-xdist each worker gets one intra-op thread: two workers x two torch threads on a
# 2-core runner oversubscribe the CPU and run about 10x slower. Set before torch is imported.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parent
SHARED_DATA = Path(os.environ.get("MEMBENCH_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The upstream files (membench/, coco/, webster/, images/). CI always has them."""
    if not (SHARED_DATA / "membench" / "SD1_final.csv").exists():
        if os.environ.get("CI"):
            pytest.fail(f"shared upstream data not found at {SHARED_DATA}")
        pytest.skip(f"shared upstream data not found at {SHARED_DATA} (set MEMBENCH_DATA_DIR)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def memorized_pair(shared_data_dir: Path) -> tuple[Path, Path]:
    """A real Stable Diffusion copy pair: a memorized image and an SD regeneration of it."""
    images = shared_data_dir / "images"
    return images / "memorized_origin.png", images / "memorized_augmented.png"
