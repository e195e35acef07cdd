"""``membench detect``: Wen et al.'s memorization signal for prompts, and its ROC AUC.

With only ``--suite``, scores the suite's trigger prompts (memorized) against its general prompts
and prints the ROC AUC and TPR at 1% FPR. ``--prompts FILE`` scores a prompt list and writes one
score per prompt; adding ``--against FILE`` (non-memorized prompts) also prints AUC/TPR. For SD 1.4
with real weights: ``--suite sd1 --prompts webster/sdv1_500_memorized.jsonl --against
webster/nonmem500.txt`` (Wen's 500 vs Webster's 500; the paper reports AUC 0.994 with the
trajectory score).

With ``--detector FILE`` (repeatable; several files per flag), scores the same prompt sets with
each detector file's configurations (``--param`` sweeps, applied to every file), reusing scores in
the run store (``--store``), and writes the detection leaderboard to ``--out DIR`` (default
``leaderboard``): ``<suite>.detect.md``, ``.detect.json`` and ``.roc.png``, with 95% bootstrap
intervals, the paired AUC difference to ``wen_single`` and the cost per prompt.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "detect",
        help="memorization detection score (Wen et al.) and its ROC AUC",
        description=__doc__.split("\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--suite", required=True, help="suite whose model (and, by default, prompts) to use, e.g. mini or sd1")
    p.add_argument("--prompts", type=Path, default=None, metavar="FILE", help="prompts to score (.txt, .jsonl or .csv)")
    p.add_argument("--against", type=Path, default=None, metavar="FILE", help="non-memorized prompts; AUC of --prompts vs these")
    p.add_argument("--out", type=Path, default=None, metavar="PATH",
                   help="without --detector: per-prompt scores FILE (.jsonl or .csv; default with --prompts: "
                   "<prompts stem>.<score>-scores.jsonl); with --detector: the leaderboard DIR (default: leaderboard)")
    p.add_argument("--score", choices=("single", "trajectory"), default=None,
                   help="single: one UNet call at t=999 on a shared latent (the search's score); "
                   "trajectory: Wen's mean per-step norm over a full DDIM run (default: single; not with --detector)")
    p.add_argument("--detector", action="extend", nargs="+", default=[], metavar="FILE",
                   help="detector file(s) (a Detector subclass each); repeatable: one leaderboard of all of them")
    p.add_argument("--param", action="append", default=[], metavar="K=V",
                   help="detector parameter, for every --detector file; K=V1,V2 sweeps; 'strongest' / 'sweep'")
    p.add_argument("--store", default=None, metavar="DIR", help="run store for detector scores (default: the user cache)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--num-images", type=int, default=4, help="trajectory score: images per prompt (Wen: 4)")
    p.add_argument("--steps", type=int, default=None, help="trajectory score: denoising steps (default: the suite's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shared latent(s)")
    p.add_argument("--batch-size", type=int, default=None, help="prompts per UNet batch (default 50 single, 8 trajectory)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N prompts of each side")
    p.add_argument("--model", default=None, help="override the suite's model (hub id or local diffusers directory)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=run)


def _limit(items: list[str], n: int | None) -> list[str]:
    return items if n is None else items[:n]


def run(args: argparse.Namespace) -> int:
    from membench_eval.cli import CliError
    from membench_eval.detection.prompt_files import read_prompt_file, write_scores
    from membench_eval.detection.roc import detection_metrics
    from membench_eval.suites import get_suite

    suite = get_suite(args.suite)
    if args.against is not None and args.prompts is None:
        raise CliError("--against needs --prompts (the memorized list)")
    if args.detector:
        return run_detectors_cli(args, suite)
    if args.param:
        raise CliError("--param needs --detector FILE")
    args.score = args.score or "single"
    if args.prompts is None:
        if suite.trigger is None or suite.general is None:
            raise CliError(
                f"suite {suite.name!r} lacks trigger or general prompts; pass --prompts FILE (and --against FILE), "
                "e.g. Wen's sdv1_500_memorized.jsonl against Webster's nonmem500.txt"
            )
        positives = _limit([p.text for p in suite.trigger.prompts], args.limit)
        negatives = _limit([p.text for p in suite.general.prompts], args.limit)
    else:
        positives = _limit(read_prompt_file(args.prompts), args.limit)
        negatives = _limit(read_prompt_file(args.against), args.limit) if args.against is not None else []

    scores = score_prompts(args, suite, positives + negatives)
    pos, neg = scores[: len(positives)], scores[len(positives) :]

    out = args.out
    if out is None and args.prompts is not None:
        out = Path(f"{args.prompts.stem}.{args.score}-scores.jsonl")
    if out is not None:
        labels = ["memorized"] * len(pos) + ["nonmemorized"] * len(neg)
        write_scores(out, positives + negatives, scores, extra={"label": labels, "score_kind": [args.score] * len(labels)})
        print(f"wrote {len(scores)} scores to {out}", file=sys.stderr)
    if len(neg):
        metrics = detection_metrics(pos, neg)
        if args.json:
            print(json.dumps({"suite": suite.name, "score": args.score, **metrics.as_dict()}))
        else:
            print(f"{suite.name} ({args.score} score): {metrics.summary()}")
    elif not args.json:
        print(f"scored {len(pos)} prompts (mean {float(pos.mean()):.4g}); give --against FILE for ROC AUC")
    return 0


def score_prompts(args: argparse.Namespace, suite, prompts: list[str]):  # noqa: ANN001
    """Load the suite's pipeline and score ``prompts`` with the chosen signal."""
    from membench_eval.detection.signal import single_step_scores, trajectory_scores
    from membench_eval.models.loading import load_pipeline
    from membench_eval.generation.settings import GenerationSettings

    settings = GenerationSettings.for_suite(suite, num_inference_steps=args.steps)
    pipe = load_pipeline(args.model or suite.model, revision=None if args.model else suite.revision, device=args.device)
    if args.score == "single":
        return single_step_scores(pipe, prompts, seed=args.seed, batch_size=args.batch_size or 50,
                                  height=settings.height, width=settings.width, progress=True)
    return trajectory_scores(
        pipe, prompts, num_images=args.num_images, num_inference_steps=settings.num_inference_steps,
        guidance_scale=settings.guidance_scale, height=settings.height, width=settings.width,
        seed=args.seed, batch_size=args.batch_size or 8, progress=True,
    )


