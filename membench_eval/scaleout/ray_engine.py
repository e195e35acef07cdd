"""The Ray engine (``membench run --engine ray``, ``pytest --membench-engine ray``): a run's images
and scores computed by actor pools on a Ray cluster, into the run store on shared storage.

1. Generation: a Ray Dataset of work units (``units.generation_units``: one serial pipeline call of
   image requests each) mapped by an actor pool; every actor holds one pipeline on one device
   (``num_gpus=1``, or a fractional CPU) and runs ``generation.engine.generate`` on each unit, so the
   store's batch claims apply: no key is generated twice across actors or nodes, a unit already
   stored is reused, and a dead actor's claims are taken over (its unit is retried by Ray).
2. Scoring: each unit's keys mapped by a second pool (``Evaluation.score_keys``: SSCD, CLIP and
   aesthetic per image, stored; one unit per call, as the serial run scores each batch). The stages run one after the other, so on GPUs the
   generation pool has released its devices before the scorers take them.
3. Collect: one task with an actor's resources runs the serial ``Evaluation.evaluate_plan``, which
   now only reads the store, and returns the per-prompt results. Same code as a serial run, on the
   actors' device type (part of every store key: the driver may have no GPU), so with per-image
   seeds the leaderboard is the serial one.

The store needs from its file system what concurrent local writers need, on every node: atomic
rename (a PNG is renamed into place), ``O_CREAT | O_EXCL`` create (claims), mtime updates
(heartbeats), and the same files visible on all nodes (NFSv4, Lustre, CephFS; not node-local disk).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from membench_eval.errors import MembenchError
from membench_eval.scaleout.units import (MethodRef, each_row, generation_units, load_method, method_refs, pack_error,
                                          raise_errors, ray_device, score_slices, unit_requests)

if TYPE_CHECKING:
    from membench_eval.evaluation import EvalOptions, Evaluation, Plan
    from membench_eval.report.records import PromptResult

# CPUs Ray reserves per actor. Fractional on CPU clusters: with 1 CPU each, two actors on a 2-core
# machine left the Dataset's read stage no CPU and map_batches hung; at 0.5 it runs.
CPU_ACTOR_CPUS = 0.5
GPU_ACTOR_CPUS = 1.0
# Environment the actors need from the driver (caches, data folders, hub settings).
FORWARDED_ENV = ("MEMBENCH_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_")
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
INSTALL_HINT = 'the Ray engine needs Ray Data: pip install -e ".[ray]"'


@dataclass
class RayOutcome:
    """What the cluster computed: per-prompt results (as a serial run returns them), the scorers'
    status, this run's counts, damaged store entries found, and where the time went."""

    results: list["PromptResult"]
    quality: dict[str, Any]
    counts: dict[str, int]
    problems: list[str] = field(default_factory=list)
    actors: int = 0
    device: str = "cpu"
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """The line both shells print after a cluster run: actors, device and each stage's time."""
        return (f"ray engine: {self.actors} {self.device} actor(s); "
                + ", ".join(f"{stage} {s:.1f} s" for stage, s in self.seconds.items()))


