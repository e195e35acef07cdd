"""Work units of a scaled-out run, as plain (picklable) data: no Ray, no torch.

Why these shapes: one generation unit is exactly one pipeline call of the serial path (the
engine's own ``make_batches`` over a (method, scenario)'s requests, padded to the same fixed
shape), so a unit's images, store keys and batch claim are those of a serial run. One scoring
task scores one unit's images together, as the serial path scores each batch once it is stored
(``evaluation.scoring.OverlappedScorer``): scorer outputs can move at float rounding with the group
(mini CLIP: 6e-8 between 1 and 10 images a call), so the same groups give the same bytes.

The actors' rows carry a MembenchError as data (``each_row``, ``raise_errors``): Ray keeps only
the text of an exception raised in a Dataset's actor, and a method's error must reach the user
as the serial run shows it (one line, the user's frames, its exit status).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from membench_eval.errors import MembenchError

if TYPE_CHECKING:
    from membench_eval.evaluation.plan import MethodSpec, Plan
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.mitigation import ImageRequest


@dataclass(frozen=True)
class MethodRef:
    """A generated leaderboard row as data: user mitigations come from files and do not pickle,
    so actors rebuild them from (file, name, parameters) and check the code is the driver's."""

    label: str
    kind: str
    name: str
    params: dict[str, Any]
    path: str | None
    sha256: str
    roles: tuple[str, ...] | None = None


def method_refs(plan: "Plan") -> list[MethodRef]:
    """Refs of the plan's rows that generate images (computed references generate none)."""
    from membench_eval.plugins.source import fingerprint_method

    return [MethodRef(m.label, m.kind, m.name, dict(m.params), str(Path(m.path).resolve()) if m.path else None,
                      fingerprint_method(m.mitigation).sha256, m.roles)
            for m in plan.methods if m.mitigation is not None]


def load_method(ref: MethodRef) -> "MethodSpec":
    """The row with its mitigation reloaded from its file. A file whose code differs from the
    driver's (another checkout on this node) would store images under other keys: an error."""
    from membench_eval.evaluation.plan import MethodSpec
    from membench_eval.plugins.source import fingerprint_method
    from membench_eval.mitigation import Mitigation
    from membench_eval.plugins.mitigations import load_mitigation

    if ref.path is not None and not Path(ref.path).is_file():
        raise MembenchError(f"{ref.path}: method file of {ref.label!r} not found on host {socket.gethostname()}; "
                            "every node needs the method files at the same path (shared storage or one checkout)")
    mitigation = Mitigation() if ref.path is None else load_mitigation(ref.path, ref.name, ref.params)
    if mitigation.label() != ref.label or fingerprint_method(mitigation).sha256 != ref.sha256:
        raise MembenchError(f"{ref.path}: method {ref.label!r} on host {socket.gethostname()} is not the driver's "
                            f"(label {mitigation.label()!r}, code sha256 {fingerprint_method(mitigation).sha256[:12]} "
                            f"vs {ref.sha256[:12]}); use one checkout of the method files on every node")
    return MethodSpec(ref.label, ref.kind, ref.name, dict(ref.params), ref.path, mitigation, ref.roles)  # type: ignore[arg-type]


def generation_units(plan: "Plan", settings: "GenerationSettings") -> list[dict[str, Any]]:
    """One row per pipeline call of a serial run over ``plan``: the unit's method (index into
    ``method_refs(plan)``), scenario and image requests as parallel lists."""
    from membench_eval.generation.engine import batch_shape, make_batches
    from membench_eval.generation.seeding import plan_requests

    rows: list[dict[str, Any]] = []
    generated = [m for m in plan.methods if m.mitigation is not None]
    for index, method in enumerate(generated):
        by_prompt = bool(method.mitigation.batch_by_prompt)  # type: ignore[union-attr]
        for role, prompts in plan.prompts.items():
            if not prompts or not method.measures(role):
                continue
            requests = plan_requests(prompts, settings.images_per_prompt(role), settings.seed)  # type: ignore[arg-type]
            shape = batch_shape(requests, settings, by_prompt)
            for batch in make_batches(requests, set(range(len(requests))), shape, by_prompt):
                rows.append({"unit": len(rows), "method": index, "role": role,
                             **request_columns([requests[i] for i in batch])})
    return rows


