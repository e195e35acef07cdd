"""``membench reference --suite S``: compute the reference performance the leaderboard shows beside
the published one: web image search (``--source api``, Google Custom Search, as MemBench did) or the
suite's local gallery (``--source gallery``, mini), scored exactly like a method's images."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reference", help="compute the image-search reference row (Google API or a local gallery)",
        description="For each trigger prompt, take the top image-search results (Google Custom Search JSON API in "
        "image mode with $GOOGLE_API_KEY / $GOOGLE_CSE_ID, cached and resumable; or the suite's local gallery by "
        "CLIP retrieval) and score them like a method's generations. The API result is saved in the cache and "
        "shown by later runs' leaderboards on the same scorers.")
    p.add_argument("--suite", default="mini", help="suite name or suite file .toml (default: mini)")
    p.add_argument("--source", choices=("api", "gallery"), default=None,
                   help="api (web search) or gallery (local); default: gallery when the suite has one, else api")
    p.add_argument("--images-per-prompt", type=int, default=10, metavar="K", help="results per prompt (1-10)")
    p.add_argument("--endpoint", default=None, help="Custom Search endpoint (default: Google's)")
    p.add_argument("--exclude-memorized", action="store_true",
                   help="drop results that are memorized images (same URL or SSCD > 0.5); the row label says so")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="first N trigger prompts")
    p.add_argument("--cache", default=None, metavar="DIR", help="query/image cache (default: the user cache)")
    p.add_argument("--data-dir", default=None, help="local copy of the upstream data")
    p.add_argument("--device", default=None, help="cpu | cuda (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from membench_eval.errors import MembenchError
    from membench_eval.evaluation import EvalOptions, Evaluation
    from membench_eval.reference.api_reference import compute_api_reference, reference_folder, save

    if not 1 <= args.images_per_prompt <= 10:
        raise MembenchError(f"--images-per-prompt {args.images_per_prompt}: the API returns 1 to 10 results per query")
    ev = Evaluation(EvalOptions(suite=args.suite, data_dir=args.data_dir, limit=args.limit, device=args.device,
                                stored_baselines=False, reference=False, reference_dir=args.cache))
    plan = ev.plan([], [])
    prompts = plan.prompts.get("trigger", [])
    if not prompts:
        raise MembenchError(f"suite {args.suite}: no trigger prompts to compute a reference for")
    source = args.source or ("gallery" if ev.suite.reference_gallery is not None else "api")
    if source == "gallery":
        if ev.suite.reference_gallery is None:
            raise MembenchError(f"suite {args.suite} has no local gallery; use --source api")
        from membench_eval.evaluation import MethodSpec

        spec = MethodSpec(ev.gallery_label, "computed_reference", "reference", {})
        results = ev.evaluate_prompts(spec, "trigger", prompts)
        label, stopped = spec.label, None
    else:
        from membench_eval.evaluation import MethodSpec
        from membench_eval.reference.image_search import ImageSearchClient

        def aggregate(label: str, prompt: Any, rows: list) -> Any:  # a trigger row of the reference
            return ev.aggregate(MethodSpec(label, "computed_reference", "reference", {}), "trigger", prompt, rows)

        folder = reference_folder(args.cache)
        client = ImageSearchClient.from_env(folder / "queries", endpoint=args.endpoint)
        ref = compute_api_reference(prompts, client, folder, suite=ev.suite, score=ev.score_images,
                                    aggregate=aggregate, scorer_ids=ev.scorer_ids, k=args.images_per_prompt,
                                    exclude_memorized=args.exclude_memorized, progress=not args.no_progress)
        path = save(ref, folder)
        results, label, stopped = ref.results, ref.label, ref.stopped
        print(f"membench: saved {path} ({ref.summary['prompts_scored']} of {len(prompts)} prompts scored, "
              f"{ref.summary['memorized_copies']} of {ref.summary['images']} images are memorized copies)")
    _print_summary(label, results)
    if stopped:
        print(f"membench: {stopped}", file=sys.stderr)
        return 3
    return 0


def _print_summary(label: str, results: list) -> None:
    import numpy as np

    print(f"{label}: {len(results)} trigger prompts")
    for key in ("top1_sscd", "top3_sscd", "sscd_gt_05", "clip"):
        values = [r.metrics.get(key) for r in results if r.metrics.get(key) is not None]
        if values:
            print(f"  {key}: {float(np.mean(values)):.3f} (mean over {len(values)} prompts)")
        else:
            print(f"  {key}: n/a")