def import_ray() -> Any:
    """``ray`` with Ray Data, or a MembenchError naming the install command."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise MembenchError(f"{INSTALL_HINT} ({exc})") from None
    return ray


def run_on_ray(evaluation: "Evaluation", plan: "Plan", method_files: list[str], params: list[str]) -> RayOutcome:
    """Compute ``plan`` on the cluster of ``options.ray_address`` (None: a local one, started and
    stopped here); the store is ``evaluation.store``. A method's error or a store fault on an actor
    is raised here as the MembenchError it was there."""
    ray = import_ray()
    disconnect = _connect(ray, evaluation.options.ray_address)
    try:
        return _run(ray, evaluation, plan, method_files, params)
    finally:
        disconnect()


def _run(ray: Any, evaluation: "Evaluation", plan: "Plan", method_files: list[str], params: list[str]) -> RayOutcome:
    import torch

    from membench_eval.runtime import generation_cpu_threads

    cluster = ray.cluster_resources()
    device = ray_device(evaluation.options.device, float(cluster.get("GPU", 0)))
    actors = evaluation.options.ray_actors or max(1, int(cluster.get("GPU" if device == "cuda" else "CPU", 1)))
    # CPU pixels depend on torch's thread count: actors use the one generation count (runtime).
    threads = generation_cpu_threads() if device == "cpu" else torch.get_num_threads()
    options = _actor_options(evaluation, device)
    resources = {"num_gpus": 1, "num_cpus": GPU_ACTOR_CPUS} if device == "cuda" else {"num_cpus": CPU_ACTOR_CPUS}
    refs = method_refs(plan)
    units = generation_units(plan, evaluation.settings)
    _quiet_ray_data(evaluation.options.progress)
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    generated = _map(ray, units, _Generate, actors, resources, (options, refs, threads))
    seconds["generation"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    scored = _map(ray, score_slices(generated), _Score, actors, resources, (options, threads))
    seconds["scoring"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    labels = [m.label for m in plan.methods]
    prompt_ids = {role: [p.prompt_id for p in ps] for role, ps in plan.prompts.items()}
    collect = ray.remote(**resources)(_collect)
    got = ray.get(collect.remote(options, threads, [str(Path(f).resolve()) for f in method_files], list(params),
                                 refs, labels, prompt_ids))
    seconds["collect"] = time.perf_counter() - t0
    raise_errors([got])

    from membench_eval.report.records import PromptResult

    new = sum(int(r["new"]) for r in generated)
    new_scores = sum(int(r["scored"]) for r in scored)
    c = got["counts"]
    counts = {"generated": new + c["generated"], "reused": c["reused"] - new,
              "scored": new_scores + c["scored"], "scores_reused": c["scores_reused"] - new_scores}
    problems = list(got["problems"])
    if c["generated"]:
        problems.append(f"the Ray collect step generated {c['generated']} image(s) the actors had not stored "
                        "(different store keys on the collect node: same model, code and device type everywhere?)")
    return RayOutcome([PromptResult.from_dict(d) for d in got["results"]], got["quality"], counts, problems,
                      actors, device, seconds)


def _map(ray: Any, rows: list[dict[str, Any]], actor: type, actors: int, resources: dict[str, float],
         args: tuple[Any, ...]) -> list[dict[str, Any]]:
    """``rows`` mapped one row per call by a pool of ``actors`` instances of ``actor``."""
    if not rows:
        return []
    size = min(actors, len(rows))
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    # One unit in flight per actor: units are seconds to minutes each, so queueing would unbalance.
    pool = ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=1)
    out = ds.map_batches(actor, batch_size=1, batch_format="numpy", compute=pool, fn_constructor_args=args,
                         **resources).take_all()
    raise_errors(out)
    return out


def _actor_options(evaluation: "Evaluation", device: str) -> "EvalOptions":
    """The run's options as an actor on another node needs them: absolute paths, its device."""
    o = evaluation.options
    return dataclasses.replace(
        o, device=device, engine="local", progress=False, store_dir=str(evaluation.store.root.resolve()),
        data_dir=_absolute(o.data_dir), model=_absolute(o.model), clip_pretrained=_absolute(o.clip_pretrained),
        aesthetic_pretrained=_absolute(o.aesthetic_pretrained), aesthetic_head=_absolute(o.aesthetic_head),
        reference_dir=_absolute(o.reference_dir), out_dir=str(Path(o.out_dir).resolve()))


def _absolute(value: str | None) -> str | None:
    return str(Path(value).expanduser().resolve()) if value and Path(value).expanduser().exists() else value


def _actor_evaluation(options: "EvalOptions", threads: int) -> "Evaluation":
    from membench_eval.evaluation import Evaluation

    if options.device == "cpu":
        import os

        import torch

        from membench_eval.runtime import CPU_THREADS_ENV

        os.environ[CPU_THREADS_ENV] = str(threads)  # load_pipeline sets the count from it
        torch.set_num_threads(threads)
    return Evaluation(options)


class _Generate:
    """A generation actor: one pipeline on one device; methods rebuilt from their files once."""

    def __init__(self, options: "EvalOptions", refs: list[MethodRef], threads: int) -> None:
        self.ev = _actor_evaluation(options, threads)
        self.refs = refs
        self.methods: dict[int, Any] = {}

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        return each_row(batch, self.unit, {"unit": 0, "method": 0, "role": "", "keys": [""], "texts": [""], "new": 0})

    def unit(self, row: dict[str, Any]) -> dict[str, Any]:
        from membench_eval.generation.engine import generate

        index = int(row["method"])
        if index not in self.methods:
            self.methods[index] = load_method(self.refs[index])
        requests = unit_requests(row)
        self.ev.store.refresh()
        report = generate(self.ev.pipeline, requests, self.methods[index].mitigation, self.ev.settings,
                          self.ev.store, progress=False)
        return {"unit": int(row["unit"]), "method": index, "role": str(row["role"]), "keys": report.keys,
                "texts": [r.prompt for r in requests], "new": report.new}


