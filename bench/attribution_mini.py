"""Does attribution find the words that distinguish each mini photo's captions? (issue 19, item 5)

For each of the mini's 16 trigger prompts, the *distinguishing words* are the prompt's words that
occur in that photo's three training captions and in no other photo's caption and no general
caption (``training_captions.json``): the words only this photo was trained with. Prints, per
measure (SSCD drop on removal, signal drop on removal, Wen's gradient), how many photos have a
distinguishing word on top, and the Spearman correlation (bootstrap interval over words) of each
word's duplication score (signed G^2 in the mini's training captions) with its measured effect,
pooled over all 16 prompts. Timings per prompt (the CLI's target: under a minute on CPU).

    python bench/attribution_mini.py [--images 4] [--store DIR] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MEASURES = {"SSCD drop removed": ("removed", "sscd"), "signal drop removed": ("removed", "signal"), "grad": ("grad",)}


def distinguishing_words(captions: dict, name: str) -> set[str]:
    """Words of photo ``name``'s captions in no other photo's and no general caption."""
    from membench_eval.analysis.words import words_of

    mem = captions["memorized"]
    own = {w for c in mem[name] for w in words_of(c)}
    other = {w for k, v in mem.items() if k != name for c in v for w in words_of(c)}
    other |= {w for c in captions["general"] for w in words_of(c)}
    return own - other


def value(row: dict, path: tuple[str, ...]) -> float:
    for p in path:
        row = row[p]
    return float(row["mean"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--store", default="/tmp/membench-attribution-bench")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from membench_eval.analysis.attribution import AttributionConfig, run_attribution
    from membench_eval.analysis.duplication import duplication_scores, load_captions, rank_correlation
    from membench_eval.analysis.effects import ImageScorer
    from membench_eval.models.loading import load_pipeline
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.metrics.sscd import load_sscd, reference_embeddings
    from membench_eval.paths import MINI_DIR
    from membench_eval.store.run_store import RunStore
    from membench_eval.suites import get_suite
    from membench_eval.suites.references import reference_paths

    suite = get_suite("mini")
    raw = json.loads((MINI_DIR / "training_captions.json").read_text(encoding="utf-8"))
    caption_list = load_captions(MINI_DIR / "training_captions.json")
    pipe = load_pipeline(suite.model, device="cpu")
    sscd = load_sscd(suite.sscd_backend, device="cpu")
    paths, _ = reference_paths(suite)
    scorer = ImageScorer(pipe, sscd, reference_embeddings(sscd, paths), RunStore(args.store), GenerationSettings.for_suite(suite))
    config = AttributionConfig(images=args.images, minimal=False)
    hits = {m: 0 for m in MEASURES}
    pooled: dict[str, list[float]] = {m: [] for m in MEASURES}
    pooled_dup: list[float] = []
    prompts = suite.trigger.prompts[: args.limit]
    for p in prompts:
        name = Path(suite.memorized[p.memorized_ids[0]].source).stem
        dist = distinguishing_words(raw, name)
        t0 = time.perf_counter()
        res, reused = run_attribution(pipe, scorer, p.text, p.prompt_id, p.memorized_ids, config)
        took = time.perf_counter() - t0
        dup = duplication_scores(caption_list, suite, p.memorized_ids)
        tops = {}
        for m, path in MEASURES.items():
            best = max(res["words"], key=lambda w: value(w, path))
            tops[m] = best["word"]
            hits[m] += best["word"].lower() in dist
        seen = set()
        for w in res["words"]:
            if w["word"].lower() in seen:
                continue
            seen.add(w["word"].lower())
            pooled_dup.append(dup.get(w["word"].lower(), {"g2": 0.0})["g2"])
            for m, path in MEASURES.items():
                pooled[m].append(value(w, path))
        print(f"{p.prompt_id} {name:15s} top: " + ", ".join(f"{m.split()[0]} {tops[m]!r}" for m in MEASURES)
              + f"  distinguishing: {sorted(dist & seen)}  ({took:.1f} s{' reused' if reused else ''})", flush=True)
    n = len(prompts)
    for m in MEASURES:
        c = rank_correlation(pooled_dup, pooled[m])
        print(f"{m:20s}: distinguishing word on top for {hits[m]}/{n} photos; Spearman with duplication G2 over "
              f"{c['n_words']} words {c['rho']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
