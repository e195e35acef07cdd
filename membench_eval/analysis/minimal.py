"""The minimal trigger: the fewest words that still reproduce the copy, and words shared by the
prompts of one memorized image.

Greedy removal (in the spirit of the word-level duplication paper's trigger analysis, arXiv
2312.03692): words are tried in order of increasing measured importance (the SSCD drop when the
word is removed, from the attribution; ties broken by the signal drop), and a word is dropped for
good when the prompt without it still reaches Top-1 SSCD >= ``threshold`` over the same K seeded
images (MemBench's Top-1: the best image's best similarity to the prompt's memorized images).
Each candidate costs K images, generated a pipeline call's worth of candidates at a time rather
than one prompt per call: on CPU a batch of 4 images costs 0.50 s an image, a batch of 20 0.29 s
(mini, measured on the shared 2-core machine). Greedy is not exhaustive: a shorter trigger may exist; the search reports
what it tried.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from membench_eval.analysis.words import split_prompt, without_words, words_of

if TYPE_CHECKING:
    from membench_eval.analysis.effects import ImageScorer
    from membench_eval.suites.types import Suite


def removal_order(result: dict[str, Any]) -> list[int]:
    """Word indices, least important first (smallest SSCD drop, then smallest signal drop)."""
    rows = result["words"]
    return sorted(range(len(rows)), key=lambda i: (rows[i]["removed"]["sscd"]["mean"],
                                                  rows[i]["removed"]["signal"]["mean"], i))


def minimal_trigger(scorer: "ImageScorer", result: dict[str, Any], *, threshold: float = 0.5) -> dict[str, Any]:
    """Greedy shortest trigger of an attribution ``result``; a JSON-able dict with the trigger,
    its Top-1 SSCD, whether the full prompt reached the threshold at all, and every step tried."""
    text, pid, refs = result["prompt"], result["prompt_id"], result["references"]
    k = int(result["config"]["images"])
    words, _ = split_prompt(text)
    base_top1 = float(result["base"]["top1"])
    out: dict[str, Any] = {"threshold": threshold, "base_top1": base_top1, "steps": []}
    if base_top1 < threshold:
        out.update(trigger=text, top1=base_top1, n_words=len(words), reached=False)
        return out
    dropped: set[int] = set()
    top1 = base_top1
    remaining = list(removal_order(result))
    # Candidates per round: as many as fill one pipeline call (the engine pads every call to the
    # batch size, so fewer would pay for padding and more would pay for steps past a failure).
    chunk = max(1, scorer.settings.batch_size // k)
    while remaining:
        # One round = the sequential greedy's next steps, batched: the cumulative removals of the
        # next ``chunk`` words in order; every step up to the first failure is accepted, the failing
        # word is kept, and the next round goes on after it (the same trigger as one at a time).
        cands, sets = [], []
        for j in range(1, min(chunk, len(remaining)) + 1):
            drop = dropped | set(remaining[:j])
            if len(drop) >= len(words):
                break
            sets.append(drop)
            cands.append(without_words(text, words, drop))
        if not cands:
            break
        values = scorer.own_top1(cands, pid, k, refs).max(axis=1)
        failed = next((j for j, v in enumerate(values) if v < threshold), None)
        accepted = len(cands) if failed is None else failed
        for j in range(accepted + (failed is not None)):
            out["steps"].append({"word": words[remaining[j]].text, "text": cands[j], "top1": float(values[j]),
                                 "dropped": j < accepted})
        if accepted:
            dropped, top1 = sets[accepted - 1], float(values[accepted - 1])
        remaining = remaining[accepted + (failed is not None):]
    trigger = without_words(text, words, dropped)
    out.update(trigger=trigger, top1=top1, n_words=len(words) - len(dropped), reached=True)
    return out


def common_words(suite: "Suite", image_ids: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Per memorized image: the words common to every trigger prompt of the suite that points at
    it (MemBench's prompts share memorized images: 1 to 16 URLs per prompt), and how many there are."""
    prompts = suite.trigger.prompts if suite.trigger is not None else ()
    out: dict[str, dict[str, Any]] = {}
    for image_id in image_ids:
        texts = [p.text for p in prompts if image_id in p.memorized_ids]
        sets = [set(words_of(t)) for t in texts]
        shared = set.intersection(*sets) if sets else set()
        first = words_of(texts[0]) if texts else []
        out[image_id] = {"n_prompts": len(texts), "words": [w for w in dict.fromkeys(first) if w in shared]}
    return out
