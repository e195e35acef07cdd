"""``membench attribute``: which words of a prompt carry the copy (word-level trigger attribution).

For each word (and each BPE token of a word split into several) of a suite prompt (``--prompt-id``)
or any text (``--prompt``): the drop in Top-1 SSCD to the prompt's memorized image(s) and in Wen
et al.'s single-step detection signal when the word is removed and when it is replaced by a neutral
word, over ``--images`` seeded images (mean and 95% bootstrap interval over images), and Wen et
al.'s gradient attribution; then a greedy minimal trigger. With a caption list (``--captions``; the
mini suite's training captions by default) each word's duplication score (signed Dunning G^2 of the
word in the memorized image's captions vs the whole list) and the Spearman correlation of
duplication with the measured effect. Prints the table; writes ``OUT/<prompt id>.png`` (the prompt
with words shaded by effect), ``.json`` and ``.md``. Images, scores and the result are stored in
the run store (``--store``): a rerun is free. ``--probe KEYWORD`` runs the object-level duplication
probe instead (``analysis.probe``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("attribute", help="word-level trigger attribution of a prompt (which words carry the copy)",
                              description=__doc__.split("\n", 2)[2] if __doc__ else None,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", required=True, help="suite whose model and memorized images to use, e.g. mini or sd1")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt-id", default=None, help="a prompt id of the suite (e.g. mini-t000)")
    what.add_argument("--prompt", default=None, metavar="TEXT", help="any prompt text (Top-1 SSCD to any memorized image)")
    what.add_argument("--probe", default=None, metavar="KEYWORD", help="object-level duplication probe for KEYWORD")
    p.add_argument("--images", type=int, default=4, metavar="K", help="seeded images per prompt variant (default 4)")
    p.add_argument("--neutral", default="thing", help="the word a word is replaced by (default: thing)")
    p.add_argument("--threshold", type=float, default=0.5, help="Top-1 SSCD the minimal trigger must keep (default 0.5)")
    p.add_argument("--no-minimal", action="store_true", help="skip the greedy minimal-trigger search")
    p.add_argument("--no-tokens", action="store_true", help="skip the per-token removals of multi-token words")
    p.add_argument("--captions", type=Path, default=None, metavar="FILE",
                   help="training captions (.txt, .jsonl, .json, .parquet); default for mini: its training_captions.json")
    p.add_argument("--probe-images", type=int, default=16, metavar="N", help="--probe: images per side (default 16)")
    p.add_argument("--out", type=Path, default=Path("attribution"), metavar="DIR", help="output folder (default: attribution)")
    p.add_argument("--store", default=None, metavar="DIR", help="run store (default: the user cache)")
    p.add_argument("--seed", type=int, default=0, help="run seed (the images' seeds derive from it)")
    p.add_argument("--model", default=None, help="override the suite's model (hub id or local diffusers directory)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of the table")
    p.set_defaults(func=run)


def _target(suite, args: argparse.Namespace):  # noqa: ANN001, ANN202
    """(text, prompt id, reference ids, what the references are)."""
    from membench_eval.errors import DataError

    prompts = [p for s in suite.prompt_sets() for p in s.prompts]
    everything = sorted(suite.memorized)
    if args.prompt_id is not None:
        found = next((p for p in prompts if p.prompt_id == args.prompt_id), None)
        if found is None:
            known = ", ".join(p.prompt_id for p in prompts[:3])
            raise DataError("--prompt-id", f"{args.prompt_id!r} is not a prompt of suite {suite.name!r} "
                            f"({len(prompts)} prompts: {known}, ...)")
    else:
        found = next((p for p in prompts if p.text == args.prompt), None)
    if found is not None and found.memorized_ids:
        return found.text, found.prompt_id, list(found.memorized_ids), "the prompt's memorized image(s)"
    text = found.text if found is not None else args.prompt
    pid = found.prompt_id if found is not None else "text-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return text, pid, everything, "any memorized image of the suite"


def _scorer(args: argparse.Namespace, suite):  # noqa: ANN001, ANN202
    from membench_eval.analysis.effects import ImageScorer
    from membench_eval.errors import DataError
    from membench_eval.models.loading import load_pipeline
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.metrics.sscd import load_sscd, reference_embeddings
    from membench_eval.paths import cache_dir
    from membench_eval.store.run_store import RunStore
    from membench_eval.suites.references import reference_paths

    paths, _ = reference_paths(suite)
    if not paths:
        raise DataError(f"suite {suite.name}", "no memorized reference image is available "
                        f"(membench data fetch-references --suite {suite.cli_name})")
    settings = GenerationSettings.for_suite(suite, seed=args.seed)
    pipe = load_pipeline(args.model or suite.model, revision=None if args.model else suite.revision, device=args.device)
    sscd = load_sscd(suite.sscd_backend, device=args.device)
    store = RunStore(Path(args.store) if args.store else cache_dir() / "runs")
    return ImageScorer(pipe, sscd, reference_embeddings(sscd, paths), store, settings, progress=not args.no_progress), paths


def _captions(args: argparse.Namespace, suite):  # noqa: ANN001, ANN202
    from membench_eval.analysis.duplication import load_captions
    from membench_eval.paths import MINI_CAPTIONS
    from membench_eval.suites.mini import MINI_SUITES

    if args.captions is not None:
        return load_captions(args.captions)
    if suite.name in MINI_SUITES:
        return load_captions(MINI_CAPTIONS)
    return None


def run(args: argparse.Namespace) -> int:
    from membench_eval.cli import CliError
    from membench_eval.suites import get_suite

    if args.images < 1 or args.probe_images < 1:
        raise CliError("--images and --probe-images must be >= 1")
    suite = get_suite(args.suite)
    captions = _captions(args, suite)  # a bad caption file fails before any model loads
    if args.probe is not None:
        from membench_eval.analysis.probe import print_probe, run_probe

        scorer, _ = _scorer(args, suite)
        print_probe(run_probe(scorer, suite, args.probe, n_images=args.probe_images, threshold=args.threshold), args.out)
        return 0
    return _attribute(args, suite, captions)


def _attribute(args: argparse.Namespace, suite, captions) -> int:  # noqa: ANN001
    import time

    from membench_eval.analysis.attribution import AttributionConfig, run_attribution
    from membench_eval.analysis.minimal import common_words
    from membench_eval.analysis.render import attribution_table, render_picture, token_table
    from membench_eval.analysis.words import split_prompt
    from membench_eval.cli import CliError

    start = time.perf_counter()
    text, pid, refs, refs_label = _target(suite, args)
    split_prompt(text)  # a one-word prompt fails before any model loads
    try:
        config = AttributionConfig(images=args.images, neutral=args.neutral, tokens=not args.no_tokens,
                                   minimal_threshold=args.threshold, minimal=not args.no_minimal)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    scorer, _ = _scorer(args, suite)
    result, reused = run_attribution(scorer.pipe, scorer, text, pid, refs, config)
    extra = _duplication(result, captions, suite) if captions is not None else {}
    result = {**result, **extra, "common_words": common_words(suite, refs) if len(refs) < len(suite.memorized) else {}}
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", pid)
    args.out.mkdir(parents=True, exist_ok=True)
    picture = render_picture(result, args.out / f"{safe}.png")
    dup = {w: s["g2"] for w, s in extra.get("duplication", {}).items()} if extra else None
    table = attribution_table(result, dup)
    tokens = token_table(result)
    (args.out / f"{safe}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (args.out / f"{safe}.md").write_text(f"# {pid}: {text}\n\n```\n{table}\n```\n" + (f"\n```\n{tokens}\n```\n" if tokens else ""),
                                         encoding="utf-8")
    if args.json:
        print(json.dumps(result, indent=1, ensure_ascii=False))
        return 0
    base = result["base"]
    print(f"{pid}: {text!r}\nTop-1 SSCD to {refs_label}: {base['top1']:.3f} over K = {args.images} images; "
          f"effects are drops (base - variant), mean [{result['interval']}]")
    print(table)
    if tokens:
        print("\nper BPE token of words split into several:\n" + tokens)
    minimal = result.get("minimal")
    if minimal:
        print(f"\nminimal trigger (greedy removal, Top-1 >= {minimal['threshold']:g}): " + (
            f"{minimal['trigger']!r} ({minimal['n_words']} word(s)), Top-1 {minimal['top1']:.3f}" if minimal["reached"]
            else f"none: the full prompt's Top-1 {minimal['base_top1']:.3f} is below the threshold"))
    for image_id, common in result["common_words"].items():
        print(f"words common to all {common['n_prompts']} suite prompt(s) of {image_id}: {' '.join(common['words'])}")
    if "correlation" in result:
        for name, c in result["correlation"].items():
            print(f"Spearman(duplication G2, {name}) over {c['n_words']} words: {c['rho']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}]")
    state = "reused from the store" if reused else f"{scorer.generated} images generated, {scorer.reused} reused"
    print(f"wrote {picture} ({state}; {time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return 0


def _duplication(result: dict, captions, suite) -> dict:  # noqa: ANN001
    """Duplication score of each word of the prompt, and its rank correlation with the effects."""
    from membench_eval.analysis.duplication import duplication_scores, rank_correlation

    scores = duplication_scores(captions, suite, result["references"])
    first: dict[str, dict] = {}
    for w in result["words"]:
        first.setdefault(w["word"].lower(), w)
    dup = {w: scores.get(w, {"g2": 0.0, "pmi": None, "in_image": 0, "total": 0}) for w in first}
    g2 = [dup[w]["g2"] for w in first]
    corr = {name: rank_correlation(g2, [first[w][a][b]["mean"] if b else first[w][a]["mean"] for w in first])
            for name, (a, b) in {"SSCD drop removed": ("removed", "sscd"), "signal drop removed": ("removed", "signal"),
                                 "grad": ("grad", None)}.items()}
    return {"duplication": dup, "captions": captions.source, "correlation": corr}
