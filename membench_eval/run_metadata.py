"""The leaderboard JSON's ``metadata``: everything a run's numbers depend on."""

from __future__ import annotations

import importlib.metadata
import platform
from typing import TYPE_CHECKING, Any

from membench_eval.metrics.registry import image_metrics

if TYPE_CHECKING:
    from membench_eval.evaluation_plan import Plan


def run_metadata(ev: Any, plan: "Plan", quality: dict[str, Any]) -> dict[str, Any]:
    """Suite, model, scorers, seeds, settings, methods' code, coverage and package versions of
    ``ev`` (an ``Evaluation``) and ``plan`` (``quality``: a ``quality_status()``, from the
    processes that scored)."""
    s = ev.settings
    md: dict[str, Any] = {
        "suite": ev.suite.name,
        **({"suite_file": ev.suite.source_file, "suite_sha256": ev.suite.content_sha256}
           if ev.suite.content_sha256 is not None else {}),
        "model": ev.model_name,
        "sscd_backend": ev.sscd_backend,
        **{spec.model_key: quality.get(spec.model_key) for spec in image_metrics()},  # clip_model, aesthetic_model
        "seed": s.seed,
        "seed_scheme": "per-image seed = sha256(run seed, prompt id, image index)",
        "methods": _method_sources(plan),
        "batch_size": "auto" if s.auto_batch_size else s.batch_size,
        "engine": _engine_version(),
        "generation": {"num_inference_steps": s.num_inference_steps, "guidance_scale": s.guidance_scale,
                       "height": s.height, "width": s.width},
        "images_per_prompt": {"trigger": s.trigger_images_per_prompt, "general": s.general_images_per_prompt},
        "limit": ev.options.limit,
        "subset": ev.options.subset,
        "prompts": {role: len(ps) for role, ps in plan.prompts.items()},
        "versions": _versions(),
    }
    from membench_eval.report.coverage import run_coverage

    suite = plan.suite
    trigger_total = len(suite.trigger.prompts) if suite.trigger is not None else None
    cov = plan.coverage
    line, detail = run_coverage(
        plan.prompts,
        trigger_total=trigger_total,
        trigger_scorable=None if trigger_total is None else trigger_total - plan.excluded_prompts,
        images_total=len(suite.memorized) if cov is not None else None,
        images_available=None if cov is None else set(suite.memorized) - set(cov.unavailable),
        general_total=len(suite.general.prompts) if suite.general is not None else None,
        limit=ev.options.limit, subset=ev.options.subset,
        suite_summary=cov.summary() if cov is not None else None,
    )
    md["coverage"] = line  # what this run ran, then the suite's own coverage
    md["run_coverage"] = detail
    if cov is not None:
        md["coverage_detail"] = cov.to_dict()
        md["trigger_prompts_without_reference"] = plan.excluded_prompts
    from membench_eval.report.attack_section import stored_attack_summary

    attack = stored_attack_summary(ev.store.root, ev.suite.result_key, s.seed)  # `membench attack` results
    if attack is not None:
        md["adaptive_attack"] = attack
    return md


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("membench-eval", "torch", "diffusers", "transformers", "open_clip_torch", "onnxruntime", "numpy"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def _method_sources(plan: "Plan") -> dict[str, dict[str, Any]]:
    """Leaderboard label -> the method file and the fingerprint of the code its images come from."""
    from membench_eval.method_source import fingerprint_method

    out = {}
    for m in plan.methods:
        if m.mitigation is not None:
            src = fingerprint_method(m.mitigation)
            out[m.label] = {"path": src.path, "sha256": src.sha256, "oracle": bool(m.mitigation.oracle)}
    return out


def _engine_version() -> str:
    from membench_eval.generation.engine import GENERATION_CODE_VERSION

    return GENERATION_CODE_VERSION
