"""Cost scaling on CPU (issue 16, item 4), measured and printed side by side in one run.

1. Host memory is flat in the number of prompts: a synthetic suite of 300 vs 3000 tiny prompts
   (half trigger prompts pointing at synthetic reference images, half general; 1 image each) is
   generated and scored end to end through the library (``Evaluation.plan`` / ``evaluate_plan`` /
   ``leaderboard`` / ``write_report``) on the random tiny pipeline, with the real SSCD
   (disc_mixup_onnx, one thread) and a tiny open_clip CLIP + the LAION aesthetic head. Each size
   runs in its own subprocess, so each peak RSS is that run's alone. Target: peak(3000) /
   peak(300) <= 1.2.
2. A cached rerun of a 35,000-image store (3000 trigger prompts x 10 + 5000 general x 1, rows
   written by the store's own writer, tiny PNGs, SSCD similarities to all 151 references like
   MemBench SD1) builds the leaderboard in <= 60 s: plan + evaluate_plan (everything reused) +
   leaderboard + write_report, in a fresh process, with the CLIP/aesthetic scorers replaced by
   stand-ins that raise if asked to score (so a cache miss cannot hide). Also printed: what
   hashing real 512x512 PNGs would add (the store checks each PNG's sha256 once per process).
3. The other way images get scored: ``Evaluation.score_keys`` on images stored without scores
   (``membench generate``, then ``membench run``; or ``overlap_scoring=False``), 40 vs 400 images
   at 512x512, so memory held per image is visible (tiny images would hide it). Same target.

4. ``--table [35k 140k 805k]`` (issue 34): cached reruns side by side, with growth ratios: one
   config of 35,000 images, four times its prompts (140,000), and the paper's Table 3 as a synthetic
   sweep (base, RNA x6, RTA x6, Wen x6, Ren x4 from ``mitigations/``: 23 configs, 805,000 images),
   where the leaderboard of every stored config is rebuilt, and a one-config leaderboard (base
   only) on the same store shows its cost flat in the other configs. Each store is built once per
   --workdir (resumable: a killed build writes only what is missing; a chunk's score rows go in one
   ``put_scores``); rerun 1 also records PNG verifications and per-prompt aggregates in the store's
   index, rerun 2 is the cached rerun. Targets: <= 60 s and <= 2 GiB of peak RSS at 805k.

   Measured (issue 34; a shared 2-core machine, load 4-6, so wall seconds are inflated: CPU seconds
   beside them; the 805k row in this run, the 35k / 140k rows (--resume) by a run 40 minutes
   earlier, of the code before the per-prompt cache-key and streamed-JSON commits):

     size   images  cfg  rerun1 s  rerun2 s  CPU s  peak MiB  1-cfg s  x images  x time  x CPU  x RSS
      35k    35000    1       8.0       7.1    3.5      1120      7.1       1.0    1.00   1.00   1.00  pass
     140k   140000    1      22.4      23.8   11.4      1439     23.8       4.0    3.35   3.24   1.29  pass
     805k   805000   23     507.4      54.3   53.0      1669      3.7      23.0    7.62  15.05   1.49  pass

   805k rerun 2: plan 5.1 s, evaluate_plan 36.5, leaderboard 1.8, write_report 10.5; the one-config
   leaderboard on the 805k store: 3.6 s CPU (35k alone: 3.5): flat in the other configs. Rerun 1
   (first leaderboard: 805,000 PNGs hashed once, 184,000 per-prompt aggregates computed from the
   score rows): 507 s. Building the stores with the store's own writer: 35k 139 s, 140k 784 s,
   805k 3566 s wall (1630 s CPU, 2.0 ms per image; 6.9 GB of JSONL; an index of 11 GB as built
   then, before score rows were kept compressed in it: 1.09x the log since, was 1.6x).

Models are built before the timer starts (the pipeline only names the image keys in a cached
run). Everything runs with one thread; the store lives in a temporary folder (or --workdir).

    python bench/cost_scaling.py [--sizes 300 3000] [--trigger 3000 --general 5000] [--score-after 40 400]
                                 [--profile] [--workdir DIR] [--configs N] [--one-config]
    python bench/cost_scaling.py --table [35k 140k 805k 3.5k 80k] [--workdir DIR] [--resume]

About 6-7 minutes on a quiet 2-core machine, 10 under heavy load (most of it: SSCD of the 3000
images on one thread).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

N_REFS = 151  # MemBench SD1's memorized images: every SSCD score row holds one similarity per reference
RSS_TARGET = 1.2
REBUILD_TARGET_S = 60.0


# --- measuring ------------------------------------------------------------------------------------


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def cpu_seconds() -> float:
    """This process's CPU time (user + system): on a shared, loaded machine wall seconds mostly
    measure the neighbours; CPU seconds what the rerun itself costs."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# --- the synthetic suite and models ---------------------------------------------------------------


