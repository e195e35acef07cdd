"""``membench run FILE --suite mini``: the benchmark without pytest (same library as the plugin).

Evaluates base, the baselines already in the run store, and the given method(s) with their
parameter sweeps; writes ``<out>/<suite>.md`` and ``.json``; prints the table; checks the gates.
Exit status (``membench_eval.cli``): 0 all gates passed, 1 a gate failed, 2 a usage or data error,
3 a store or environment fault, 70 an internal error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from membench_eval.scaleout import RAY_ACTORS_HELP, RAY_ADDRESS_HELP


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run", help="evaluate mitigation file(s) on a suite and write the leaderboard",
        description="Generate (or reuse from the run store) and score base, stored baselines and the given "
        "method(s) on a suite; write <out>/<suite>.md and .json with 95% cluster-bootstrap intervals.",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="mitigation file(s), e.g. mitigations/rna.py")
    p.add_argument("--suite", default="mini", help="mini | sd1 | coco | sd1+coco | path/to/suite.toml (default: mini)")
    p.add_argument("--model", default=None, help="diffusers model (hub id or local dir); default: the suite's")
    p.add_argument("--param", action="append", default=[], metavar="K=V",
                   help="method parameter; K=V1,V2 sweeps; 'strongest' / 'sweep' (repeatable)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="first N prompts of each prompt set")
    p.add_argument("--subset", choices=["stratified"], default=None,
                   help="stratified: one trigger prompt per memorized image")
    p.add_argument("--out", default="leaderboard", metavar="DIR", help="leaderboard directory (default: leaderboard)")
    p.add_argument("--store", default=None, metavar="DIR", help="run store (default: the user cache)")
    p.add_argument("--gate", action="append", default=[], metavar="EXPR",
                   help="gate like 'top1_sscd <= 0.3' or 'clip >= base - 0.01' (default: [tool.membench] gate "
                        "in ./pyproject.toml)")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:1 (default: auto)")
    p.add_argument("--sscd-backend", default=None, help="disc_large | disc_mixup_onnx (default: the suite's)")
    p.add_argument("--clip-model", default=None, help="open_clip model for the CLIP score (default ViT-g-14)")
    p.add_argument("--clip-pretrained", default=None, metavar="TAG_OR_PATH", help="open_clip weights for CLIP score")
    p.add_argument("--aesthetic-pretrained", default=None, metavar="TAG_OR_PATH",
                   help="open_clip ViT-L-14 weights for the aesthetic score")
    p.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    p.add_argument("--batch-size", type=_batch_size, default=None, metavar="B",
                   help="images per pipeline call, or 'auto': the largest that fits in free GPU memory (CUDA only; "
                        "part of the image key, so pin a number to share a store across GPU models)")
    p.add_argument("--compile", action="store_true", help="torch.compile the UNet (CUDA; slow first batches)")
    p.add_argument("--data-dir", default=None, help="local copy of the upstream data")
    p.add_argument("--no-stored-baselines", action="store_true", help="leave store baselines out of the table")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process (default); ray: actor pools on a Ray cluster, one pipeline per "
                        "device, into the same store (pip install -e '.[ray]'; README: Scale out)")
    p.add_argument("--ray-address", default=None, metavar="ADDR", help=RAY_ADDRESS_HELP)
    p.add_argument("--ray-actors", type=int, default=None, metavar="N", help=RAY_ACTORS_HELP)
    p.set_defaults(func=run)


def _batch_size(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {value!r}")
    return n


def run(args: argparse.Namespace) -> int:
    from membench_eval.evaluation import EvalOptions, Evaluation
    from membench_eval.evaluation.gates import check_gates, gates_from_pyproject, parse_gates
    from membench_eval.report import to_markdown
    from membench_eval.report.artefacts import write_report

    gates = parse_gates(args.gate or gates_from_pyproject(Path.cwd() / "pyproject.toml"))
    options = EvalOptions(
        suite=args.suite, data_dir=args.data_dir, model=args.model, store_dir=args.store, out_dir=args.out,
        limit=args.limit, subset=args.subset, device=args.device, sscd_backend=args.sscd_backend,
        clip_model=args.clip_model, clip_pretrained=args.clip_pretrained, aesthetic_pretrained=args.aesthetic_pretrained, seed=args.seed,
        batch_size=args.batch_size, stored_baselines=not args.no_stored_baselines, progress=not args.no_progress,
        compile=args.compile, engine=args.engine, ray_address=args.ray_address, ray_actors=args.ray_actors,
    )
    evaluation = Evaluation(options)
    plan = evaluation.plan(args.files, args.param)
    evaluation.preflight()
    results, quality, problems = _compute(evaluation, plan, args)
    for line in problems:
        print(f"membench: {line}", file=sys.stderr)
    board = evaluation.leaderboard(plan, results, quality)
    files = write_report(board, args.out, store=evaluation.store, references=evaluation.references[0])
    c = evaluation.counts
    print(to_markdown(board))
    print(f"membench: {c['generated']} images generated, {c['reused']} reused from the store")
    for line in files.summary_lines():
        print(line, file=sys.stderr if line.startswith("membench: warning") else sys.stdout)
    if not gates:
        return 0
    user = [m.label for m in plan.methods if m.kind == "method"]
    outcome = check_gates(gates, board, user)
    failed = False
    for label, res in outcome.items():
        for r in res:
            print(("PASS " if r.passed else "FAIL ") + r.message, file=sys.stdout if r.passed else sys.stderr)
            failed |= not r.passed
    return 1 if failed else 0


def _compute(evaluation, plan, args: argparse.Namespace) -> tuple[list, dict | None, list[str]]:  # noqa: ANN001
    """(per-prompt results, scorer status or None for this process's, store problems) of the plan,
    computed here or on a Ray cluster (``membench_eval.scaleout.ray_engine``)."""
    if evaluation.options.engine != "ray":
        results = evaluation.evaluate_plan(plan)
        return results, None, list(evaluation.store.problems)
    from membench_eval.scaleout.ray_engine import run_on_ray

    outcome = run_on_ray(evaluation, plan, list(args.files), list(args.param))
    evaluation.counts.update(outcome.counts)
    print(f"membench: ray engine: {outcome.actors} {outcome.device} actor(s); "
          + ", ".join(f"{stage} {s:.1f} s" for stage, s in outcome.seconds.items()), file=sys.stderr)
    return outcome.results, outcome.quality, outcome.problems
