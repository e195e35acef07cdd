"""The mini suite's CLIP backend: ``mini-clip``, a small open_clip model shipped with the mini.

Trained by ``benchmark_data/mini/build.py --stage clip`` (see ``benchmark_data/mini/clip_stage.py``
and the mini README for what it measures and how valid it is). It is an open_clip ``CLIP`` built
from the config ``benchmark_data/mini/clip/mini-clip.json`` and loaded by open_clip's ordinary
checkpoint code, so the CLIP score on mini goes through exactly the scorer ViT-g-14 uses. Its
scores are recorded under their own backend id (``mini-clip``) and never compared with ViT-g-14's.

Before loading, the weights file is checked against the sha256 in ``checksums.json`` beside it: a
missing or corrupted file is a one-line ``MissingWeightsError`` naming the file and the checksum.
"""

from __future__ import annotations

import json
from pathlib import Path

from membench_eval.errors import MissingWeightsError
from membench_eval.fetch.download import require_sha256
from membench_eval.paths import MINI_DIR

MINI_CLIP_MODEL = "mini-clip"
MINI_CLIP_DIR = MINI_DIR / "clip"
MINI_CLIP_WEIGHTS = MINI_CLIP_DIR / "open_clip_model.safetensors"
_REBUILD = "rebuild it with `python benchmark_data/mini/build.py --stage clip`"


def prepare_mini_clip(weights: str | Path = MINI_CLIP_WEIGHTS) -> Path:
    """Register the ``mini-clip`` config with open_clip and check ``weights`` against its checksum."""
    import open_clip

    path = Path(weights).expanduser()
    config = path.parent / f"{MINI_CLIP_MODEL}.json"
    sums = path.parent / "checksums.json"
    for needed in (config, sums):
        if not needed.is_file():
            raise MissingWeightsError(f"{needed}: mini CLIP file missing; {_REBUILD}")
    require_sha256(path, json.loads(sums.read_text()).get(path.name), missing="mini CLIP weights missing",
                   corrupted="mini CLIP weights are corrupted", rebuild=_REBUILD)
    open_clip.add_model_config(config)
    return path
