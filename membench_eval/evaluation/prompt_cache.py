"""Per-prompt results cached in the run store's index, keyed by everything they are computed from.

Why: a leaderboard rebuilt from a complete store needs, per prompt, one aggregate of its images'
score rows; reading every image's rows (151 similarities each on MemBench SD1) and aggregating
them again is most of a cached rerun's cost. A prompt's ``PromptResult`` is a function of:

- its images: their keys and the checksums of their stored rows (a regenerated image has a new
  row, so its prompt is aggregated again);
- the scorers: the SSCD backend, each per-image metric's scorer identity, the reference images
  the similarities were taken against;
- the metric definition: each registered per-image metric (name, store name, per-prompt function)
  and the source of the aggregation code (this package's ``scoring`` and ``metrics.aggregate``);
- the prompt (id, role, memorized images) and the run seed (the per-image seeds).

All of it goes into the key (sha256 of its canonical JSON), so a cached value is never reused for
other inputs; the value holds only what those inputs produce (metrics and per-image lists), the
row's label and parameters come from the current method. The cache lives in the index only: it is
recomputed from the score rows (the log) when the index is lost.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from membench_eval.store.keys import canonical_json

if TYPE_CHECKING:
    from membench_eval.evaluation.plan import MethodSpec
    from membench_eval.report.records import PromptResult
    from membench_eval.store.run_store import RunStore
    from membench_eval.suites.types import Prompt

CACHE_SCHEME = "membench-prompt-aggregate/v1"
# Prompts scored and aggregated at once when the cache misses: a whole role's score rows (151
# similarities per image on MemBench SD1) held at once peaked at 3.2 GiB at 140,000 images.
TODO_CHUNK = 500


@lru_cache(maxsize=1)
def metric_definition() -> str:
    """A hash of how per-image scores become a prompt's metrics (see the module docstring)."""
    import inspect

    from membench_eval.evaluation import scoring
    from membench_eval.metrics import aggregate
    from membench_eval.metrics.registry import image_metrics

    parts: list[Any] = []
    for module in (scoring, aggregate):
        parts.append(hashlib.sha256(Path(inspect.getfile(module)).read_bytes()).hexdigest())
    for spec in image_metrics():
        fn = spec.per_prompt
        try:
            source = inspect.getsource(fn)
        except (OSError, TypeError):
            source = repr(fn)
        parts.append([spec.name, spec.store_metric, getattr(fn, "__module__", ""), getattr(fn, "__qualname__", ""),
                      hashlib.sha256(source.encode()).hexdigest()])
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()


def cache_key(*, scorers: dict[str, str], reference_ids: Collection[str], run_seed: int, method: "MethodSpec",
              role: str, prompt: "Prompt", images: Sequence[tuple[str, str]]) -> str:
    """The content key of one prompt's aggregate; ``images``: (image key, row checksum) in image order."""
    return cache_key_maker(scorers=scorers, reference_ids=reference_ids, run_seed=run_seed, method=method,
                           role=role)(prompt, images)


def _dumps(value: Any) -> str:
    # Plain JSON by construction (strings, ints, lists, string-keyed dicts): canonical_json's text
    # without its per-value walk (measured: most of this function's 0.9 ms per prompt).
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def cache_key_maker(*, scorers: dict[str, str], reference_ids: Collection[str], run_seed: int,
                    method: "MethodSpec", role: str) -> Callable[["Prompt", Sequence[tuple[str, str]]], str]:
    """``cache_key`` of one method and prompt set, per prompt: the key is the sha256 of the
    canonical JSON (sorted keys) of ``{"definition", "images", "memorized_ids", "method",
    "prompt_id", "references", "role", "run_seed", "scheme", "scorers"}``; the parts shared by
    every prompt are serialised once here (the 151 reference ids were a third of a sweep's
    per-prompt key cost), the text is the same as serialising the whole dict."""
    head = '{"definition":' + _dumps(metric_definition()) + ',"images":'
    method_part = ',"method":' + _dumps(method.name) + ',"prompt_id":'
    tail = (',"references":' + _dumps(sorted(reference_ids)) + ',"role":' + _dumps(role) + ',"run_seed":'
            + _dumps(int(run_seed)) + ',"scheme":' + _dumps(CACHE_SCHEME) + ',"scorers":' + _dumps(scorers) + "}")

    def key(prompt: "Prompt", images: Sequence[tuple[str, str]]) -> str:
        text = (head + _dumps([[str(k), str(d)] for k, d in images]) + ',"memorized_ids":'
                + _dumps(list(prompt.memorized_ids)) + method_part + _dumps(prompt.prompt_id) + tail)
        return hashlib.sha256(text.encode()).hexdigest()

    return key


