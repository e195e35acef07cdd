"""Which words of a prompt carry the copy: per-word and per-token trigger attribution.

The question of the word-level duplication paper ("Memory Triggers: Unveiling Memorization in
Text-To-Image Generative Models through Word-Level Duplication", arXiv 2312.03692): specific words,
not whole captions, trigger memorized content. For each word of a prompt, and each BPE token of a
word split into several, three effects over K seeded images (``effects.py``):

* removal and replacement (by a neutral word, default ``thing``): the DROP in (a) Wen et al.'s
  single-step detection signal and (b) the image's Top-1 SSCD to the prompt's memorized image(s),
  ``base - variant`` per image (the same K latents for every variant: a paired difference), so a
  positive drop means the word carries the copy;
* Wen et al.'s gradient attribution: the norm of the signal's gradient at the word's token
  positions of the conditioning (for a word of several tokens, the norm over all of them).

Each effect is the mean over the K images with a 95% percentile bootstrap interval over images
(``stats.ClusterBootstrap`` with one image per cluster: 2000 resamples from a fixed seed, shared
by every row, so two rows' intervals come from the same resamples). Token rows of a one-token
word are its word row; the others are measured by removing the token (``words.without_token``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from membench_eval.analysis.words import replaced_word, split_prompt, without_token, without_words

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline

    from membench_eval.analysis.effects import ImageScorer

ATTRIBUTION_CODE_VERSION = "membench-attribution/v1"
INTERVAL = "95% percentile bootstrap over the K images (2000 resamples, fixed seed)"


@dataclass(frozen=True)
class AttributionConfig:
    """What an attribution measures; every field enters the stored result's key."""

    images: int = 4  # K seeded images per prompt variant
    neutral: str = "thing"  # the replacement word
    tokens: bool = True  # also the BPE tokens of words split into several
    timestep: int | None = None  # of the signal and the gradient; None = T-1 (999 for SD)
    minimal_threshold: float = 0.5  # Top-1 SSCD the minimal trigger must keep (None: no search)
    minimal: bool = True

    def __post_init__(self) -> None:
        if int(self.images) < 1:
            raise ValueError(f"images must be >= 1, got {self.images}")
        if not self.neutral.strip() or len(self.neutral.split()) != 1:
            raise ValueError(f"the neutral word must be one word, got {self.neutral!r}")


def _estimates(values: np.ndarray) -> list[dict[str, float]]:
    """Mean and interval of each row of ``values`` (rows: effects, columns: images)."""
    from membench_eval.stats import ClusterBootstrap

    boot = ClusterBootstrap(np.arange(values.shape[1]))
    return [boot.estimate(row).to_dict() for row in values]


def _trim(est: dict[str, float]) -> dict[str, float]:
    return {k: float(est[k]) for k in ("mean", "low", "high")}