class _Score:
    """A scoring actor: SSCD, CLIP and aesthetic scorers on one device."""

    def __init__(self, options: "EvalOptions", threads: int) -> None:
        self.ev = _actor_evaluation(options, threads)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        return each_row(batch, self.unit, {"slice": 0, "scored": 0})

    def unit(self, row: dict[str, Any]) -> dict[str, Any]:
        self.ev.store.refresh()  # images other actors stored after this actor opened the store
        before = self.ev.counts["scored"]
        self.ev.score_keys([str(k) for k in row["keys"]], [str(t) for t in row["texts"]])
        return {"slice": int(row["slice"]), "scored": self.ev.counts["scored"] - before}


def _collect(options: "EvalOptions", threads: int, method_files: list[str], params: list[str], refs: list[MethodRef],
             labels: list[str], prompt_ids: dict[str, list[str]]) -> dict[str, Any]:
    """The serial evaluation of the driver's rows (in its order), reading what the stages stored."""
    try:
        return _evaluate(options, threads, method_files, params, refs, labels, prompt_ids)
    except MembenchError as exc:
        return {"error": pack_error(exc)}


def _evaluate(options: "EvalOptions", threads: int, method_files: list[str], params: list[str], refs: list[MethodRef],
              labels: list[str], prompt_ids: dict[str, list[str]]) -> dict[str, Any]:
    from membench_eval.evaluation.plan import Plan

    ev = _actor_evaluation(options, threads)
    plan = ev.plan(method_files, params)  # also loads a saved web-search reference, as a serial run does
    mine = {role: [p.prompt_id for p in ps] for role, ps in plan.prompts.items()}
    if mine != prompt_ids:
        raise MembenchError(f"suite {plan.suite.name}: the collect node selects other prompts than the driver "
                            "(different data on the nodes?); use one data folder for all nodes")
    by_label = {m.label: m for m in plan.methods}
    by_ref = {r.label: r for r in refs}
    methods = []
    for label in labels:
        if label in by_ref:
            methods.append(load_method(by_ref[label]))
        elif label in by_label:
            methods.append(by_label[label])
        else:
            raise MembenchError(f"row {label!r} of the driver's plan is not known on the collect node")
    results = ev.evaluate_plan(Plan(plan.suite, methods, plan.prompts, plan.coverage, plan.excluded_prompts))
    return {"results": [r.to_dict() for r in results], "quality": ev.quality_status(), "counts": dict(ev.counts),
            "problems": list(ev.store.problems)}


def _connect(ray: Any, address: str | None) -> Any:
    """Join the cluster at ``address``, or start a local one (no dashboard, loopback only); returns
    what undoes it (a caller's own ``ray.init`` is used and kept)."""
    env = {"env_vars": {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}}
    common = {"runtime_env": env, "log_to_driver": False, "logging_level": logging.WARNING}
    if ray.is_initialized():
        return lambda: None
    if address is not None:
        ray.init(address=address, **common)
        return ray.shutdown  # disconnects this driver only; the cluster keeps running
    undo = loopback_only(ray)
    ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, **common)

    def stop() -> None:
        ray.shutdown()
        undo()
    return stop


def loopback_only(ray: Any) -> Any:
    """Keep a local cluster on 127.0.0.1: by default Ray binds the machine's network address on all
    interfaces. Ray's single-machine switch (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read when
    ray is imported, so its constant is set too); returns what restores both."""
    from ray._private import ray_constants

    before = os.environ.get(LOOPBACK_ENV), getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[LOOPBACK_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False

    def undo() -> None:
        if before[0] is None:
            os.environ.pop(LOOPBACK_ENV, None)
        else:
            os.environ[LOOPBACK_ENV] = before[0]
        ray_constants.ENABLE_RAY_CLUSTER = before[1]
    return undo


def _quiet_ray_data(progress: bool) -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    logging.getLogger("ray.data").setLevel(logging.INFO if progress else logging.WARNING)
