"""What goes into the wheel beyond ``membench_eval/``: the repository's top-level folders, mapped in.

Why a mapping and not a move: users and the project's design expect ``mitigations/``, ``detectors/``,
``extractions/`` and ``benchmark_data/`` at the top of the repository (a method is a file you open
next to its paper). The wheel carries them as ``membench_eval/_bundled/<folder>/``, inside the
package, so an installed copy reads them with ``importlib.resources`` (``membench_eval.paths``) and
nothing lands loose in site-packages. The package list is computed (``find_packages``), so a new
subpackage of ``membench_eval`` cannot be left out; the static metadata stays in pyproject.toml.

benchmark_data keeps only what a run reads: the models, suite files, prompt tables, reference and
gallery images, checksums and measured figures. The build scripts (``*.py``, ``experiments/``) are
left out: they rebuild the miniature benchmark from a source checkout, never from the wheel.
"""

from setuptools import find_packages, setup

BUNDLED = "membench_eval._bundled"
# One package per top-level folder; the plugin folders hold only modules, so the package's .py files
# are all there is to copy.
FOLDERS = {f"{BUNDLED}.{name}": name for name in ("benchmark_data", "mitigations", "detectors", "extractions")}
RUNTIME_DATA = [
    "manifest.json",
    "suites/*.toml",
    "mini/suite.toml", "mini/*.csv", "mini/*.txt", "mini/*.json", "mini/README.md",
    "mini/model/**/*.json", "mini/model/**/*.txt", "mini/model/**/*.safetensors",
    "mini/clip/*.json", "mini/clip/*.safetensors",
    "mini/mlm/*.json", "mini/mlm/*.safetensors",
    "mini/references/*.png", "mini/gallery/*.png", "mini/gallery/*.json",
    # The MMDiT twin (issue 36): its README now; its suite, model and measured figures once trained.
    "mini_sd3/README.md", "mini_sd3/suite.toml", "mini_sd3/*.json",
    "mini_sd3/model/**/*.json", "mini_sd3/model/**/*.txt", "mini_sd3/model/**/*.safetensors",
    "uncond/README.md", "uncond/*.json", "uncond/train/*.png",
    "uncond/model/**/*.json", "uncond/model/**/*.safetensors",
]

setup(
    packages=find_packages(include=["membench_eval", "membench_eval.*"]) + list(FOLDERS),
    package_dir=FOLDERS,
    package_data={f"{BUNDLED}.benchmark_data": RUNTIME_DATA},
    include_package_data=False,
)
