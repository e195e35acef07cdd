"""``membench extract``: training-data extraction from an unconditional diffusion model (SIDE, Chen
et al. 2024, arXiv 2410.02467), next to plain sampling at the same number of generated images.

Runs ``--method`` (a bundled name, ``side`` or ``plain``, or a .py file defining one
``ExtractionMethod``) and, unless it is plain itself, the plain-sampling baseline, each for
``--seeds`` seeds of ``--n`` generated images; prints the table of AMS/UMS per SSCD band (low < 0.5,
mid 0.5-0.6, high > 0.6) with 95% intervals over seeds and writes ``<out>/<suite>.extract.md`` and
``.extract.json``. Every stage (pool, embeddings, clusters, classifier, generations) is cached in the
run store (``--store``), so a rerun or a resumed run reuses what is done.

Example (the bundled tiny 32x32 model; a few minutes on one CPU thread)::

    membench extract --suite mini-uncond --method side --pool 128 --seeds 3
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "extract",
        help="extract training images from an unconditional model (SIDE vs plain sampling, AMS/UMS)",
        description=__doc__.split("\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--suite", required=True,
                   help="unconditional suite: mini-uncond, or a suite .toml (model, training_images, ...)")
    p.add_argument("--method", default="side", help="side, plain, or an extraction method .py file (default: side)")
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="method parameter (repeatable)")
    p.add_argument("--pool", type=int, default=None, metavar="N", help="SIDE's pool size (its 'pool' parameter)")
    p.add_argument("--n", type=int, default=64, metavar="N", help="generated images per seed, for every method (default 64)")
    p.add_argument("--seeds", type=int, default=3, metavar="K", help="seeds 0..K-1: intervals are over these (default 3)")
    p.add_argument("--no-baseline", action="store_true", help="do not run plain sampling beside the method")
    p.add_argument("--out", type=Path, default=Path("leaderboard"), metavar="DIR",
                   help="where <suite>.extract.md and .extract.json go (default: leaderboard)")
    p.add_argument("--store", default=None, metavar="DIR", help="run store (default: the user cache's runs/)")
    p.add_argument("--sscd", default="disc_mixup_onnx", choices=("disc_mixup_onnx", "disc_large"),
                   help="SSCD backend for similarities (default: disc_mixup_onnx, offline)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of the table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import time

    from membench_eval.cli import CliError
    from membench_eval.extraction.run import ExtractionSettings, Runner, resolve_method
    from membench_eval.extraction.suite import get_uncond_suite
    from membench_eval.extraction.table import render_markdown, table_rows, write_outputs
    from membench_eval.paths import cache_dir

    params = list(args.param)
    if args.pool is not None:
        if any(p.partition("=")[0].strip() == "pool" for p in params):
            raise CliError("--pool and --param pool=... both given; give one")
        params.append(f"pool={args.pool}")
    method = resolve_method(args.method, params)
    suite = get_uncond_suite(args.suite)
    settings = ExtractionSettings(n_generated=args.n, seeds=args.seeds, sscd_backend=args.sscd, device=args.device)
    store = Path(args.store) if args.store else cache_dir() / "runs"
    t0 = time.time()
    runner = Runner(suite, settings, store, progress=not args.no_progress)
    methods = [method] if args.no_baseline or method.name == "plain" else [resolve_method("plain"), method]
    results = [runner.run(m) for m in methods]
    md, js = write_outputs(results, args.out, suite.name)
    if args.json:
        print(json.dumps(table_rows(results), indent=1))
    else:
        print(render_markdown(results))
        print(f"wrote {md} and {js} ({time.time() - t0:.0f} s; store {store})")
    return 0
