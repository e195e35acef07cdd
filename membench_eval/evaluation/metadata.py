"""The leaderboard JSON's ``metadata``: everything a run's numbers depend on."""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

from membench_eval.metrics.registry import image_metrics

if TYPE_CHECKING:
    from membench_eval.evaluation.plan import EvalOptions, Plan
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.suites.types import Suite


def run_metadata(plan: "Plan", quality: dict[str, Any], *, suite: "Suite", settings: "GenerationSettings",
                 model: str, sscd_backend: str, options: "EvalOptions", store_root: Path) -> dict[str, Any]:
    """Suite, model, scorers, seeds, settings, methods' code, coverage and package versions of a
    run of ``plan`` (``quality``: a ``quality_status()``, from the processes that scored;
    ``options``: for the prompt selection; ``store_root``: where `membench attack` results are)."""
    s = settings
    md: dict[str, Any] = {
        "suite": suite.name,
        **({"suite_file": suite.source_file, "suite_sha256": suite.content_sha256}
           if suite.content_sha256 is not None else {}),
        "model": model,
        "sscd_backend": sscd_backend,
        **{spec.model_key: quality.get(spec.model_key) for spec in image_metrics()},  # clip_model, aesthetic_model
        "seed": s.seed,
        "seed_scheme": "per-image seed = sha256(run seed, prompt id, image index)",
        "methods": _method_sources(plan),
        "batch_size": "auto" if s.auto_batch_size else s.batch_size,
        "engine": _engine_version(),
        "generation": {"num_inference_steps": s.num_inference_steps, "guidance_scale": s.guidance_scale,
                       "height": s.height, "width": s.width},
        "images_per_prompt": {"trigger": s.trigger_images_per_prompt, "general": s.general_images_per_prompt},
        "limit": options.limit,
        "subset": options.subset,
        "prompts": {role: len(ps) for role, ps in plan.prompts.items()},
        "versions": _versions(),
    }
    from membench_eval.report.coverage import run_coverage

    planned = plan.suite
    trigger_total = len(planned.trigger.prompts) if planned.trigger is not None else None
    cov = plan.coverage
    line, detail = run_coverage(
        plan.prompts,
        trigger_total=trigger_total,
        trigger_scorable=None if trigger_total is None else trigger_total - plan.excluded_prompts,
        images_total=len(planned.memorized) if cov is not None else None,
        images_available=None if cov is None else set(planned.memorized) - set(cov.unavailable),
        general_total=len(planned.general.prompts) if planned.general is not None else None,
        limit=options.limit, subset=options.subset,
        suite_summary=cov.summary() if cov is not None else None,
    )
    md["coverage"] = line  # what this run ran, then the suite's own coverage
    md["run_coverage"] = detail
    if cov is not None:
        md["coverage_detail"] = cov.to_dict()
        md["trigger_prompts_without_reference"] = plan.excluded_prompts
    from membench_eval.report.attack_section import stored_attack_summary

    attack = stored_attack_summary(store_root, suite.result_key, s.seed)  # `membench attack` results
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
    from membench_eval.plugins.source import fingerprint_method

    out = {}
    for m in plan.methods:
        if m.mitigation is not None:
            src = fingerprint_method(m.mitigation)
            out[m.label] = {"path": src.path, "sha256": src.sha256, "oracle": bool(m.mitigation.oracle)}
    return out


def _engine_version() -> str:
    from membench_eval.generation.engine import GENERATION_CODE_VERSION

    return GENERATION_CODE_VERSION