def synthetic_suite(name: str, workdir: Path, n_trigger: int, n_general: int, trigger_images: int,
                    size: int, steps: int, model: str = "tiny-random-in-memory") -> Any:
    """A suite built in code: ``N_REFS`` small reference PNGs; trigger prompt i points at reference
    i % N_REFS (every 7th at a second one too); general prompts point at none. ``model``: the name
    stored configs must match (``in-memory``, the tiny pipeline's identity, for a sweep)."""
    import numpy as np
    from PIL import Image

    from membench_eval.suites.types import MemorizedImage, Prompt, PromptSet, Suite

    refs = workdir / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    memorized = {}
    for j in range(N_REFS):
        rid = f"m{j:012x}"
        path = refs / f"{rid}.png"
        if not path.exists():
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
        memorized[rid] = MemorizedImage(rid, str(path))
    ids = sorted(memorized)
    trigger = tuple(Prompt(f"t{i:05d}", f"a photo of memorized thing number {i}",
                           (ids[i % N_REFS],) + ((ids[(i + 1) % N_REFS],) if i % 7 == 0 else ()))
                    for i in range(n_trigger))
    general = tuple(Prompt(f"g{i:05d}", f"a cat on a sofa, caption {i}") for i in range(n_general))
    return Suite(name, model, PromptSet("trigger", trigger, trigger_images),
                 PromptSet("general", general, 1), memorized, reference_dir=refs,
                 generation_defaults={"height": size, "width": size, "num_inference_steps": steps},
                 sscd_backend="disc_mixup_onnx")


def one_thread_sscd() -> Any:
    """The disc_mixup_onnx scorer with onnxruntime held to one thread (it ignores OMP_NUM_THREADS)."""
    import onnxruntime as ort

    from membench_eval.metrics.sscd import load_sscd

    sscd = load_sscd("disc_mixup_onnx", device="cpu")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sscd.session = ort.InferenceSession(str(sscd.weights), sess_options=opts, providers=["CPUExecutionProvider"])
    return sscd