def request_columns(requests: Sequence["ImageRequest"]) -> dict[str, list[Any]]:
    return {"prompt_id": [r.prompt_id for r in requests], "prompt": [r.prompt for r in requests],
            "image_index": [int(r.image_index) for r in requests], "seed": [int(r.seed) for r in requests]}


def unit_requests(row: dict[str, Any]) -> list["ImageRequest"]:
    """The ImageRequests of a unit row (Ray hands lists back as arrays: converted to Python)."""
    from membench_eval.mitigation import ImageRequest

    cols = {k: [v.item() if hasattr(v, "item") else v for v in row[k]] for k in ("prompt_id", "prompt", "image_index", "seed")}
    return [ImageRequest(prompt_id=str(p), prompt=str(t), image_index=int(i), seed=int(s))
            for p, t, i, s in zip(cols["prompt_id"], cols["prompt"], cols["image_index"], cols["seed"])]


def score_slices(generated: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Scoring tasks from the generation stage's rows (``unit``, ``keys``, ``texts``): one per unit,
    in unit order (the serial run's scoring groups)."""
    return [{"slice": int(row["unit"]), "keys": [str(k) for k in row["keys"]], "texts": [str(t) for t in row["texts"]]}
            for row in sorted(generated, key=lambda r: int(r["unit"]))]


def ray_device(requested: str | None, cluster_gpus: float) -> str:
    """What each Ray actor runs on: "cuda" (its one GPU, which Ray makes cuda:0 in the actor) or
    "cpu". None/"auto": GPUs when the cluster has any. An explicit index cannot hold under Ray,
    which assigns the GPUs."""
    if requested == "cpu":
        return "cpu"
    if requested in (None, "auto"):
        return "cuda" if cluster_gpus >= 1 else "cpu"
    if requested == "cuda":
        if cluster_gpus < 1:
            raise MembenchError("device 'cuda' requested with the Ray engine, but the Ray cluster has no GPU")
        return "cuda"
    raise MembenchError(f"device {requested!r} with the Ray engine: Ray assigns one GPU to each actor; "
                        "pass 'cuda', 'cpu' or leave the device out")


# --- rows the actors return: a MembenchError travels as data -------------------------------


def each_row(batch: dict[str, Any], work: Any, empty: dict[str, Any]) -> dict[str, list[Any]]:
    """``work(row) -> {column: value}`` over a Ray batch, as columns; a MembenchError (a method's
    error, a store fault) becomes the row's ``error``, which the driver raises (``raise_errors``)."""
    n = len(next(iter(batch.values())))
    out: dict[str, list[Any]] = {}
    for j in range(n):
        row = {k: v[j] for k, v in batch.items()}
        try:
            values, error = work(row), ""
        except MembenchError as exc:
            values, error = None, pack_error(exc)
        if values is None:  # typed placeholders of a good row's columns: every block has one schema
            values = dict(empty)
        for name, value in {**values, "error": error}.items():
            out.setdefault(name, []).append(value)
    return out


def pack_error(exc: MembenchError) -> str:
    return json.dumps({"type": type(exc).__name__, "message": str(exc), "details": getattr(exc, "details", ""),
                       "exit_code": getattr(exc, "exit_code", MembenchError.exit_code)})


def _unpack(text: str) -> MembenchError:
    """The actor's error as the same class where it takes a plain message, else a MembenchError
    with its exit status."""
    from membench_eval import errors

    d = json.loads(text)
    cls = getattr(errors, d["type"], None)
    if isinstance(cls, type) and issubclass(cls, errors.MitigationError):
        return cls(d["message"], details=d["details"])
    if cls in (errors.MembenchError, errors.StoreError, errors.MissingWeightsError):
        return cls(d["message"])
    exc = MembenchError(d["message"])
    exc.exit_code = int(d["exit_code"])
    return exc


def raise_errors(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        if row.get("error"):
            raise _unpack(str(row["error"]))
