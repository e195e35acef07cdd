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


def load_mini_suite(root: Path = paths.MINI_DIR) -> Suite:
    """The ``mini`` suite from ``root`` (default: the bundled ``benchmark_data/mini``): the package's
    ``suite.toml`` read against ``root``, so a rebuilt copy of the folder is the same suite."""
    from membench_eval.suites.suite_file import load_suite_file

    root = Path(root)
    model = root / MODEL_DIR
    if not (model / "model_index.json").is_file():
        raise MissingWeightsError(f"{model}: mini model folder is missing; rebuild with "
                                  "`python benchmark_data/mini/build.py` (needs scikit-image)")
    return load_suite_file(paths.MINI_DIR / SUITE_FILE, builtin=True, base_dir=root)
