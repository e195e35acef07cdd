"""A leaderboard rebuilt from the JSON a run wrote (``report.output.to_json``): no generation, no models.

The JSON holds every per-prompt value, the metadata, the bootstrap settings, the rows' kinds, the
planned prompt sets and the published targets with what they were measured with, so rebuilding
gives the same table (the bootstrap is seeded) and every artefact can be drawn again
(``membench report``). Results can be left out on the way (prompts whose images are missing from
the run store): the planned prompt sets stay, so those rows come out incomplete, never averaged
over fewer prompts silently.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from membench_eval.errors import MembenchError
from membench_eval.report.leaderboard import build_leaderboard
from membench_eval.metrics.registry import columns_by_key
from membench_eval.report.records import PromptResult
from membench_eval.suites.types import ReferenceTargets

if TYPE_CHECKING:
    from membench_eval.report.leaderboard import Leaderboard

REQUIRED_KEYS = ("schema_version", "suite", "rows", "per_prompt", "bootstrap")
EXPECTED = ("a leaderboard JSON written by `membench run` or `pytest --membench` (<suite>.json, e.g. mini.json "
            "or sd1.limit-2.json, with keys schema_version, suite, rows, per_prompt)")


def read_leaderboard_json(path: str | Path) -> dict[str, Any]:
    """The JSON of ``path``, checked to be a leaderboard (MembenchError, exit 2, when it is not)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MembenchError(f"{path}: no such file; expected {EXPECTED}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise MembenchError(f"{path}: not readable as JSON ({exc}); expected {EXPECTED}") from None
    if not is_leaderboard_json(data):
        missing = [k for k in REQUIRED_KEYS if not isinstance(data, dict) or k not in data]
        raise MembenchError(f"{path}: not a membench leaderboard (missing {', '.join(missing)}); expected {EXPECTED}")
    return data


def is_leaderboard_json(data: Any) -> bool:
    return isinstance(data, dict) and all(k in data for k in REQUIRED_KEYS) and isinstance(data["per_prompt"], list)


def _targets(reference: dict[str, Any]) -> tuple[Any, str]:
    targets = reference.get("targets") or {}
    source = reference.get("source", "")
    if not targets:
        return None, source
    if not reference.get("checked"):
        return {k: t["value"] for k, t in targets.items() if t.get("value") is not None}, source
    kw: dict[str, Any] = {"source": source}
    for key in ("top1_sscd", "clip"):
        if key in targets:
            kw[key] = targets[key]["value"]
            kw.update({k: v for k, v in (targets[key].get("measured_with") or {}).items() if v is not None})
    return ReferenceTargets(**kw), source


def leaderboard_from_json(data: dict[str, Any], *,
                          keep: Callable[[PromptResult], bool] | None = None) -> "Leaderboard":
    """The leaderboard of a ``to_json`` record; ``keep`` filters the per-prompt results first."""
    results: Iterable[PromptResult] = [PromptResult.from_dict(d) for d in data["per_prompt"]]
    if keep is not None:
        results = [r for r in results if keep(r)]
    results = list(results)
    kinds = {r["label"]: r["kind"] for r in data["rows"] if r["kind"] != "reference"}
    expected = data.get("expected_prompts") or {}
    if not expected:  # an older record: every prompt any row has is the plan
        exp: dict[str, set[str]] = {}
        for d in data["per_prompt"]:
            exp.setdefault(str(d["role"]), set()).add(str(d["prompt_id"]))
        expected = {role: sorted(ids) for role, ids in exp.items()}
    known = columns_by_key()
    unknown = [c["key"] for c in data.get("columns", []) if c["key"] not in known]
    if unknown:
        raise MembenchError(f"leaderboard JSON has columns this membench does not know: {unknown}")
    columns = tuple(known[c["key"]] for c in data.get("columns", [])) or tuple(known.values())
    targets, source = _targets(data.get("reference") or {})
    b = data["bootstrap"]
    return build_leaderboard(
        results, suite=str(data["suite"]), kinds=kinds, targets=targets, targets_source=source,
        expected=expected, unavailable=data.get("unavailable") or {}, metadata=data.get("metadata") or {},
        n_resamples=int(b["n_resamples"]), seed=int(b["seed"]), confidence=float(b["confidence"]),
        cluster_method=b.get("cluster_method", "components"), columns=columns,
    )
