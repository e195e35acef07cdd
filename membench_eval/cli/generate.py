"""``membench generate``: generate (or reuse) a suite's images into a run store."""

from __future__ import annotations

import argparse
import sys

from membench_eval.evaluation.options import add_cli_options, add_deprecated_aliases

ROLES = ("trigger", "general")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate",
        help="generate a suite's images into a run store (resumable; reuses what exists)",
        description="Generate the trigger and general images of a suite with a mitigation method into the run "
        "store under --store. Re-running skips every image already stored.",
    )
    p.add_argument("--suite", required=True, help="suite name (e.g. mini, sd1, coco, sd1+coco) or suite file .toml")
    add_cli_options(p, ["store"], store={"help": "run store directory (created if missing; required)"})
    add_deprecated_aliases(p, "generate")  # --out DIR: the old spelling of --store
    add_cli_options(p, ["data-dir"])
    p.add_argument("--method", default=None, metavar="FILE", help="mitigation file (e.g. mitigations/rna.py); default: base")
    p.add_argument("--method-name", default=None, metavar="NAME", help="which class, when FILE defines several")
    add_cli_options(p, ["param", "model"])
    p.add_argument("--revision", default=None, help="hub revision of the model")
    add_cli_options(p, ["device", "limit"])
    p.add_argument("--role", choices=("all",) + ROLES, default="all", help="which prompt set(s) to generate")
    p.add_argument("--batch-size", type=int, default=None, metavar="B", help="images per pipeline call")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="run seed (default 0)")
    p.add_argument("--steps", type=int, default=None, help="override the suite's number of inference steps")
    add_cli_options(p, ["no-progress"])
    p.set_defaults(func=run)


def suite_requests(suite, settings, roles=ROLES, limit: int | None = None) -> list:  # noqa: ANN001
    """ImageRequests of the suite's prompt sets (first ``limit`` prompts of each role)."""
    from membench_eval.generation.seeding import plan_requests

    requests = []
    for role in roles:
        prompt_set = getattr(suite, role)
        if prompt_set is None:
            continue
        prompts = prompt_set.prompts[:limit] if limit is not None else prompt_set.prompts
        requests += plan_requests(prompts, settings.images_per_prompt(role), settings.seed)
    return requests


def run(args: argparse.Namespace) -> int:
    from membench_eval.cli import CliError
    from membench_eval.generation.engine import GenerationInterrupted, generate
    from membench_eval.models.loading import load_pipeline
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.plugins.mitigations import load_mitigations
    from membench_eval.store.run_store import RunStore

    from membench_eval.suites import get_suite  # looked up at call time (tests substitute suites)
    if args.store is None:
        raise CliError("the following argument is required: --store DIR (the run store)")
    if args.limit is not None and args.limit < 0:
        raise CliError("--limit must be >= 0")
    methods = load_mitigations(args.method, args.method_name, args.param)
    try:
        from membench_eval.runtime import select_device

        select_device(args.device)
    except RuntimeError as exc:
        raise CliError(str(exc)) from None
    suite = get_suite(args.suite, args.data_dir)
    try:
        settings = GenerationSettings.for_suite(
            suite, batch_size=args.batch_size, seed=args.seed, num_inference_steps=args.steps
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    roles = ROLES if args.role == "all" else (args.role,)
    requests = suite_requests(suite, settings, roles, args.limit)
    if not requests:
        raise CliError(f"suite {args.suite!r} has no prompts for role(s) {', '.join(roles)}")
    pipe = load_pipeline(args.model or suite.model, revision=args.revision or (None if args.model else suite.revision),
                         device=args.device)
    store = RunStore(args.store)
    try:
        for method in methods:
            try:
                report = generate(pipe, requests, method, settings, store, progress=not args.no_progress)
            except GenerationInterrupted as exc:
                print(exc.report.summary(), file=sys.stderr)
                raise
            print(f"{report.summary()} -> {store.root}")
    finally:
        store.close()
    return 0