def attribute(pipe: "StableDiffusionPipeline", scorer: "ImageScorer", text: str, prompt_id: str,
              references: Sequence[str], config: AttributionConfig = AttributionConfig()) -> dict[str, Any]:
    """The attribution of ``text`` (a JSON-able dict: see ``render.py`` for how it reads).

    ``references``: the memorized image ids the Top-1 SSCD is taken against (the prompt's own;
    for a free prompt, every memorized image of the suite)."""
    from membench_eval.analysis.effects import signal_per_image, token_gradients
    from membench_eval.models.family import family_for

    tokenizer = family_for(pipe).tokenizer
    words, tokens = split_prompt(text, tokenizer)
    k = int(config.images)
    seeds = scorer.seeds(prompt_id, k)
    removed = [without_words(text, words, {w.index}) for w in words]
    replaced = [replaced_word(text, w, config.neutral) for w in words]
    split_tokens = [t for t in tokens if t.word is not None and len(words[t.word].tokens) > 1] if config.tokens else []
    token_texts = [without_token(tokenizer, tokens, t.index) for t in split_tokens]
    texts = [text, *removed, *replaced, *token_texts]

    signal = signal_per_image(pipe, texts, seeds, scorer.settings, timestep=config.timestep)
    sscd = scorer.own_top1(texts, prompt_id, k, references)
    grads = token_gradients(pipe, text, seeds, scorer.settings, len(tokens), timestep=config.timestep)
    n_seen = grads.shape[1]  # tokens past the 77-token context are not seen by the encoder

    sig_drop = _estimates(signal[0] - signal[1:])
    sscd_drop = _estimates(sscd[0] - sscd[1:])
    word_grad = np.stack([np.sqrt((grads[:, [j for j in w.tokens if j < n_seen]] ** 2).sum(axis=1)) for w in words])
    word_grad_est = _estimates(word_grad)
    tok_grad_est = _estimates(grads.T) if n_seen else []
    n = len(words)
    rows = []
    for w in words:
        i = w.index
        rows.append({
            "index": i, "word": w.text, "tokens": list(w.tokens),
            "removed": {"text": removed[i], "signal": _trim(sig_drop[i]), "sscd": _trim(sscd_drop[i])},
            "replaced": {"text": replaced[i], "signal": _trim(sig_drop[n + i]), "sscd": _trim(sscd_drop[n + i])},
            "grad": _trim(word_grad_est[i]),
        })
    token_rows = []
    offset = {t.index: 2 * n + j for j, t in enumerate(split_tokens)}
    for t in tokens:
        if t.index >= n_seen:
            break
        row: dict[str, Any] = {"index": t.index, "token": t.text, "word": t.word, "grad": _trim(tok_grad_est[t.index])}
        if t.index in offset:
            j = offset[t.index]
            row["removed"] = {"text": texts[j + 1], "signal": _trim(sig_drop[j]), "sscd": _trim(sscd_drop[j])}
        elif t.word is not None:
            row["removed"] = rows[t.word]["removed"]
        token_rows.append(row)
    return {
        "prompt": text, "prompt_id": prompt_id, "references": list(references), "config": asdict(config),
        "interval": INTERVAL, "seeds": seeds,
        "base": {"signal": signal[0].tolist(), "sscd": sscd[0].tolist(), "top1": float(sscd[0].max())},
        "words": rows, "tokens": token_rows,
    }


def result_fields(pipe: "StableDiffusionPipeline", scorer: "ImageScorer", text: str, prompt_id: str,
                  references: Sequence[str], config: AttributionConfig) -> dict[str, Any]:
    """Everything an attribution result depends on: its key in the store's results area."""
    from membench_eval.generation.engine import GENERATION_CODE_VERSION
    from membench_eval.models.family import family_for

    family = family_for(pipe)
    s = scorer.settings
    return {
        "scheme": ATTRIBUTION_CODE_VERSION, "engine": GENERATION_CODE_VERSION, "model": family.identity(),
        "scheduler": family.scheduler_identity(), "sscd": scorer.ctx.sscd.fingerprint, "prompt": text,
        "prompt_id": prompt_id, "references": sorted(references), "config": asdict(config),
        "settings": {"steps": s.num_inference_steps, "guidance": s.guidance_scale, "height": s.height,
                     "width": s.width, "seed": s.seed, "batch_size": s.batch_size},
        "dtype": str(family.dtype), "device": family.device.type,
    }


def run_attribution(pipe: "StableDiffusionPipeline", scorer: "ImageScorer", text: str, prompt_id: str,
                    references: Sequence[str], config: AttributionConfig = AttributionConfig(),
                    ) -> tuple[dict[str, Any], bool]:
    """``attribute`` plus the minimal-trigger search, stored in the run store's results area;
    returns (result, whether it was reused from the store)."""
    from membench_eval.store.results import ResultStore

    results = ResultStore(scorer.ctx.store.root, "attribution")
    fields = result_fields(pipe, scorer, text, prompt_id, references, config)
    stored = results.get(fields)
    if stored is not None:
        return stored, True
    result = attribute(pipe, scorer, text, prompt_id, references, config)
    if config.minimal:
        from membench_eval.analysis.minimal import minimal_trigger

        result["minimal"] = minimal_trigger(scorer, result, threshold=config.minimal_threshold)
    results.put(fields, result)
    return result, False
