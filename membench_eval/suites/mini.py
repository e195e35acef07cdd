"""The ``mini`` suite: the bundled miniature benchmark (a tiny SD model that really memorizes).

Why: no CI runner has SD 1.4 weights, yet the whole path (generate, score, mitigate, report) must
run for real. ``benchmark_data/mini/`` ships a tiny trained pipeline, MemBench-format trigger
prompts whose ``urls`` are ``mini://<file>`` references (resolved to ``references/<file>`` by ``suite.toml``'s ``reference_scheme``), and
general prompts in COCO's role. Built by ``benchmark_data/mini/build.py``; see its README.
No heavy imports here: loading the suite only reads small text files.
"""

from __future__ import annotations

from pathlib import Path

from membench_eval import paths
from membench_eval.errors import MissingWeightsError
from membench_eval.suites.types import Suite

SUITE_FILE = "suite.toml"
MODEL_DIR = "model"
# The miniature suites: the mini and its twin on SD3's architecture (``mini-sd3``), trained on the
# same photos and captions (``benchmark_data/mini/training_captions.json``), so what reads those
# captions (attribution, the search's vocabulary and proposal model) treats both alike.
MINI_SUITES = ("mini", "mini-sd3")


def mini_folder(name: str = "mini") -> Path:
    """The bundled folder of the miniature suite ``name``."""
    return paths.MINI_SD3_DIR if name == "mini-sd3" else paths.MINI_DIR


def load_mini_suite(root: Path | None = None, name: str = "mini") -> Suite:
    """The miniature suite ``name`` from ``root`` (default: its bundled folder,
    ``benchmark_data/mini`` or ``benchmark_data/mini_sd3``): the package's ``suite.toml`` read
    against ``root``, so a rebuilt copy of the folder is the same suite."""
    from membench_eval.suites.suite_file import load_suite_file

    root = Path(root) if root is not None else mini_folder(name)
    model = root / MODEL_DIR
    if not (model / "model_index.json").is_file():
        raise MissingWeightsError(f"{model}: {name} model folder is missing; rebuild with "
                                  f"`python benchmark_data/{mini_folder(name).name}/build.py` (needs scikit-image: "
                                  "both builds draw the mini's dataset)")
    return load_suite_file(mini_folder(name) / SUITE_FILE, builtin=True, base_dir=root)
