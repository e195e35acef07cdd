"""The mini suite's proposal masked LM, spec ``mini-mlm``: a small trained word-level BERT shipped
in ``benchmark_data/mini/mlm/``.

Why: the search's candidates are a masked LM's top-k words (k = 200). ``bert-base-uncased`` is not
available offline and the random ``tiny:mini`` model has fewer words than k, so on the mini suite
the search needs its own trained proposal model (``benchmark_data/mini/mlm_stage.py``: COCO
captions + the mini's texts, a few thousand words; figures in ``mlm/metrics.json``).

Before loading, every file named in ``mlm/checksums.json`` is checked against its sha256: a
missing or corrupted file is a one-line ``MissingWeightsError`` naming the file. Loading is
``from_pretrained(..., local_files_only=True)``: never the network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from membench_eval.errors import MissingWeightsError
from membench_eval.fetch.download import require_sha256
from membench_eval.paths import MINI_DIR

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

MINI_MLM_SPEC = "mini-mlm"
MINI_MLM_DIR = MINI_DIR / "mlm"
CHECKSUMS_FILE = "checksums.json"
_REBUILD = "rebuild it with `python benchmark_data/mini/mlm_stage.py`"


def verify_mini_mlm(folder: str | Path = MINI_MLM_DIR) -> Path:
    """Check every file listed in ``folder/checksums.json`` against its sha256; return ``folder``."""
    folder = Path(folder).expanduser()
    sums_file = folder / CHECKSUMS_FILE
    if not sums_file.is_file():
        raise MissingWeightsError(f"{sums_file}: mini MLM file missing; {_REBUILD}")
    try:
        sums = json.loads(sums_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MissingWeightsError(f"{sums_file}: unreadable ({exc.__class__.__name__}); {_REBUILD}") from None
    if not isinstance(sums, dict) or not sums:
        raise MissingWeightsError(f"{sums_file}: lists no files; {_REBUILD}")
    for name, expected in sums.items():
        require_sha256(folder / name, expected, missing="mini MLM file missing", corrupted="mini MLM file is corrupted",
                       rebuild=_REBUILD)
    return folder


def load_mini_mlm(folder: str | Path = MINI_MLM_DIR) -> tuple["PreTrainedTokenizerBase", "PreTrainedModel"]:
    """The verified shipped tokenizer and ``BertForMaskedLM`` (fp16 on disk, fp32 in memory)."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    folder = verify_mini_mlm(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForMaskedLM.from_pretrained(folder, local_files_only=True)
    return tokenizer, model
