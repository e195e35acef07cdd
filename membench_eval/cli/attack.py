"""``membench attack mitigations/m.py --suite S --budget N``: does a method survive an adaptive attacker?

For each memorized image of the suite (or --max-images of them, evenly spaced), MemBench's
Algorithm 2 searches new trigger prompts from the image's trigger prompt, scored by Wen's
single-step signal through the method's UNet-call hooks (prompt rewrites act after submission),
under a fixed budget of scored candidates per image, the same for base and every method. The best
prompts are generated through the mitigated pipeline into the run store and scored by SSCD.
Writes ``<out>/<suite>.attack.md`` and ``.json``: fixed-prompt and attacked Top-1 SSCD, images
re-extracted (SSCD > 0.5), the paired difference, with 95% bootstrap intervals over images.
Everything is content-addressed in the run store: a rerun makes no UNet call.
"""

from __future__ import annotations

import argparse
import sys

from membench_eval.evaluation.options import add_cli_options


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "attack", help="adaptive attack: search new trigger prompts against a mitigation (MemBench Algorithm 2)",
        description=__doc__.split("\n", 2)[2] if __doc__ else None, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # The options it shares with `membench run` and `pytest --membench-attack` come from the option table.
    add_cli_options(p, ["files", "suite", "param", "attack-budget"], files={"nargs": "+"},
                    attack_budget={"flag": "--budget"})
    p.add_argument("--images-per-prompt", type=int, default=2, metavar="K", help="images per attack prompt (default 2)")
    p.add_argument("--prompts", type=int, default=None, metavar="M",
                   help="attack prompts generated per image (default: the suite's images per trigger prompt / K)")
    p.add_argument("--trigger-prompts", type=int, default=1, metavar="T", help="trigger prompts per image to start from")
    p.add_argument("--max-images", type=int, default=None, metavar="N", help="evenly spaced subset of memorized images")
    p.add_argument("--top-k", type=int, default=200, help="candidate words per step, at most (reference: 200)")
    p.add_argument("--steps", type=int, default=50, help="steps per chain, at most (reference: 50)")
    p.add_argument("--temperature", type=float, default=1.5, help="softmax temperature (reference: 1.5)")
    p.add_argument("--whitebox-steps", type=int, default=None, metavar="S",
                   help="also the white-box variant: S Adam steps on the prompt embedding against the method "
                        "(reported separately; not for text-only methods such as RNA, RTA)")
    p.add_argument("--whitebox-budget", type=float, default=None, metavar="R",
                   help="with --whitebox-steps: keep every token of the embedding within R x its own L2 norm of "
                        "the encoded prompt (Finding Dori's small perturbations; aimed at NeMo-style model edits)")
    p.add_argument("--mlm", default=None, help="proposal masked LM (default: mini-mlm on mini, bert-base-uncased)")
    add_cli_options(p, ["out", "store", "seed", "model", "device", "no-progress"],
                    out={"help": "output directory of <suite>.attack.md/.json (default: leaderboard)"})
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from membench_eval.attack.run import AttackOptions
    from membench_eval.attack.table import attack_methods, run_attack, to_markdown, write_table
    from membench_eval.evaluation import EvalOptions, Evaluation

    options = AttackOptions(
        budget=args.budget, images_per_prompt=args.images_per_prompt, prompts=args.prompts,
        trigger_prompts=args.trigger_prompts, max_images=args.max_images, top_k=args.top_k, max_steps=args.steps,
        temperature=args.temperature, mlm=args.mlm, progress=not args.no_progress,
    )
    ev = Evaluation(EvalOptions(suite=args.suite, model=args.model, store_dir=args.store, out_dir=args.out,
                                device=args.device, seed=args.seed, progress=not args.no_progress))
    specs = attack_methods(ev, args.files, args.param)
    ev.preflight()
    if args.whitebox_budget is not None and args.whitebox_steps is None:
        from membench_eval.cli import CliError

        raise CliError("--whitebox-budget needs --whitebox-steps")
    table = run_attack(ev, specs, options, whitebox_steps=args.whitebox_steps, whitebox_budget=args.whitebox_budget)
    md_path, json_path = write_table(table, args.out, ev.suite.result_key, ev.store.root)
    print(to_markdown(table))
    c = table.metadata["counts"]
    print(f"membench: {c['searches_run']} searches run, {c['searches_reused']} reused; {c['generated']} images "
          f"generated, {c['reused']} reused from the store", file=sys.stderr)
    print(f"wrote {md_path} and {json_path}")
    return 0
