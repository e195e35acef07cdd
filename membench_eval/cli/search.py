"""``membench search``: MemBench's MCMC trigger-prompt search (Algorithm 1) and augmentation (Algorithm 2).

Algorithm 1 (default): ``--chains`` Gibbs chains over ``--length`` word slots, each step scoring
the masked LM's ``--top-k`` words with Wen's single-step signal and sampling from
softmax(score / T); then the best prompt of every chain is generated ``--images`` times and the
images are clustered by SSCD (DBSCAN, eps 0.5, min_samples 3) into memorized-image candidates.
Algorithm 2 (``--augment PROMPT``): one chain per word position of a known trigger prompt, top 100
prompts, a diverse 20, as JSON.

Everything is logged as it happens under ``--out``; re-running the same command after a kill
continues the same chains (and skips finished clusterings). Layout::

    OUT/chains/chain_0000.jsonl            one line per chain state (resumable)
    OUT/candidates/chain_0000/cluster_<k>/<i>.png, manifest.json
    OUT/search.json                        per chain: best prompt, score, clusters
    OUT/augment/<n>/chains/*.jsonl, augment.json      (--augment)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from membench_eval.search.mini_mlm import MINI_MLM_SPEC
from membench_eval.search.mlm import DEFAULT_MLM, DEFAULT_PREFIX, default_mlm


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search",
        help="MCMC search for memorization trigger prompts (MemBench Algorithms 1 and 2)",
        description=__doc__.split("\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--suite", required=True, help="suite whose model to search (e.g. mini, sd1)")
    p.add_argument("--out", type=Path, required=True, help="output directory (re-use it to resume)")
    p.add_argument("--steps", type=int, default=None, help="iterations per chain (reference: 150; augmentation: 50)")
    p.add_argument("--chains", type=int, default=1, help="independent chains (Algorithm 1)")
    p.add_argument("--mlm", default=None,
                   help=f"masked LM: hub id, local directory, {MINI_MLM_SPEC} (the mini suite's trained word-level "
                   f"BERT) or tiny:<suite> (offline random word-level BERT, for tests); default {DEFAULT_MLM}, "
                   f"{MINI_MLM_SPEC} for the mini suite")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="MLM context before the slots, not sent to the diffusion model")
    p.add_argument("--stop-words", type=Path, default=None, metavar="FILE", help="words never proposed (one per line)")
    p.add_argument("--length", type=int, default=8, help="word slots (Algorithm 1)")
    p.add_argument("--top-k", type=int, default=200, help="candidate words per step")
    p.add_argument("--temperature", type=float, default=None, help="softmax temperature (default 0.1; augmentation 1.5)")
    p.add_argument("--fixed-latent", action="store_true",
                   help="score every step on the same latent (the reference draws a new shared latent each step)")
    p.add_argument("--seed", type=int, default=0, help="search seed (chains, positions, latents, images)")
    p.add_argument("--batch-size", type=int, default=50, help="prompts per UNet call when scoring")
    p.add_argument("--images", type=int, default=50, help="images generated per best prompt for clustering (0 = skip)")
    p.add_argument("--eps", type=float, default=0.5, help="DBSCAN eps on 1 - SSCD")
    p.add_argument("--min-samples", type=int, default=3, help="DBSCAN min_samples")
    p.add_argument("--sscd-backend", default=None, help="SSCD backend for clustering (default: the suite's)")
    p.add_argument("--augment", action="append", default=None, metavar="PROMPT",
                   help="run Algorithm 2 from this known trigger prompt (repeatable) instead of Algorithm 1")
    p.add_argument("--early-stop", type=float, default=3.0,
                   help="augmentation: stop a chain after 3 chosen scores below this (reference: 3; negative = never)")
    p.add_argument("--model", default=None, help="override the suite's model (hub id or local diffusers directory)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from membench_eval.cli import CliError
    from membench_eval.models.loading import load_pipeline
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.search.gibbs import diffusion_scorer
    from membench_eval.search.mlm import load_masked_lm, read_stop_words
    from membench_eval.suites import get_suite

    for name in ("chains", "length", "top_k", "batch_size"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name.replace('_', '-')} must be >= 1")
    if args.steps is not None and args.steps < 0:
        raise CliError("--steps must be >= 0")
    suite = get_suite(args.suite)
    settings = GenerationSettings.for_suite(suite)
    mlm_spec = args.mlm or default_mlm(suite.name)
    stop_words = read_stop_words(args.stop_words) if args.stop_words else ()
    mlm = load_masked_lm(mlm_spec, device=args.device, prefix=args.prefix, stop_words=stop_words)
    pipe = load_pipeline(args.model or suite.model, revision=None if args.model else suite.revision, device=args.device)
    scorer = diffusion_scorer(pipe, batch_size=args.batch_size, height=settings.height, width=settings.width)
    progress = not args.no_progress
    args.out.mkdir(parents=True, exist_ok=True)

    if args.augment:
        return _augment(args, mlm, scorer, progress)

    from membench_eval.search.gibbs import ChainConfig, GibbsChain

    temperature = 0.1 if args.temperature is None else args.temperature
    try:
        config = ChainConfig(length=args.length, top_k=args.top_k, temperature=temperature,
                             seed=args.seed, resample_latent=not args.fixed_latent)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    steps = 150 if args.steps is None else args.steps
    summary = {"suite": suite.name, "mlm": mlm_spec, "config": config.as_dict(), "steps": steps, "chains": []}
    embed = None
    for c in range(args.chains):
        # One chain at a time, clustered as soon as it ends: a long search yields candidates early.
        chain = GibbsChain(mlm, scorer, config, args.out / "chains" / f"chain_{c:04d}.jsonl", chain_index=c)
        res = chain.run(steps, progress=progress)
        entry = {"chain": res.chain_id, "log": f"chains/{res.log_path.name}", "steps": len(res.steps),
                 "best_prompt": res.best_prompt, "best_score": res.best_score if res.best_prompt else None,
                 "final_prompt": res.final_prompt}
        if args.images > 0 and res.best_prompt:
            if embed is None:
                embed = _load_embedder(args.sscd_backend or suite.sscd_backend, args.device)
            manifest = _cluster(args, pipe, embed, settings, res)
            entry.update(clusters=manifest["cluster_sizes"], candidates=f"candidates/{res.chain_id}")
        summary["chains"].append(entry)
        _write_json(args.out / "search.json", summary)
        print(f"{res.chain_id}: best {res.best_score:.4g} {res.best_prompt!r}"
              + (f" clusters {entry['clusters']}" if "clusters" in entry else ""))
    _write_json(args.out / "search.json", summary)
    print(f"wrote {args.out / 'search.json'}", file=sys.stderr)
    return 0


def _load_embedder(backend: str, device: str | None):  # noqa: ANN202
    from membench_eval.metrics.sscd import load_sscd

    model = load_sscd(backend, device=device)
    return model.embed


def _cluster(args: argparse.Namespace, pipe, embed, settings, res) -> dict:  # noqa: ANN001
    from membench_eval.search.cluster import cluster_candidates

    gen = {"num_inference_steps": settings.num_inference_steps, "guidance_scale": settings.guidance_scale,
           "height": settings.height, "width": settings.width}
    return cluster_candidates(
        pipe, embed, res.best_prompt, res.best_score, args.out / "candidates" / res.chain_id,
        n_images=args.images, seed=args.seed, eps=args.eps, min_samples=args.min_samples,
        batch_size=min(settings.batch_size, 16), progress=not args.no_progress, meta={"chain": res.chain_id}, **gen,
    )


def _augment(args: argparse.Namespace, mlm, scorer, progress: bool) -> int:  # noqa: ANN001
    from membench_eval.search.augment import AugmentConfig, augment_prompt

    config = AugmentConfig(
        steps=50 if args.steps is None else args.steps, top_k=args.top_k, temperature=1.5 if args.temperature is None else args.temperature,
        seed=args.seed, early_stop_threshold=None if args.early_stop < 0 else args.early_stop,
        resample_latent=not args.fixed_latent,
    )
    index = []
    for n, prompt in enumerate(args.augment):
        result = augment_prompt(mlm, scorer, prompt, args.out / "augment" / f"{n:03d}", config, progress=progress)
        index.append({"origin": prompt, "result": f"augment/{n:03d}/augment.json", "n_candidates": result["n_candidates"]})
        best = result["top"][0] if result["top"] else None
        print(f"{prompt!r}: {result['n_candidates']} candidates, {len(result['diverse'])} diverse"
              + (f"; best {best['score']:.4g} {best['prompt']!r} ({best['changed_words']} words changed)" if best else ""))
    _write_json(args.out / "augment.json", {"prompts": index})
    return 0


def _write_json(path: Path, obj: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