def dump(result: "PromptResult") -> str:
    """What a cached value holds: the parts of a result its inputs produce (JSON keeps floats exact)."""
    return json.dumps({"n_images": result.n_images, "metrics": result.metrics, "per_image": result.per_image},
                      separators=(",", ":"))


def load(value: str, method: "MethodSpec", role: str, prompt: "Prompt") -> "PromptResult":
    """The result a cached value stands for, labelled by the current ``method``."""
    from membench_eval.report.records import PromptResult

    d = json.loads(value)
    return PromptResult(label=method.label, method=method.name, role=role, prompt_id=prompt.prompt_id,
                        n_images=int(d["n_images"]), metrics=d["metrics"], params=dict(method.params),
                        memorized_ids=tuple(prompt.memorized_ids), per_image=d["per_image"])


def prompt_results(store: "RunStore", method: "MethodSpec", role: str, prompts: Sequence["Prompt"],
                   keys: Sequence[str], texts: Sequence[str], n: int, *, make_key: Callable[["Prompt", list[tuple[str, str]]], str],
                   score: Callable[[list[str], list[str]], dict[str, dict[str, Any]]],
                   aggregate: Callable[["Prompt", list[dict[str, Any]]], "PromptResult"],
                   reused: Callable[[list[str]], None]) -> list["PromptResult"]:
    """One result per prompt (its images: ``keys[k*n:(k+1)*n]``, their prompt texts ``texts``):
    from the cache when its key is there, else scored (``score``: per-image score rows, stored
    or computed), aggregated (``aggregate``) and cached. ``reused``: told the image keys of the
    prompts served from the cache (the run's "scores reused" count)."""
    spans = [(k * n, (k + 1) * n) for k in range(len(prompts))]
    digests = store.record_digests(list(keys))
    ckeys = [make_key(p, [(key, digests[key]) for key in keys[a:b]]) if all(key in digests for key in keys[a:b])
             else None for p, (a, b) in zip(prompts, spans)]
    cached = store.get_aggregates([c for c in ckeys if c is not None])
    todo = [k for k, c in enumerate(ckeys) if c not in cached]
    reused([key for k, c in enumerate(ckeys) if c in cached for key in keys[spans[k][0]:spans[k][1]]])
    out: dict[int, "PromptResult"] = {}
    for start in range(0, len(todo), TODO_CHUNK):  # score rows held: one chunk of prompts at a time
        chunk = todo[start:start + TODO_CHUNK]
        todo_keys = [key for k in chunk for key in keys[spans[k][0]:spans[k][1]]]
        scores = score(todo_keys, [t for k in chunk for t in texts[spans[k][0]:spans[k][1]]])
        # The measured cost (``generation.batch.run_batch``), when stored.
        for key, evals in store.record_values(list(dict.fromkeys(todo_keys)), "$.records.unet_evals").items():
            if isinstance(evals, (int, float)):
                scores[key]["unet_evals"] = float(evals)
        new: dict[str, str] = {}
        for k in chunk:
            out[k] = aggregate(prompts[k], [scores[key] for key in keys[spans[k][0]:spans[k][1]]])
            if ckeys[k] is not None:
                new[ckeys[k]] = dump(out[k])  # type: ignore[index]
        store.put_aggregates(new)
    return [out[k] if k in out else load(cached[ckeys[k]], method, role, prompts[k]) for k in range(len(prompts))]  # type: ignore[index]