def tiny_quality() -> dict[str, Any]:
    """CLIP and aesthetic scorers on a tiny random open_clip model (the tests' stand-in; the real
    ViT-g-14 cannot be downloaded here). The aesthetic head is the real LAION one when present."""
    import open_clip
    import torch

    from membench_eval.metrics.aesthetic import AestheticScorer
    from membench_eval.metrics.clip_score import ClipScorer

    torch.manual_seed(0)
    model = open_clip.CLIP(
        embed_dim=768, vision_cfg={"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}).eval()
    preprocess = open_clip.image_transform(32, is_train=False)
    out: dict[str, Any] = {"clip": ClipScorer.from_open_clip(model, preprocess, open_clip.get_tokenizer("ViT-g-14"),
                                                             name="tiny")}
    data = Path(os.environ.get("MEMBENCH_DATA_DIR") or REPO.parent / "shared" / "data")
    head = data / "membench" / "sac+logos+ava1-l14-linearMSE.pth"
    if head.is_file():
        out["aesthetic"] = AestheticScorer.from_open_clip(model, preprocess, head=head, name="tiny")
    else:
        out["aesthetic"], out["aesthetic_reason"] = None, f"aesthetic head not found at {head}"
    return out


class CachedOnlyScorer:
    """A CLIP/aesthetic stand-in with the tiny scorer's identity that refuses to score: in the
    cached rerun every score must come from the store."""

    def __init__(self, scorer: Any) -> None:
        self._metadata = scorer.metadata()

    def metadata(self) -> dict[str, Any]:
        return dict(self._metadata)

    def score(self, *args: Any, **kw: Any) -> Any:
        raise AssertionError("cached rerun asked to score an image: its score was not reused from the store")


def make_evaluation(suite: Any, workdir: Path, models: dict[str, Any], batch_size: int,
                    stored_baselines: bool = True) -> Any:
    """An Evaluation of ``suite`` with the models injected (as the tests do); ``stored_baselines``
    False: a one-config leaderboard (base only), whatever else the store holds."""
    from membench_eval.evaluation import EvalOptions, Evaluation

    ev = Evaluation(EvalOptions(suite=suite.name, store_dir=str(workdir / "store"), out_dir=str(workdir / "out"),
                                device="cpu", batch_size=batch_size, stored_baselines=stored_baselines), suite=suite)
    ev.models.put("pipeline", models["pipe"])
    ev.models.put("sscd", models["sscd"])
    ev.quality_scorers = dict(models["quality"])
    return ev


def load_models(size: int) -> dict[str, Any]:
    import torch

    from membench_eval.models.tiny import build_random_tiny_pipeline

    torch.set_num_threads(1)
    return {"pipe": build_random_tiny_pipeline(seed=0, sample_size=size), "sscd": one_thread_sscd(),
            "quality": tiny_quality()}


def full_run(ev: Any) -> dict[str, float]:
    """plan -> evaluate_plan -> leaderboard -> write_report (what ``membench run`` does); seconds per phase."""
    from membench_eval.report.artefacts import write_report

    times, t = {}, time.perf_counter()
    plan = ev.plan([], [])
    times["plan"], t = time.perf_counter() - t, time.perf_counter()
    results = ev.evaluate_plan(plan)
    times["evaluate_plan"], t = time.perf_counter() - t, time.perf_counter()
    board = ev.leaderboard(plan, results)
    times["leaderboard"], t = time.perf_counter() - t, time.perf_counter()
    write_report(board, ev.options.out_dir, store=ev.store, references=ev.references[0])
    times["write_report"] = time.perf_counter() - t
    return times


# --- children (one measurement per process) -------------------------------------------------------


def child_rss(args: argparse.Namespace) -> dict[str, Any]:
    import shutil

    workdir = Path(args.workdir)
    shutil.rmtree(workdir / "store", ignore_errors=True)  # a fresh run (a --workdir may be reused)
    models = load_models(args.size)
    suite = synthetic_suite("cost-rss", workdir, args.prompts // 2, args.prompts - args.prompts // 2, 1,
                            args.size, args.steps)
    ev = make_evaluation(suite, workdir, models, args.batch_size)
    _ = ev.reference_embeddings  # SSCD of the references (part of setup, like the models)
    setup_rss, setup_peak = rss_mib(), peak_rss_mib()
    t0 = time.perf_counter()
    phases = full_run(ev)
    return {"prompts": args.prompts, "seconds": time.perf_counter() - t0, "phases": phases, "counts": ev.counts,
            "setup_rss_mib": setup_rss, "setup_peak_mib": setup_peak, "peak_rss_mib": peak_rss_mib()}


def child_score_after(args: argparse.Namespace) -> dict[str, Any]:
    """``Evaluation.score_keys`` on N stored but unscored 512x512 images (a store filled by
    ``membench generate``, or ``overlap_scoring=False``): the peak RSS it adds."""
    import numpy as np
    import torch
    from PIL import Image

    torch.set_num_threads(1)
    workdir = Path(args.workdir)
    models = {"pipe": None, "sscd": one_thread_sscd(),
              "quality": {"clip": None, "aesthetic": None, "clip_reason": "off", "aesthetic_reason": "off"}}
    ev = make_evaluation(synthetic_suite("cost-score", workdir, 10, 10, 1, 512, 1), workdir, models, 10)
    _ = ev.reference_embeddings
    rng = np.random.default_rng(0)
    keys = [f"{i:064x}" for i in range(args.prompts)]
    for i, key in enumerate(keys):  # photo-like: smooth noise, so PNG sizes are realistic
        base = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        ev.store.put_image(key, Image.fromarray(base).resize((512, 512), Image.BILINEAR), {"i": i})
    before = rss_mib()
    t0 = time.perf_counter()
    ev.score_keys(keys, ["a cat"] * len(keys))
    return {"images": len(keys), "seconds": time.perf_counter() - t0, "rss_before_mib": before,
            "peak_rss_mib": peak_rss_mib()}


def _store_suite(args: argparse.Namespace, workdir: Path) -> Any:
    # A sweep's configs join the leaderboard as stored configs of the suite's model, which must then
    # be named as the in-memory pipeline names itself (one config: the name main always used).
    model = "in-memory" if args.configs > 1 else "tiny-random-in-memory"
    return synthetic_suite("cost-rebuild", workdir, args.trigger, args.general, 10, args.size, args.steps, model)


def child_build(args: argparse.Namespace) -> dict[str, Any]:
    """Fill the store with every image and score row the cached rerun will look up, through the
    store's writer (``put_image`` / ``put_scores``), keyed exactly as the engine keys them.

    Resumable: a killed build is rerun on the same --workdir and writes only what is missing (each
    chunk's values come from a generator seeded by the chunk, so a rewritten score row equals the
    stored one). Fast enough for 805,000 images: the score rows of a chunk go in one ``put_scores``
    (one lock, one catch-up with the log, one index transaction), not one per image."""
    from membench_eval.evaluation import AESTHETIC_METRIC, CLIP_METRIC

    from membench_eval.evaluation.scoring import scorer_id  # the identity that keys CLIP/aesthetic rows

    workdir = Path(args.workdir)
    t0 = time.perf_counter()
    models = load_models(args.size)
    ev = make_evaluation(_store_suite(args, workdir), workdir, models, args.batch_size)
    plan = ev.plan([], [])
    expected = args.configs * sum(len(ps) * ev.settings.images_per_prompt(role) for role, ps in plan.prompts.items())
    before = len(ev.store)
    if before >= expected:  # built by an earlier run of this --workdir
        return {"images": before, "seconds": time.perf_counter() - t0, "jsonl_mib": _jsonl_mib(ev.store),
                "reused": True}
    ref_ids = sorted(ev.reference_embeddings)
    sscd_id, store, settings = ev.sscd.fingerprint, ev.store, ev.settings
    quality = {m: scorer_id(ev.quality_scorers[k]) for m, k in ((CLIP_METRIC, "clip"), (AESTHETIC_METRIC, "aesthetic"))
               if ev.quality_scorers.get(k) is not None}
    n = 0
    for c, config in enumerate(table3_configs(plan.methods[0].mitigation)[:args.configs]):
        n = _build_config(args, c, config, plan, models, store, settings, ref_ids, sscd_id, quality, n)
        print(f"config {c + 1}/{args.configs}: {n} images, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    written = len(store) - before
    store.close()
    return {"images": n, "written": written, "seconds": time.perf_counter() - t0, "jsonl_mib": _jsonl_mib(store)}


def table3_configs(base: Any) -> list[Any]:
    """MemBench's Table 3 sweep, 23 configs: base, then the bundled RNA, RTA, Wen and Ren sweeps
    (6 + 6 + 6 + 4 settings): the configs a stored-baselines leaderboard of the paper shows."""
    from membench_eval.plugins.mitigations import load_mitigations

    out = [base]
    for name in ("rna", "rta", "wen", "ren"):
        out += load_mitigations(str(REPO / "mitigations" / f"{name}.py"), None, ["sweep"])
    return out


BUILD_CHUNK = 1000  # images per chunk of the synthetic build (one put_scores call, one seeded generator)


def _build_config(args: argparse.Namespace, c: int, config: Any, plan: Any, models: dict[str, Any], store: Any,
                  settings: Any, ref_ids: list[str], sscd_id: str, quality: dict[str, str], n: int) -> int:
    """Write the missing images and score rows of config number ``c`` (keyed as the engine keys
    them), a chunk at a time; returns the count of images so far."""
    import numpy as np
    from PIL import Image

    from membench_eval.evaluation import CLIP_METRIC, SSCD_METRIC
    from membench_eval.generation.batch import method_source
    from membench_eval.generation.engine import _request_fields
    from membench_eval.generation.seeding import plan_requests
    from membench_eval.store.keys import image_key

    source = method_source(config)
    common = {"label": config.label(), "run_seed": settings.seed, "device": "cpu", "dtype": "float32",
              "method_path": source.path, "method_sha256": source.sha256, "records": {"unet_evals": 2.0 * args.steps}}
    size = (settings.width, settings.height)
    for r_i, (role, prompts) in enumerate(plan.prompts.items()):
        requests = plan_requests(prompts, settings.images_per_prompt(role), settings.seed)
        fields = _request_fields(models["pipe"], requests, config, settings, source)
        own = {p.prompt_id: set(p.memorized_ids) for p in prompts}
        for start in range(0, len(requests), BUILD_CHUNK):
            reqs, flds = requests[start:start + BUILD_CHUNK], fields[start:start + BUILD_CHUNK]
            keys = [image_key(f) for f in flds]
            rng = np.random.default_rng([1, c, r_i, start])  # the chunk's values, identical when resumed
            sims = rng.random((len(keys), len(ref_ids)), dtype=np.float32) * 0.2
            high = 0.3 + 0.6 * rng.random((len(keys), len(ref_ids)))
            clip = rng.normal(0.3, 0.02, len(keys))
            aesthetic = rng.normal(5.0, 0.02, len(keys))
            have = store.has_many(keys)
            scored = {k for (k,) in store.query(
                f"SELECT key FROM scores WHERE metric = ? AND backend = ? AND key IN ({','.join('?' * len(keys))})",
                [SSCD_METRIC, sscd_id, *keys])}
            rows: list[dict[str, Any]] = []
            for i, (r, f, key) in enumerate(zip(reqs, flds, keys)):
                m = n + start + i
                if not have[i]:
                    color = (m % 256, (m // 256) % 256, (m // 65536) % 256)  # distinct PNGs, distinct sha256s
                    store.put_image(key, Image.new("RGB", size, color),
                                    {**f, "image_index": r.image_index, "prompt_used": r.prompt, **common,
                                     "batch_images": settings.batch_size, "seconds": 0.01})
                if key in scored:
                    continue
                mine = own[r.prompt_id]
                value = {rid: float(high[i, j] if rid in mine else v) for j, (rid, v) in enumerate(zip(ref_ids, sims[i]))}
                rows.append({"key": key, "metric": SSCD_METRIC, "backend": sscd_id, "value": value})
                rows += [{"key": key, "metric": m_, "backend": b, "value": float(clip[i] if m_ == CLIP_METRIC
                                                                                   else aesthetic[i])}
                         for m_, b in quality.items()]
            store.put_scores(rows)  # a whole chunk's rows at once
        n += len(requests)
    return n


def _jsonl_mib(store: Any) -> float:
    return sum(p.stat().st_size for sub in ("records", "scores") for p in (store.root / sub).glob("*.jsonl")) / 2**20


def child_rerun(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir)
    t_start = time.perf_counter()
    models = load_models(args.size)
    models["quality"] = {k: (CachedOnlyScorer(v) if v is not None and not k.endswith("_reason") else v)
                         for k, v in models["quality"].items()}
    suite = _store_suite(args, workdir)
    setup_s = time.perf_counter() - t_start
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t0, cpu0 = time.perf_counter(), cpu_seconds()
    ev = make_evaluation(suite, workdir, models, args.batch_size, stored_baselines=not args.one_config)
    phases = full_run(ev)
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    if profiler is not None:
        import io
        import pstats

        profiler.disable()
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("cumulative").print_stats(30)
        stats.sort_stats("tottime").print_stats(15)  # cumulative misleads under recursion (matplotlib)
        (workdir / "rerun.prof.txt").write_text(text.getvalue())
    out = {"seconds": seconds, "cpu_s": cpu, "setup_s": setup_s, "phases": phases, "counts": ev.counts,
           "problems": len(ev.store.problems), "peak_rss_mib": peak_rss_mib(), "one_config": args.one_config}
    with open(workdir / "reruns.jsonl", "a") as fh:  # every rerun's numbers, also those of interrupted tables
        fh.write(json.dumps(out) + "\n")
    return out


# --- the parent -----------------------------------------------------------------------------------


def run_child(mode: str, workdir: Path, args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, "--workdir", str(workdir), "--size", str(args.size),
           "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--trigger", str(args.trigger),
           "--general", str(args.general), "--configs", str(args.configs)] + (["--profile"] if args.profile else [])
    for k, v in extra.items():
        cmd += [f"--{k}"] + ([str(v)] if v != "" else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MEMBENCH_CACHE_DIR": str(workdir / "cache")}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{mode} child failed ({done.returncode}):\n{done.stderr[-4000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_s"] = time.perf_counter() - t0
    return out


def sha256_extrapolation(images: int) -> str:
    """What hashing real 512x512 PNGs would add to the rerun (the store checks every PNG's sha256
    once per process): measured PNG size of a photo-like 512 image x measured sha256 throughput."""
    import hashlib
    import io

    import numpy as np
    from PIL import Image

    from membench_eval.store.run_store import PNG_COMPRESS_LEVEL

    base = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(base).resize((512, 512), Image.BILINEAR).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    data = os.urandom(64 * 2**20)
    t0 = time.perf_counter()
    hashlib.sha256(data).hexdigest()
    rate = len(data) / (time.perf_counter() - t0)
    png = len(buf.getvalue())
    return (f"real 512x512 PNGs (~{png / 1024:.0f} KiB each) would add ~{images * png / rate:.1f} s of sha256 "
            f"({rate / 2**30:.2f} GiB/s here), plus reading {images * png / 2**30:.1f} GiB")


# name -> (trigger prompts x10 images, general prompts x1, configs): one MemBench SD1 + COCO config
# (35k), four times its prompts (140k), the paper's Table 3 (23 configs, 805k); 3.5k / 80k: the
# same at a tenth of the prompts, for a quick look at the growth in configs.
TABLE_SIZES = {"35k": (3000, 5000, 1), "140k": (12000, 20000, 1), "805k": (3000, 5000, 23),
               "3.5k": (300, 500, 1), "80k": (300, 500, 23)}
DEFAULT_TABLE = ("35k", "140k", "805k")
RSS_TARGET_MIB = 2048


def scaling_table(args: argparse.Namespace, root: Path, sizes: list[str]) -> None:
    """Per size: build the store (once per --workdir), then two cached reruns (the first also
    records PNG verifications and per-prompt aggregates in the index; the second is the cached
    rerun proper), and on a multi-config store a one-config leaderboard; side by side with
    growth ratios against the first size."""
    rows = []
    for name in sizes:
        trigger, general, configs = TABLE_SIZES[name]
        sized = argparse.Namespace(**{**vars(args), "trigger": trigger, "general": general, "configs": configs,
                                      "one_config": False})
        folder = root / f"table-{name}"
        saved = folder / "table-row.json"
        if args.resume and saved.is_file():  # measured by an earlier --table run of this --workdir
            row = json.loads(saved.read_text())
            print(f"{name}: row measured at {row['at']} (--resume)", flush=True)
            rows.append(tuple(row["row"]))
            continue
        b = run_child("build", folder, sized)
        print(f"{name}: {'reused' if b.get('reused') else 'wrote'} {b['images']} images in {b['seconds']:.0f} s "
              f"({b['jsonl_mib']:.0f} MiB of JSONL)", flush=True)
        reruns = [run_child("rerun", folder, sized) for _ in range(2)]
        for k, r in enumerate(reruns):
            ph = " ".join(f"{p} {v:.1f}" for p, v in r["phases"].items())
            print(f"{name}: rerun {k + 1}: {r['seconds']:.1f} s, CPU {r['cpu_s']:.1f} s ({ph}); "
                  f"peak RSS {r['peak_rss_mib']:.0f} MiB; "
                  f"{r['counts']}", flush=True)
        one = run_child("rerun", folder, sized, **{"one-config": ""}) if configs > 1 else reruns[1]
        if configs > 1:
            print(f"{name}: one-config leaderboard: {one['seconds']:.1f} s, CPU {one['cpu_s']:.1f} s; "
                  f"peak RSS {one['peak_rss_mib']:.0f} MiB",
                  flush=True)
        ok = all(r["counts"]["generated"] == 0 and r["counts"]["scored"] == 0 and not r["problems"] for r in reruns)
        rows.append((name, b["images"], configs, reruns[0], reruns[1], one, ok))
        saved.write_text(json.dumps({"at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "row": rows[-1]}))
    first = rows[0]
    print(f"\n{'size':>6} {'images':>8} {'cfg':>4} {'rerun1 s':>9} {'rerun2 s':>9} {'CPU s':>6} {'peak MiB':>9} "
          f"{'1-cfg s':>8} {'x images':>9} {'x time':>7} {'x CPU':>6} {'x RSS':>6}  targets (<= {REBUILD_TARGET_S:.0f} s, "
          f"<= {RSS_TARGET_MIB} MiB)")
    for name, images, configs, r1, r2, one, ok in rows:
        print(f"{name:>6} {images:>8} {configs:>4} {r1['seconds']:>9.1f} {r2['seconds']:>9.1f} {r2['cpu_s']:>6.1f} "
              f"{r2['peak_rss_mib']:>9.0f} {one['seconds']:>8.1f} {images / first[1]:>9.1f} "
              f"{r2['seconds'] / first[4]['seconds']:>7.2f} {r2['cpu_s'] / first[4]['cpu_s']:>6.2f} "
              f"{r2['peak_rss_mib'] / first[4]['peak_rss_mib']:>6.2f}  "
              f"{'pass' if ok and r2['seconds'] <= REBUILD_TARGET_S and r2['peak_rss_mib'] <= RSS_TARGET_MIB else 'MISS'}"
              f"{'' if ok else ' (NOT FULLY CACHED)'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[300, 3000], help="prompts per memory run")
    p.add_argument("--trigger", type=int, default=3000, help="trigger prompts (x10 images) of the cached store")
    p.add_argument("--general", type=int, default=5000, help="general prompts (x1 image) of the cached store")
    p.add_argument("--size", type=int, default=16, help="image side (pixels; multiple of 8)")
    p.add_argument("--steps", type=int, default=1, help="DDIM steps")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--skip-rss", action="store_true")
    p.add_argument("--skip-rebuild", action="store_true")
    p.add_argument("--score-after", type=int, nargs=2, default=[40, 400], metavar=("FEW", "MANY"),
                   help="stored unscored 512x512 images scored by Evaluation.score_keys (0 0: skip)")
    p.add_argument("--configs", type=int, default=1, help="configs of the Table-3 sweep in the cached store (1-23)")
    p.add_argument("--one-config", action="store_true", help="rerun a one-config leaderboard (no stored baselines)")
    p.add_argument("--table", nargs="*", metavar="SIZE", choices=sorted(TABLE_SIZES),
                   help=f"cached reruns of these stores side by side (default: {' '.join(DEFAULT_TABLE)}); "
                        "the other measurements are skipped")
    p.add_argument("--resume", action="store_true",
                   help="--table: reuse the rows an earlier --table run of this --workdir measured (a size is "
                        "measured once; the table is printed with the rest)")
    p.add_argument("--profile", action="store_true", help="cProfile the cached rerun (<workdir>/rerun.prof.txt)")
    p.add_argument("--workdir", default=None, help="keep the stores here (default: a temporary folder)")
    p.add_argument("--child", choices=["rss", "build", "rerun", "score-after"], help=argparse.SUPPRESS)
    p.add_argument("--prompts", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps({"rss": child_rss, "build": child_build, "rerun": child_rerun,
                          "score-after": child_score_after}[args.child](args)))
        return

    t_all = time.perf_counter()
    if args.table is not None:
        with tempfile.TemporaryDirectory() as tmp:
            scaling_table(args, Path(args.workdir or tmp), args.table or list(DEFAULT_TABLE))
        print(f"(script {time.perf_counter() - t_all:.0f} s)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.workdir or tmp)
        table = []
        if not args.skip_rss:
            runs = []
            for n in args.sizes:
                r = run_child("rss", root / f"rss-{n}", args, prompts=n)
                runs.append(r)
                ph = " ".join(f"{k} {v:.1f}" for k, v in r["phases"].items())
                print(f"memory: {n} prompts: peak RSS {r['peak_rss_mib']:.0f} MiB (after setup {r['setup_rss_mib']:.0f}, "
                      f"setup peak {r['setup_peak_mib']:.0f}); run {r['seconds']:.1f} s ({ph}); {r['counts']}", flush=True)
            lo, hi = runs[0], runs[-1]
            ratio = hi["peak_rss_mib"] / lo["peak_rss_mib"]
            growth = [r["peak_rss_mib"] - r["setup_rss_mib"] for r in (lo, hi)]
            per_k = (growth[1] - growth[0]) / max(1, hi["prompts"] - lo["prompts"]) * 1000
            print(f"memory: growth over setup {growth[0]:.0f} -> {growth[1]:.0f} MiB ({per_k:.1f} MiB per 1000 prompts)")
            table.append((f"peak RSS {hi['prompts']} / {lo['prompts']} prompts", f"{ratio:.3f}", f"<= {RSS_TARGET}",
                          ratio <= RSS_TARGET))
        if min(args.score_after) > 0:
            few, many = (run_child("score-after", root / f"score-{n}", args, prompts=n) for n in args.score_after)
            ratio = many["peak_rss_mib"] / few["peak_rss_mib"]
            per = ((many["peak_rss_mib"] - many["rss_before_mib"]) - (few["peak_rss_mib"] - few["rss_before_mib"])) \
                / (many["images"] - few["images"])
            print(f"memory, scoring stored unscored 512x512 images: {few['images']} -> peak {few['peak_rss_mib']:.0f} "
                  f"MiB, {many['images']} -> {many['peak_rss_mib']:.0f} MiB: {per:.3f} MiB more peak per extra image "
                  f"(flat: decoded in chunks of evaluation.scoring.DECODE_CHUNK; 1 MiB each if all were held)", flush=True)
            table.append((f"peak RSS scoring {many['images']} / {few['images']} stored 512px", f"{ratio:.3f}",
                          f"<= {RSS_TARGET}", ratio <= RSS_TARGET))
        if not args.skip_rebuild:
            store_dir = root / "rebuild"
            b = run_child("build", store_dir, args)
            print(f"rebuild: {'reused' if b.get('reused') else 'wrote'} {b['images']} images + score rows in {b['seconds']:.1f} s "
                  f"({b['jsonl_mib']:.0f} MiB of JSONL)", flush=True)
            r = run_child("rerun", store_dir, args)
            ok = (r["counts"]["generated"] == 0 and r["counts"]["scored"] == 0
                  and r["counts"]["reused"] == b["images"] and not r["problems"])
            ph = " ".join(f"{k} {v:.1f}" for k, v in r["phases"].items())
            print(f"rebuild: cached rerun {r['seconds']:.1f} s ({ph}); process {r['process_s']:.1f} s incl. "
                  f"{r['setup_s']:.1f} s imports + models; peak RSS {r['peak_rss_mib']:.0f} MiB; {r['counts']}"
                  f"{'' if ok else ' -- NOT FULLY CACHED'}")
            print(f"rebuild: {sha256_extrapolation(b['images'])}")
            if args.profile:
                print((store_dir / "rerun.prof.txt").read_text())
            table.append((f"cached rerun, {b['images']} images (s)", f"{r['seconds']:.1f}", f"<= {REBUILD_TARGET_S:.0f}",
                          ok and r["seconds"] <= REBUILD_TARGET_S))
    print(f"\n{'measure':<40} {'value':>8} {'target':>8}  result")
    for name, value, target, passed in table:
        print(f"{name:<40} {value:>8} {target:>8}  {'pass' if passed else 'MISS'}")
    print(f"(script {time.perf_counter() - t_all:.0f} s)")


if __name__ == "__main__":
    main()
