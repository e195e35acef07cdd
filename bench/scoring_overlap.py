"""Scoring overlapped with generation: what does scoring add to the wall time of a run?

On the miniature benchmark (base, its trigger prompts at 10 images each, fresh stores), three runs
side by side, interleaved and repeated (minimum kept: this machine is shared):

- generation alone: ``generate`` writing the store, nothing scored;
- overlapped (the default): ``Evaluation.evaluate_prompts``, each batch scored (SSCD, mini-CLIP)
  in the sink's thread while the next batch denoises;
- serial: the same with ``overlap_scoring=False`` (score after generation, as before).

Printed: overlapped / generation-alone - 1 (target <= 5%) and serial / generation-alone - 1.
Generation runs on ``--threads`` torch threads; the scorers on what is left (on 2 cores: one each).

    python bench/scoring_overlap.py [--prompts 8] [--repeats 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=8, help="trigger prompts (10 images each)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for generation")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from membench_eval.evaluation import EvalOptions, Evaluation
    from membench_eval.generation.engine import generate
    from membench_eval.generation.seeding import plan_requests

    times: dict[str, list[float]] = {"generation alone": [], "overlapped scoring": [], "serial scoring": []}
    with tempfile.TemporaryDirectory() as tmp:
        def evaluation(name: str, overlap: bool) -> Evaluation:
            ev = Evaluation(EvalOptions(suite="mini", store_dir=str(Path(tmp) / name), limit=args.prompts,
                                        overlap_scoring=overlap, reference=False))
            plan = ev.plan([], [])
            ev.preflight()
            return ev, plan

        warm, plan = evaluation("warm", True)  # loads every model once (file caches, ONNX session)
        method = plan.methods[0]
        prompts = plan.prompts["trigger"]
        warm.evaluate_prompts(method, "trigger", prompts[:1])
        for rep in range(args.repeats):
            ev, _ = evaluation(f"gen{rep}", True)
            pipe, settings = ev.pipeline, ev.settings
            requests = plan_requests(prompts, settings.images_per_prompt("trigger"), settings.seed)
            t0 = time.perf_counter()
            generate(pipe, requests, None, settings, ev.store, progress=False)
            times["generation alone"].append(time.perf_counter() - t0)
            for name, overlap in (("overlapped scoring", True), ("serial scoring", False)):
                ev, _ = evaluation(f"{name[:3]}{rep}", overlap)
                ev.models = warm.models  # the same loaded models
                ev.quality_scorers = warm.quality_scorers
                ev.reference_embeddings = warm.reference_embeddings
                t0 = time.perf_counter()
                ev.evaluate_prompts(method, "trigger", prompts)
                times[name].append(time.perf_counter() - t0)
        n = len(prompts) * warm.settings.images_per_prompt("trigger")
    gen = min(times["generation alone"])
    print(f"mini, base, {len(prompts)} trigger prompts x 10 = {n} images, generation on {args.threads} torch thread(s), "
          f"min of {args.repeats}")
    print(f"{'run':<20} {'seconds':>8} {'img/s':>7} {'vs generation alone':>20}")
    for name, ts in times.items():
        best = min(ts)
        print(f"{name:<20} {best:8.2f} {n / best:7.2f} {best / gen - 1:+19.1%}")
    added = min(times["overlapped scoring"]) / gen - 1
    print(f"overlapped scoring adds {added:+.1%} over generation alone (target <= +5%): "
          f"{'PASS' if added <= 0.05 else 'MISS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
