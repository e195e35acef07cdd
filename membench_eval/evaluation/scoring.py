"""Per-image scores of a run: computed once, stored in the run store, reused; and per-prompt rows.

SSCD is stored as the similarity to every available reference image (not only the prompt's own),
so Top-1 against own and against any memorized image come from one row; a row missing a
reference (coverage grew since) is recomputed. Score rows are keyed by the scorer's identity, so
different backends never mix. Scores do not depend on how images are grouped into scorer calls.

Two ways in, one computation (``score_images``): ``score_keys`` scores what the store lacks after
generation, reading the PNGs back; ``OverlappedScorer`` is the engine's ``on_stored`` callback,
scoring each batch from the arrays already in memory while the next batch denoises (PNG is
lossless: the same pixels, the same scores), on its own CUDA stream on GPUs.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from membench_eval.metrics.registry import MetricSpec, image_metrics
from membench_eval.metrics.score_rows import SSCD_METRIC, score_images as _score_metric

# Stored images decoded at once when scoring after generation: a 512x512 image holds 1 MiB
# decoded, so a whole role (35,000 images) at once would need 34 GiB (measured by
# bench/cost_scaling.py); the scorers give the same numbers at any chunking.
DECODE_CHUNK = 64

if TYPE_CHECKING:
    from membench_eval.evaluation.plan import MethodSpec
    from membench_eval.mitigation import ImageRequest
    from membench_eval.report.records import PromptResult
    from membench_eval.store.run_store import RunStore
    from membench_eval.suites.types import Prompt


class ScoringContext(Protocol):
    """What scoring reads from a run: the scorers (``quality_scorers``: registered per-image
    metric name -> scorer, None or absent when unavailable), the reference embeddings, the store
    and the counters. An evaluation hands a ``Scorers``; the attribution and the attack build
    their own (SSCD only), bench/gpu_check.py one by hand."""

    sscd: Any
    quality_scorers: dict[str, Any]
    reference_embeddings: dict[str, np.ndarray]
    store: "RunStore"
    counts: dict[str, int]


@dataclass
class Scorers:
    """A ``ScoringContext`` of loaded models (an evaluation builds it when it scores); ``store``
    None: for ``score_images`` alone (in-memory images, nothing stored)."""

    store: "RunStore | None"
    sscd: Any
    reference_embeddings: dict[str, np.ndarray]
    quality_scorers: dict[str, Any]
    counts: dict[str, int]


def scorer_id(scorer: Any) -> str:
    """Which model produced a score (part of the store's score key, so models never mix)."""
    md = scorer.metadata() if hasattr(scorer, "metadata") else {}
    return "|".join(f"{k}={v}" for k, v in sorted(md.items())) or type(scorer).__name__


def _quality_scorers(ctx: ScoringContext) -> list[tuple[MetricSpec, Any]]:
    """The registered per-image metrics this run scores, with their loaded scorers."""
    scorers = ctx.quality_scorers
    return [(spec, scorers[spec.name]) for spec in image_metrics() if scorers.get(spec.name) is not None]


def score_images(ctx: ScoringContext, images: list[Any], texts: list[str], metrics: Sequence[str] | None = None,
                 ) -> list[dict[str, Any]]:
    """Every metric (or those in ``metrics``) of in-memory images: one dict per image with
    ``sscd`` (reference id -> similarity) and each per-image metric's value under its store name."""
    rows: list[dict[str, Any]] = [{} for _ in images]
    if not images:
        return rows
    if metrics is None or SSCD_METRIC in metrics:
        ref_ids = sorted(ctx.reference_embeddings)
        refs = np.stack([ctx.reference_embeddings[i] for i in ref_ids]).astype(np.float32)
        sims = np.asarray(ctx.sscd.embed(images), dtype=np.float32) @ refs.T
        for row, sim in zip(rows, sims):
            row["sscd"] = {i: float(v) for i, v in zip(ref_ids, sim)}
    for spec, scorer in _quality_scorers(ctx):
        metric = spec.store_metric
        if metrics is None or metric in metrics:
            for row, value in zip(rows, _score_metric(scorer, metric, images, texts, uses_text=spec.uses_text)):
                row[metric] = value
    return rows


def _backends(ctx: ScoringContext) -> dict[str, tuple[str, str]]:
    """Store metric -> (field of a score row from ``score_images``, the scorer's identity)."""
    return {SSCD_METRIC: ("sscd", ctx.sscd.fingerprint), **{spec.store_metric: (spec.store_metric, scorer_id(s))
                                                         for spec, s in _quality_scorers(ctx)}}


def backend_ids(ctx: ScoringContext) -> dict[str, str]:
    """Store metric -> the identity of the scorer that scores it in this run."""
    return {metric: backend for metric, (_, backend) in _backends(ctx).items()}


def _store_rows(ctx: ScoringContext, keys: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    backends = _backends(ctx)
    out = []
    for key, row in zip(keys, rows):
        for metric, (field, backend) in backends.items():
            value = row.get(field)
            if value is not None:
                out.append({"key": key, "metric": metric, "backend": backend, "value": value})
    ctx.store.put_scores(out)


def score_keys(ctx: ScoringContext, keys: Sequence[str], texts: Sequence[str], *,
               fresh: Collection[str] = ()) -> dict[str, dict[str, Any]]:
    """Per-image scores of stored images ``keys`` (``texts``: their prompts, for CLIP), from the
    store when present, else computed once and stored. ``fresh``: keys an ``OverlappedScorer`` of
    this run scored already (counted as scored, not as reused)."""
    store = ctx.store
    unique = list(dict.fromkeys(keys))
    text_of = dict(zip(keys, texts))
    ref_ids = sorted(ctx.reference_embeddings)
    out: dict[str, dict[str, Any]] = {k: {} for k in unique}
    todo: dict[str, list[str]] = {}
    for metric, (field, backend) in _backends(ctx).items():
        stored = store.get_scores(unique, metric, backend)  # batched lookups
        for k in unique:
            value = stored.get(k)
            complete = isinstance(value, dict) and all(i in value for i in ref_ids) if metric == SSCD_METRIC \
                else value is not None
            if complete:
                out[k][field] = value if metric == SSCD_METRIC else float(value)
            else:
                todo.setdefault(metric, []).append(k)
    ctx.counts["scored"] += len(todo.get(SSCD_METRIC, []))
    ctx.counts["scores_reused"] += sum(1 for k in unique if k not in fresh) - len(todo.get(SSCD_METRIC, []))
    for metric, metric_keys in todo.items():
        for start in range(0, len(metric_keys), DECODE_CHUNK):  # decoded images held: one chunk at a time
            chunk = metric_keys[start:start + DECODE_CHUNK]
            rows = score_images(ctx, [store.get_image(k) for k in chunk], [text_of[k] for k in chunk], [metric])
            _store_rows(ctx, chunk, rows)
            for k, row in zip(chunk, rows):
                out[k].update(row)
    return out


class OverlappedScorer:
    """The engine's ``on_stored`` callback: scores each stored batch in the sink's thread.

    Needs the scorers loaded beforehand (``ready``), so a missing model is reported by the
    generating thread, not half-way through a background job. ``device``: where the scorers run
    (a CUDA device gets a stream of its own); ``scored``: the run's set of keys scored here, which
    ``score_keys`` takes as ``fresh``."""

    def __init__(self, ctx: ScoringContext, *, device: str | None = None, scored: set[str] | None = None):
        self.ctx = ctx
        self.device = device
        self.scored: set[str] = scored if scored is not None else set()
        self._stream: Any = None

    def ready(self) -> bool:
        """Load SSCD, the reference embeddings and the quality scorers; False if any fails
        (then scoring happens after generation, where the failure is raised as before)."""
        from membench_eval.errors import MembenchError

        try:
            _ = self.ctx.reference_embeddings, self.ctx.sscd.fingerprint, _quality_scorers(self.ctx)
        except MembenchError:
            return False
        return True

    def __call__(self, keys: list[str], arrays: list["np.ndarray"], requests: list["ImageRequest"]) -> None:
        import contextlib

        from PIL import Image

        images = [Image.fromarray(a) for a in arrays]
        with self._on_side_stream() or contextlib.nullcontext():
            rows = score_images(self.ctx, images, [r.prompt for r in requests])
        _store_rows(self.ctx, keys, rows)
        self.scored.update(keys)
        self.ctx.counts["scored"] += len(keys)

    def _on_side_stream(self) -> Any:
        """A CUDA stream of its own (scoring kernels interleave with the UNet's); None on CPU."""
        import torch

        from membench_eval.runtime import select_device

        device = select_device(self.device)
        if device.type != "cuda":
            return None
        if self._stream is None:
            self._stream = torch.cuda.Stream(device=device)
        return torch.cuda.stream(self._stream)


def aggregate_prompt(reference_ids: Collection[str], run_seed: int, method: "MethodSpec", role: str,
                     prompt: "Prompt", rows: list[dict[str, Any]]) -> "PromptResult":
    """One prompt's metrics from its images' score rows (image-index order); ``reference_ids``:
    the references the rows were scored against, ``run_seed``: the seed the image seeds derive from."""
    from membench_eval.generation.seeding import image_seed
    from membench_eval.metrics.aggregate import score_prompt
    from membench_eval.report.records import PromptResult

    ref_ids = sorted(reference_ids)
    sim_all = np.array([[r["sscd"][i] for i in ref_ids] for r in rows], dtype=np.float64)
    metrics: dict[str, float | None] = {}
    # Per image: best match over all references (AMS/UMS's gamma), over the prompt's own (the
    # worst-copy gallery), and the seed (to find the image again).
    nearest = sim_all.argmax(axis=1)
    per_image: dict[str, list[Any]] = {
        "best_sscd": [float(v) for v in sim_all[np.arange(len(rows)), nearest]],
        "best_ref": [ref_ids[j] for j in nearest],
        "seed": [image_seed(run_seed, prompt.prompt_id, i) for i in range(len(rows))]}
    if rows and all("unet_evals" in r for r in rows):
        per_image["unet_evals"] = [r["unet_evals"] for r in rows]
    if role == "trigger":
        own = [i for i in prompt.memorized_ids if i in reference_ids]
        sim_own = np.array([[r["sscd"][i] for i in own] for r in rows], dtype=np.float64)
        s = score_prompt(prompt.prompt_id, sim_own, sim_all)
        metrics.update(top1_sscd=s.top1, top3_sscd=s.top3, sscd_gt_05=s.frac_above, top1_any=s.top1_any)
        own_nearest = sim_own.argmax(axis=1)
        per_image["own_sscd"] = [float(v) for v in sim_own[np.arange(len(rows)), own_nearest]]
        per_image["own_ref"] = [own[j] for j in own_nearest]
    else:
        metrics["top1_any"] = float(sim_all.max())
    for spec in image_metrics():
        vals = [r.get(spec.store_metric) for r in rows]
        metrics[spec.name] = None if any(v is None for v in vals) else spec.per_prompt(vals)
    return PromptResult(label=method.label, method=method.name, role=role, prompt_id=prompt.prompt_id,
                        n_images=len(rows), metrics=metrics, params=dict(method.params),
                        memorized_ids=tuple(prompt.memorized_ids), per_image=per_image)
