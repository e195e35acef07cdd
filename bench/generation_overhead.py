"""Harness overhead: ``membench_eval.generation.generate`` vs a bare diffusers loop, same images.

Both produce the same images on the miniature benchmark model (the random tiny pipeline when the
mini model is not built yet): the same batches, the same per-image generators. The harness also
encodes prompts itself, draws latents, writes PNGs and metadata rows into a run store. Printed:
harness time / bare time (target <= 1.10), and the time of a cached re-run (everything reused).
Runs are interleaved and repeated, and the minimum of each is compared, because this machine is
shared (other processes add noise that only ever makes a run slower).

    python bench/generation_overhead.py [--prompts 4] [--repeats 3] [--batch-size 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def load_model(tmp: Path):
    """(pipeline, suite or None, description): the mini model, else the random tiny pipeline."""
    from membench_eval.models.loading import load_pipeline

    try:
        from membench_eval.suites import get_suite

        suite = get_suite("mini")
        return load_pipeline(suite.model, device="cpu"), suite, f"mini model ({suite.model})"
    except Exception as exc:  # the mini model may not be built yet
        from membench_eval.models.tiny import build_random_tiny_pipeline

        build_random_tiny_pipeline(seed=0).save_pretrained(tmp / "tiny")
        return load_pipeline(str(tmp / "tiny"), device="cpu"), None, f"random tiny pipeline (mini unavailable: {exc})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", type=int, default=4, help="trigger prompts to generate (images per prompt from the suite)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: on a shared 2-core machine more threads thrash and drown the "
                   "comparison in noise; 0 = torch's default)")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from membench_eval.generation.engine import generate
    from membench_eval.generation.seeding import make_generator, plan_requests
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.store.run_store import RunStore
    from membench_eval.suites.types import Prompt

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pipe, suite, what = load_model(tmp)
        if suite is not None and suite.trigger is not None:
            settings = GenerationSettings.for_suite(suite, batch_size=args.batch_size)
            prompts = list(suite.trigger.prompts[: args.prompts])
        else:
            settings = GenerationSettings(num_inference_steps=20, height=64, width=64, trigger_images_per_prompt=10,
                                          batch_size=args.batch_size)
            prompts = [Prompt(f"p{i}", f"a photo of thing number {i}") for i in range(args.prompts)]
        requests = plan_requests(prompts, settings.trigger_images_per_prompt, settings.seed)
        batches = [requests[i : i + settings.batch_size] for i in range(0, len(requests), settings.batch_size)]
        print(f"{what}\n{len(requests)} images, {settings.height}x{settings.width}, {settings.num_inference_steps} "
              f"steps, guidance {settings.guidance_scale}, batch {settings.batch_size}, {torch.get_num_threads()} threads")

        def bare() -> list:
            images = []
            for batch in batches:
                out = pipe(prompt=[r.prompt for r in batch], generator=[make_generator(r.seed) for r in batch],
                           num_inference_steps=settings.num_inference_steps, guidance_scale=settings.guidance_scale,
                           height=settings.height, width=settings.width)
                images += out.images
            return images

        bare()  # warm-up (first calls allocate and pick kernels)
        bare_times, harness_times, cached_times = [], [], []
        for rep in range(args.repeats):
            t0 = time.perf_counter()
            bare_images = bare()
            bare_times.append(time.perf_counter() - t0)
            store_dir = tmp / f"store{rep}"
            t0 = time.perf_counter()
            report = generate(pipe, requests, None, settings, RunStore(store_dir), progress=False)
            harness_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            again = generate(pipe, requests, None, settings, RunStore(store_dir), progress=False)
            cached_times.append(time.perf_counter() - t0)
            assert again.new == 0 and again.reused == len(requests)
            store = RunStore(store_dir)
            diff = max(int(np.abs(np.asarray(store.get_image(k), dtype=np.int16) - np.asarray(im, dtype=np.int16)).max())
                       for k, im in zip(report.keys, bare_images))
            print(f"repeat {rep}: bare {bare_times[-1]:.2f} s, harness {harness_times[-1]:.2f} s "
                  f"(ratio {harness_times[-1] / bare_times[-1]:.3f}), cached re-run {cached_times[-1]:.3f} s, "
                  f"max pixel difference {diff}/255", flush=True)
            if diff > 1:
                print("ERROR: the harness and the bare loop produced different images", file=sys.stderr)
                return 1
        ratio_min = min(harness_times) / min(bare_times)
        ratios = [h / b for h, b in zip(harness_times, bare_times)]
        print(f"overhead ratio harness/bare: {ratio_min:.3f} (min/min), median per-repeat {statistics.median(ratios):.3f} "
              f"[target <= 1.10] -> {'OK' if ratio_min <= 1.10 else 'ABOVE TARGET'}")
        print(f"cached re-run: {min(cached_times):.3f} s for {len(requests)} images "
              f"({1000 * min(cached_times) / len(requests):.2f} ms/image; bare generation "
              f"{1000 * min(bare_times) / len(requests):.0f} ms/image)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
