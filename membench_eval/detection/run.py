"""Scoring prompt sets with a ``Detector``: seeded requests, batches, cost, checks, the run store.

For every prompt the runner makes a ``DetectionRequest`` whose seed is
``image_seed(run_seed, prompt_id, 0)`` (so a score never depends on prompt order or batching),
looks its key up in the store (``store.detections``) and scores only the missing ones, in batches
of ``settings.batch_size`` prompts. Per batch it measures the UNet rows (``count_unet_rows``,
divided over the batch's prompts) and the wall seconds (per prompt), checks that ``score``
returned exactly one finite float per prompt (else a ``DetectorError`` naming the detector and the
prompt ids), and appends the batch's rows to the store at once: a Ctrl-C or a killed job keeps
every finished batch, and a rerun scores nothing that is stored.

``setup`` runs once per pipeline (``generation.batch.cached_setup``), outside the per-prompt cost
(its seconds are reported apart). A detector with ``needs_model = False`` gets ``pipe=None`` and
its keys carry no model, so its scores are shared by every model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from membench_eval.detection.checks import call_detector, check_records, check_scores, detector_error
from membench_eval.detector import DETECTION_CODE_VERSION, DetectionContext, DetectionRequest, Detector
from membench_eval.errors import MembenchError
from membench_eval.generation.seeding import image_seed, make_generator, make_rng
from membench_eval.generation.settings import GenerationSettings
from membench_eval.store.detections import DetectionStore, detection_key, detection_key_fields

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline

    from membench_eval.suites.types import Prompt


@dataclass
class DetectionResult:
    """One detector configuration's scores on a prompt list, aligned with the prompts given."""

    label: str
    name: str
    params: dict[str, Any]
    source_path: str | None
    source_sha256: str
    prompt_ids: list[str]
    prompts: list[str]
    seeds: list[int]
    scores: list[float]
    unet_rows: list[float]  # UNet forward rows per prompt (its batch's rows / its batch's prompts)
    seconds: list[float]  # wall seconds per prompt (its batch's seconds / its batch's prompts)
    records: list[dict[str, Any]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    new: int = 0
    reused: int = 0
    setup_seconds: float = 0.0
    # ``n/a: <detector> needs <what>; <family> has none``: nothing scored (``models.capabilities``).
    not_applicable: str | None = None

    def summary(self) -> str:
        if self.not_applicable:
            return f"{self.label}: {self.not_applicable}"
        return f"{self.label}: {self.new} prompt(s) scored, {self.reused} reused from the store"


def detection_requests(prompts: Sequence["Prompt"], run_seed: int) -> list[DetectionRequest]:
    """One request per prompt, seeded from the run seed and the prompt id (image index 0)."""
    seen: set[str] = set()
    out = []
    for p in prompts:
        if p.prompt_id in seen:
            raise MembenchError(f"prompt id {p.prompt_id!r} appears twice in the prompts to score")
        seen.add(p.prompt_id)
        out.append(DetectionRequest(prompt_id=p.prompt_id, prompt=p.text, seed=image_seed(run_seed, p.prompt_id, 0)))
    return out


def model_fields(pipe: "StableDiffusionPipeline") -> dict[str, Any]:
    """What identifies the model a score was computed with (also the float environment)."""
    from membench_eval.generation.batch import _execution_device
    from membench_eval.models.family import family_for

    family = family_for(pipe)
    ident = family.identity()
    return {"model": ident["model"], "revision": ident["revision"], "scheduler": family.scheduler_identity(),
            "device_type": _execution_device(pipe).type, "dtype": str(family.dtype).replace("torch.", "")}


def score_prompts(
    detector: Detector,
    prompts: Sequence["Prompt"],
    settings: GenerationSettings,
    store: DetectionStore,
    *,
    pipe: "StableDiffusionPipeline | None" = None,
    progress: bool = False,
) -> DetectionResult:
    """Score ``prompts`` with ``detector``, reusing stored scores; see the module docstring."""
    from membench_eval.generation.batch import method_source

    det = detector
    if det.needs_model and pipe is None:
        raise detector_error(det, "needs a model (needs_model = True) but no pipeline was given")
    pipe_used = pipe if det.needs_model else None
    reqs = detection_requests(prompts, settings.seed)
    source = method_source(det)
    if pipe_used is not None and det.needs:
        from membench_eval.models.capabilities import not_applicable
        from membench_eval.models.family import family_for

        why = not_applicable(det, family_for(pipe_used))
        if why is not None:  # the family has nothing this detector reads: a row of n/a, not a crash
            return DetectionResult(
                label=det.label(), name=det.name, params=det.params(), source_path=source.path,
                source_sha256=source.sha256, prompt_ids=[], prompts=[], seeds=[], scores=[], unet_rows=[],
                seconds=[], not_applicable=why)
    model = model_fields(pipe_used) if pipe_used is not None else None
    fields = [
        detection_key_fields(
            detector=det.name, params=det.params(), detector_source=source.sha256, runner=DETECTION_CODE_VERSION,
            model=model, prompt=r.prompt, seed=r.seed, num_inference_steps=settings.num_inference_steps,
            guidance_scale=settings.guidance_scale, height=settings.height, width=settings.width,
        )
        for r in reqs
    ]
    keys = [detection_key(f) for f in fields]
    pending = [i for i, k in enumerate(keys) if k not in store]
    result = DetectionResult(
        label=det.label(), name=det.name, params=det.params(), source_path=source.path, source_sha256=source.sha256,
        prompt_ids=[r.prompt_id for r in reqs], prompts=[r.prompt for r in reqs], seeds=[r.seed for r in reqs],
        scores=[], unet_rows=[], seconds=[], keys=keys, reused=len(reqs) - len(pending),
    )
    if pending:
        state = _setup(det, pipe_used, reqs, result)
        common = {"label": det.label(), "detector_path": source.path,
                  "device": str(_device(pipe_used)), "run_seed": settings.seed}
        _score_pending(det, pipe_used, reqs, fields, keys, pending, settings, store, state, common, result, progress)
    for key in keys:
        row = store.get(key)
        assert row is not None, key  # every pending key was just stored
        result.scores.append(float(row["score"]))
        result.unet_rows.append(float(row.get("unet_rows", 0.0)))
        result.seconds.append(float(row.get("seconds", 0.0)))
        result.records.append(dict(row.get("records") or {}))
    return result


def run_detectors(
    detectors: Sequence[Detector],
    prompts: Sequence["Prompt"],
    settings: GenerationSettings,
    store: DetectionStore,
    *,
    load_pipe: Callable[[], "StableDiffusionPipeline"] | None = None,
    progress: bool = False,
    notify: Callable[[str], None] | None = None,
) -> list[DetectionResult]:
    """``score_prompts`` for every detector; the pipeline is loaded (once, by ``load_pipe``) only
    when some detector needs a model."""
    pipe = None
    if any(d.needs_model for d in detectors):
        if load_pipe is None:
            needy = next(d for d in detectors if d.needs_model)
            raise detector_error(needy, "needs a model (needs_model = True) but no pipeline loader was given")
        pipe = load_pipe()
    out = []
    for det in detectors:
        res = score_prompts(det, prompts, settings, store, pipe=pipe, progress=progress)
        if notify is not None:
            notify(res.summary())
        out.append(res)
    return out


# --- internals ------------------------------------------------------------------------------


def _device(pipe: "StableDiffusionPipeline | None") -> Any:
    from membench_eval.generation.batch import _execution_device

    return "cpu" if pipe is None else _execution_device(pipe)


def _setup(det: Detector, pipe: "StableDiffusionPipeline | None", reqs: Sequence[DetectionRequest],
           result: DetectionResult) -> Any:
    """The detector's cached ``setup`` result (timed apart from the per-prompt cost)."""
    from membench_eval.generation.batch import cached_setup

    if type(det).setup is Detector.setup:
        return None
    t0 = time.perf_counter()
    state = call_detector(det, "setup", reqs, lambda: cached_setup(pipe, det))
    result.setup_seconds = time.perf_counter() - t0
    return state


def _context(pipe: "StableDiffusionPipeline | None", reqs: list[DetectionRequest], settings: GenerationSettings,
             state: Any) -> DetectionContext:
    device = _device(pipe)
    return DetectionContext(
        requests=reqs, prompts=[r.prompt for r in reqs], num_inference_steps=settings.num_inference_steps,
        guidance_scale=settings.guidance_scale, height=settings.height, width=settings.width, device=device,
        generators=[make_generator(r.seed, device) for r in reqs], rngs=[make_rng(r.seed) for r in reqs],
        records=[{} for _ in reqs], state=state,
    )


def _score_pending(det, pipe, reqs, fields, keys, pending, settings, store, state, common, result, progress) -> None:  # noqa: ANN001
    """Score the pending prompts batch by batch, storing each batch as soon as it is checked."""
    from tqdm.auto import tqdm

    from membench_eval.generation.batch import count_unet_rows

    size = settings.batch_size
    bar = tqdm(total=len(pending), unit="prompt", desc=det.label(), disable=not progress, dynamic_ncols=True)
    bar.set_postfix_str(f"reused {result.reused}")
    try:
        for start in range(0, len(pending), size):
            batch = pending[start : start + size]
            breqs = [reqs[i] for i in batch]
            ctx = _context(pipe, breqs, settings, state)
            t0 = time.perf_counter()
            if pipe is not None:
                with count_unet_rows(pipe) as counter:
                    out = call_detector(det, "score", breqs, lambda: det.score(pipe, ctx))
                rows = counter.rows
            else:
                out = call_detector(det, "score", breqs, lambda: det.score(None, ctx))
                rows = 0
            seconds = time.perf_counter() - t0
            scores = check_scores(det, breqs, out)
            records = check_records(det, breqs, ctx.records)
            n = len(batch)
            store.put_many(
                (keys[i], {"fields": fields[i], "prompt_id": reqs[i].prompt_id, "score": scores[j],
                           "unet_rows": rows / n, "seconds": seconds / n, "records": records[j],
                           "batch_prompts": n, **common})
                for j, i in enumerate(batch)
            )
            result.new += n
            bar.update(n)
    finally:
        bar.close()
