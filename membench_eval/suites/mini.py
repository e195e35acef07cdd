"""The ``mini`` suite: the bundled miniature benchmark (a tiny SD model that really memorizes).

Why: no CI runner has SD 1.4 weights, yet the whole path (generate, score, mitigate, report) must
run for real. ``benchmark_data/mini/`` ships a tiny trained pipeline, MemBench-format trigger
prompts whose ``urls`` are ``mini://<file>`` references (resolved to ``references/<file>``), and
general prompts in COCO's role. Built by ``benchmark_data/mini/build.py``; see its README.
No heavy imports here: loading the suite only reads small text files.
"""

from __future__ import annotations

import csv
from pathlib import Path

from membench_eval import paths
from membench_eval.errors import DataError, MissingWeightsError
from membench_eval.suites.types import MemorizedImage, Prompt, PromptSet, ReferenceTargets, Suite, memorized_image_id

MINI_URL_SCHEME = "mini://"
TRIGGER_FILE = "trigger_prompts.csv"
GENERAL_FILE = "general_prompts.txt"
REFERENCE_DIR = "references"
MODEL_DIR = "model"

# Scenario the mini suite is defined with (the model is trained at 64x64).
MINI_GENERATION_DEFAULTS: dict[str, object] = {
    "height": 64,
    "width": 64,
    "num_inference_steps": 20,
    "guidance_scale": 7.5,
}
MINI_TRIGGER_IMAGES = 10
MINI_GENERAL_IMAGES = 1


def resolve_mini_url(url: str, root: Path) -> Path:
    """``mini://astronaut.png`` -> ``<root>/references/astronaut.png`` (no path escapes)."""
    if not url.startswith(MINI_URL_SCHEME):
        raise ValueError(f"not a {MINI_URL_SCHEME} reference: {url!r}")
    name = url[len(MINI_URL_SCHEME):]
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"bad {MINI_URL_SCHEME} reference: {url!r}")
    return root / REFERENCE_DIR / name


def _read_triggers(path: Path, root: Path) -> tuple[list[Prompt], dict[str, MemorizedImage]]:
    if not path.exists():
        raise DataError(path, "mini trigger prompt file is missing (rebuild with benchmark_data/mini/build.py)")
    prompts: list[Prompt] = []
    memorized: dict[str, MemorizedImage] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"prompt", "urls"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(path, f"missing column(s) {sorted(missing)}", row=1)
        for row_no, row in enumerate(reader, start=2):
            text = (row.get("prompt") or "").strip()
            if not text:
                raise DataError(path, "empty prompt", row=row_no, field="prompt")
            ids = []
            for url in (u.strip() for u in (row.get("urls") or "").split(",")):
                if not url:
                    continue
                try:
                    ref = resolve_mini_url(url, root)
                except ValueError as e:
                    raise DataError(path, str(e), row=row_no, field="urls") from None
                if not ref.is_file():
                    raise DataError(path, f"reference image {ref} does not exist", row=row_no, field="urls")
                image_id = memorized_image_id(url)
                memorized.setdefault(image_id, MemorizedImage(image_id, str(ref)))
                ids.append(image_id)
            if not ids:
                raise DataError(path, "no reference image", row=row_no, field="urls")
            prompts.append(Prompt(prompt_id=f"mini-t{len(prompts):03d}", text=text, memorized_ids=tuple(ids)))
    if not prompts:
        raise DataError(path, "no trigger prompts")
    return prompts, memorized


def _read_general(path: Path) -> list[Prompt]:
    if not path.exists():
        raise DataError(path, "mini general prompt file is missing (rebuild with benchmark_data/mini/build.py)")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    prompts = [Prompt(prompt_id=f"mini-g{i:03d}", text=t) for i, t in enumerate(t for t in lines if t)]
    if not prompts:
        raise DataError(path, "no general prompts")
    return prompts


def load_mini_suite(root: Path = paths.MINI_DIR) -> Suite:
    """The ``mini`` suite from ``root`` (default: the bundled ``benchmark_data/mini``)."""
    root = Path(root)
    model = root / MODEL_DIR
    if not (model / "model_index.json").is_file():
        raise MissingWeightsError(f"{model}: mini model folder is missing; rebuild with "
                                  "`python benchmark_data/mini/build.py` (needs scikit-image)")
    trigger_file, general_file = root / TRIGGER_FILE, root / GENERAL_FILE
    triggers, memorized = _read_triggers(trigger_file, root)
    general = _read_general(general_file)
    return Suite(
        name="mini",
        model=str(model),
        trigger=PromptSet("trigger", tuple(triggers), MINI_TRIGGER_IMAGES, str(trigger_file)),
        general=PromptSet("general", tuple(general), MINI_GENERAL_IMAGES, str(general_file)),
        memorized=memorized,
        # No reference row is declared: mini has no published baseline to compare against.
        targets=ReferenceTargets(),
        reference_dir=root / REFERENCE_DIR,
        generation_defaults=dict(MINI_GENERATION_DEFAULTS),
        sscd_backend="disc_mixup_onnx",
        # The mini's own CLIP (benchmark_data/mini/clip/): prompt fidelity measured on mini too.
        clip_backend=("mini-clip", str(root / "clip" / "open_clip_model.safetensors")),
        # Non-memorized images for the local image-search reference row (build.py --stage gallery).
        reference_gallery=root / "gallery",
    )
