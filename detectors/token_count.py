"""A text-only baseline: the prompt's CLIP token count, or its near-duplicate rate among captions.

No paper: a floor for the model-based detectors (it loads no pipeline; ``needs_model = False``).
Memorized prompts are often long, specific captions (titles, product names), so length alone may
separate a prompt set better than chance; a detector that does not beat this baseline on a suite
has not shown it reads the model. With a captions file it becomes the duplication baseline:
memorization follows duplication in the training captions (Carlini et al. 2023, Somepalli et al.
2023; Webster 2023), so a prompt that many captions nearly repeat is a candidate.

Score, per prompt p:

* without ``captions`` (default): the number of CLIP BPE tokens of p as Stable Diffusion sees it
  (the real SD 1.x tokenizer, ``membench_eval.models.tokenizer``; truncated to 77 with BOS and
  EOS, which are not counted: 0..75);
* with ``captions`` (a ``.txt`` file, one caption per line, or a ``.json`` file of strings nested in
  lists/objects): the fraction of captions whose word set has Jaccard similarity >= ``jaccard``
  (0.8) with p's, words = lower-case runs of letters and digits. 1/len(captions) for a prompt that
  is one caption and resembles no other.

Higher = more memorized under both readings. Cost: 0 UNet rows (the text is tokenized on the CPU);
the captions file is read once (``setup``, keyed on the path). Per-prompt independence: trivially.

Measured on the miniature model (16 trigger vs 30 general prompts, per-prompt seeds from run seed
0, 20 DDIM steps, g 7.5, 64x64; ``tests/test_detectors.py``): ROC AUC 0.197 without captions:
inverted, the mini's trigger prompts are shorter than its general prompts.

No reference code; nothing to differ from. The store key holds the captions path, not its
content. Records per prompt: ``tokens`` (the token count, in both modes).

Families (``needs``: nothing): text only (SD 1.x's CLIP tokenizer): every family.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from membench_eval.detector import DetectionContext, Detector
from membench_eval.errors import DetectorError

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def load_captions(path: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise DetectorError(f"token_count: captions file {path!r} does not exist")
    text = p.read_text(encoding="utf-8")
    if p.suffix == ".json":
        try:
            out = _strings(json.loads(text))
        except ValueError as exc:
            raise DetectorError(f"token_count: captions file {path!r} is not valid JSON: {exc}") from None
    else:
        out = [line.strip() for line in text.splitlines() if line.strip()]
    if not out:
        raise DetectorError(f"token_count: captions file {path!r} holds no captions")
    return out


class TokenCount(Detector):
    """CLIP token count of the prompt; with ``captions``, its near-duplicate rate among them."""

    name = "token_count"
    paper = "text-only baseline (no paper)"
    needs_model = False
    setup_params = ("captions",)

    captions: str = ""
    jaccard: float = 0.8

    def __post_init__(self) -> None:
        if not 0.0 < self.jaccard <= 1.0:
            raise DetectorError(f"token_count: jaccard must be in (0, 1], got {self.jaccard}")

    def setup(self, pipe: "StableDiffusionPipeline | None") -> Any:
        from membench_eval.models.tokenizer import build_clip_tokenizer

        sets = [words(c) for c in load_captions(self.captions)] if self.captions else None
        return {"tokenizer": build_clip_tokenizer(), "captions": sets}

    def score(self, pipe: "StableDiffusionPipeline | None", ctx: DetectionContext) -> list[float]:
        state = ctx.state if ctx.state is not None else self.setup(pipe)
        tok = state["tokenizer"]
        counts = [len(tok(p, truncation=True, max_length=tok.model_max_length).input_ids) - 2 for p in ctx.prompts]
        for rec, c in zip(ctx.records, counts):
            rec["tokens"] = c
        sets = state["captions"]
        if sets is None:
            return [float(c) for c in counts]
        out = []
        for p in ctx.prompts:
            w = words(p)
            near = sum(1 for c in sets if (w or c) and len(w & c) / len(w | c) >= self.jaccard)
            out.append(near / len(sets))
        return out