def run_detectors_cli(args: argparse.Namespace, suite) -> int:  # noqa: ANN001
    """``--detector``: score the prompt set with every configuration and write the leaderboard."""
    from membench_eval.cli import CliError
    from membench_eval.detection.leaderboard import build_detection_leaderboard
    from membench_eval.detection.prompt_sets import file_detection_set, suite_detection_set
    from membench_eval.detection.render import to_json, to_markdown, write_detection_leaderboard
    from membench_eval.detection.run import run_detectors
    from membench_eval.plugins.detectors import load_detector_files
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.paths import cache_dir
    from membench_eval.store.detections import DetectionStore

    if args.score is not None:
        raise CliError("--score chooses the built-in signal; with --detector, use a detector file instead")
    detectors = load_detector_files(args.detector, args.param)
    if args.prompts is None:
        dset = suite_detection_set(suite, args.limit)
    else:
        dset = file_detection_set(suite.name, args.prompts, args.against, args.limit)
    settings = GenerationSettings.for_suite(suite, num_inference_steps=args.steps, seed=args.seed,
                                            batch_size=args.batch_size)

    def load_pipe():  # noqa: ANN202 - only when a detector needs the model
        from membench_eval.models.loading import load_pipeline

        return load_pipeline(args.model or suite.model, revision=None if args.model else suite.revision, device=args.device)

    root = Path(args.store) if args.store else cache_dir() / "runs"
    with DetectionStore(root) as store:
        results = run_detectors(detectors, dset.prompts, settings, store, load_pipe=load_pipe,
                                progress=not args.no_progress, notify=lambda m: print(m, file=sys.stderr))
        for line in store.problems:
            print(f"membench: warning: {line}", file=sys.stderr)
    board = build_detection_leaderboard(dset, results, metadata={
        "model": args.model or suite.model, "seed": settings.seed, "num_inference_steps": settings.num_inference_steps,
        "guidance_scale": settings.guidance_scale, "height": settings.height, "width": settings.width,
        "limit": args.limit, "store": str(root)})
    paths = write_detection_leaderboard(board, args.out if args.out is not None else Path("leaderboard"))
    if args.json:
        summary = to_json(board)
        for det in summary["detectors"]:
            det.pop("scores")
        print(json.dumps(summary))
    else:
        print(to_markdown(board))
    print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return 0
