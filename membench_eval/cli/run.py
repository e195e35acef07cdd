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

from membench_eval.evaluation.options import add_cli_options


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run", help="evaluate mitigation file(s) on a suite and write the leaderboard",
        description="Generate (or reuse from the run store) and score base, stored baselines and the given "
        "method(s) on a suite; write <out>/<suite>.md and .json with 95% cluster-bootstrap intervals.",
    )  # the options are the evaluation's option table (membench_eval.evaluation.options), shared with pytest
    add_cli_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from membench_eval.evaluation import EvalOptions, Evaluation
    from membench_eval.evaluation.project_config import configured_store, resolve_gates
    from membench_eval.evaluation.gates import check_gates
    from membench_eval.report import to_markdown
    from membench_eval.report.artefacts import write_report

    gate_config = resolve_gates(args.gate, args.gate_file, Path.cwd())
    gates = list(gate_config.gates)
    print(f"membench: {gate_config.describe()}")
    options = EvalOptions(
        suite=args.suite, data_dir=args.data_dir, model=args.model, store_dir=args.store or configured_store(Path.cwd()), out_dir=args.out,
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
    print(f"membench: {outcome.summary()}", file=sys.stderr)
    return outcome.results, outcome.quality, outcome.problems
