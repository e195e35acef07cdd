"""MemBench Algorithm 2: more trigger prompts for a known memorized image.

Starting from a known trigger prompt, one Gibbs chain per word position (chain ``p`` resamples
position ``p`` first, then random positions), with a hotter temperature than the search (the
reference README uses T = 1.5, 50 iterations, early stop after 3 chosen scores below 3). Every
scored candidate is pooled, scores of a prompt seen several times are averaged, the top 100 are
kept, and a diverse 20 are picked by greedy max-min word-position (Hamming) distance. Output is
JSON with, for each prompt, its score and how many word positions differ from the original.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from membench_eval.errors import DataError
from membench_eval.search.gibbs import ChainConfig, GibbsChain, Scorer

if TYPE_CHECKING:
    from membench_eval.search.mlm import MaskedLM


@dataclass(frozen=True)
class AugmentConfig:
    """Algorithm 2 settings; defaults from the reference README's augmentation command."""

    steps: int = 50
    top_k: int = 200
    temperature: float = 1.5
    seed: int = 0
    early_stop_threshold: float | None = 3.0
    early_stop_patience: int = 3
    keep_top: int = 100
    n_diverse: int = 20
    resample_latent: bool = True


def hamming(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    return sum(x != y for x, y in zip(a, b))


def pick_diverse(items: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Greedy max-min selection on slot Hamming distance; starts from the best score, ties by score.

    ``items`` must be sorted by score, best first, and carry ``slots``.
    """
    if not items:
        return []
    chosen = [0]
    min_dist = np.array([hamming(tuple(it["slots"]), tuple(items[0]["slots"])) for it in items], dtype=float)
    while len(chosen) < min(n, len(items)):
        min_dist[chosen] = -1
        nxt = int(np.argmax(min_dist))  # argmax returns the first max = the better-scored one
        chosen.append(nxt)
        d = np.array([hamming(tuple(it["slots"]), tuple(items[nxt]["slots"])) for it in items], dtype=float)
        min_dist = np.minimum(min_dist, d)
    return [items[i] for i in chosen]


def augment_prompt(
    mlm: "MaskedLM", scorer: Scorer, prompt: str, out_dir: str | Path, config: AugmentConfig = AugmentConfig(), *, progress: bool = True
) -> dict[str, Any]:
    """Run Algorithm 2 from ``prompt``; logs chains under ``out_dir/chains`` and writes ``augment.json``."""
    out = Path(out_dir)
    origin = mlm.encode_words(prompt)
    unknown = mlm.tokenizer.unk_token_id
    if not origin or (unknown is not None and unknown in origin):
        raise DataError("augment prompt", f"{prompt!r}: empty or has words outside the masked LM {mlm.spec!r} vocabulary")
    chain_cfg = ChainConfig(
        length=len(origin), top_k=config.top_k, temperature=config.temperature, seed=config.seed,
        resample_latent=config.resample_latent, include_empty=False,
        early_stop_threshold=config.early_stop_threshold, early_stop_patience=config.early_stop_patience,
    )
    pooled: dict[str, dict[str, Any]] = {}
    chains = []
    for pos in range(len(origin)):
        chain = GibbsChain(mlm, scorer, chain_cfg, out / "chains" / f"position_{pos:02d}.jsonl",
                           chain_index=pos, init_slots=origin, first_position=pos, meta={"origin": prompt})
        res = chain.run(config.steps, progress=progress)
        chains.append({"position": pos, "steps": len(res.steps), "stopped_early": res.stopped_early, "log": res.log_path.name})
        for step in res.steps:
            slots, p = list(step["slots"]), int(step["position"])
            for cid, score in zip(step["candidate_ids"], step["candidate_scores"]):
                cand = list(slots)
                cand[p] = int(cid)
                text = mlm.decode(cand)
                entry = pooled.setdefault(text, {"prompt": text, "slots": cand, "scores": []})
                entry["scores"].append(float(score))
    origin_text = mlm.decode(origin)
    items = []
    for text, entry in pooled.items():
        changed = hamming(tuple(entry["slots"]), tuple(origin))
        if not text or text == origin_text or changed == 0:
            continue
        items.append({"prompt": text, "score": float(np.mean(entry["scores"])), "n_scored": len(entry["scores"]),
                      "changed_words": changed, "slots": entry["slots"]})
    items.sort(key=lambda it: (-it["score"], it["prompt"]))
    top = items[: config.keep_top]
    diverse = pick_diverse(top, config.n_diverse)
    result = {
        "origin": prompt,
        "origin_tokens": [mlm.token(i) for i in origin],
        "config": {**config.__dict__, "mlm": mlm.spec},
        "chains": chains,
        "n_candidates": len(items),
        "top": [{k: v for k, v in it.items() if k != "slots"} for it in top],
        "diverse": [{k: v for k, v in it.items() if k != "slots"} for it in diverse],
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "augment.json.tmp"
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(out / "augment.json")
    return result
