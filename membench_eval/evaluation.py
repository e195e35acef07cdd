"""Evaluating mitigation methods on a suite: the one library both shells call.

``membench run`` and ``pytest --membench`` are thin shells over this module:

1. ``Evaluation.plan(files, params)``: which method configs (base, the baselines already in the
   store, the user's methods with their parameter sweeps) and which prompts (after
   ``limit``/``subset``, and only trigger prompts with at least one available reference image).
   Cheap: no torch.
2. ``Evaluation.evaluate_prompts(method, role, prompts)``: generate the images missing from the
   run store (reusing what is there), score each image once (SSCD similarities to every available
   reference, CLIP score, aesthetic score: stored per image in the run store, so scores are reused
   too), and aggregate per prompt into ``PromptResult`` rows. Results do not depend on how prompts
   are grouped into calls (per-image seeds; scorers are batch-independent).
3. ``Evaluation.leaderboard(plan, results)``: the table with cluster-bootstrap intervals and
   paired deltas to base (``membench_eval.report``, ``membench_eval.stats``).

Models (pipeline, SSCD, CLIP, aesthetic, reference embeddings) load lazily, once per Evaluation.
A metric whose weights are missing is reported as unavailable with the reason on suites that allow
it (mini, where no CLIP weights exist offline); on the paper's suites missing weights are an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from membench_eval.errors import DataError, MembenchError
from membench_eval.evaluation_plan import SUBSETS, EvalOptions, MethodSpec, Plan, select_prompts
from membench_eval.image_scores import scorer_id
from membench_eval.metrics.score_rows import AESTHETIC_METRIC, CLIP_METRIC, SSCD_METRIC
from membench_eval.report.leaderboard import BASE_LABEL, Leaderboard, build_leaderboard
from membench_eval.report.records import PromptResult

__all__ = ["AESTHETIC_METRIC", "CLIP_METRIC", "SSCD_METRIC", "SUBSETS", "EvalOptions", "Evaluation", "MethodSpec",
           "Plan", "select_prompts"]

if TYPE_CHECKING:
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.mitigation import Mitigation
    from membench_eval.store.run_store import RunStore
    from membench_eval.suites.references import Coverage
    from membench_eval.suites.types import Prompt, Suite


class Evaluation:
    """A configured run: the suite, the store, and lazily loaded models."""

    def __init__(self, options: EvalOptions, *, suite: "Suite | None" = None) -> None:
        """``suite`` overrides ``options.suite`` (a Suite built in code, e.g. a custom benchmark)."""
        self.options = options
        if suite is not None:
            self.__dict__["suite"] = suite  # pre-fills the cached_property
        # Work done by this process (for the "reused from the store" summary line).
        self.counts: dict[str, int] = {"generated": 0, "reused": 0, "scored": 0, "scores_reused": 0}

    # --- configuration ------------------------------------------------------------------------

    @cached_property
    def suite(self) -> "Suite":
        from membench_eval.suites import get_suite

        return get_suite(self.options.suite, self.options.data_dir)

    @cached_property
    def settings(self) -> "GenerationSettings":
        from membench_eval.generation.settings import GenerationSettings

        batch = self.options.batch_size
        if batch == "auto":
            return GenerationSettings.for_suite(self.suite, seed=self.options.seed, auto_batch_size=True)
        return GenerationSettings.for_suite(self.suite, seed=self.options.seed, batch_size=batch)

    @property
    def model_name(self) -> str:
        return self.options.model or self.suite.model

    @property
    def sscd_backend(self) -> str:
        return self.options.sscd_backend or self.suite.sscd_backend

    @cached_property
    def store(self) -> "RunStore":
        from membench_eval.paths import cache_dir
        from membench_eval.store.run_store import RunStore

        root = Path(self.options.store_dir) if self.options.store_dir else cache_dir() / "runs"
        return RunStore(root)

    @cached_property
    def references(self) -> tuple[dict[str, Path], "Coverage"]:
        from membench_eval.suites.references import reference_paths

        return reference_paths(self.suite)

    def preflight(self) -> None:
        """Before any generation: the store opens (known format) and it and the leaderboard folder
        are writable (``membench_eval.preflight``); raises StoreError (exit status 3)."""
        from membench_eval.preflight import check_writable

        store = self.store
        for sub in ("records", "scores", "images"):
            check_writable(store.root / sub, "run store")
        check_writable(self.options.out_dir, "leaderboard folder (--out)")

    # --- planning -----------------------------------------------------------------------------

    def plan(self, method_files: Sequence[str], params: Sequence[str] = ()) -> Plan:
        """Method configs and prompts of the run (no model is loaded)."""
        from membench_eval.mitigation import Mitigation

        suite = self.suite
        methods: list[MethodSpec] = [MethodSpec(BASE_LABEL, "base", "base", {}, None, Mitigation())]
        user: list[MethodSpec] = []
        for path in method_files:
            for m in _load_method_configs(path, params):
                if m.label() == BASE_LABEL:
                    continue  # base always runs; a base.py file adds nothing
                if any(u.label == m.label() for u in user):
                    raise MembenchError(f"{path}: method {m.label()!r} is given twice")
                user.append(MethodSpec(m.label(), "method", m.name, m.params(), str(path), m))
        prompts: dict[str, list["Prompt"]] = {}
        coverage = None
        excluded = 0
        if suite.trigger is not None:
            paths, coverage = self.references
            if not paths:
                raise DataError(f"suite {suite.name}", "no memorized reference image is available: "
                                f"{coverage.summary()}; fetch them with `membench data fetch-references "
                                f"--suite {suite.cli_name}`")
            scorable = [p for p in suite.trigger.prompts if any(i in paths for i in p.memorized_ids)]
            excluded = len(suite.trigger.prompts) - len(scorable)
            prompts["trigger"] = select_prompts(scorable, role="trigger", limit=self.options.limit,
                                                subset=self.options.subset)
        if suite.general is not None:
            prompts["general"] = select_prompts(suite.general.prompts, role="general", limit=self.options.limit,
                                                subset=self.options.subset)
        if self.options.stored_baselines:
            methods += self._stored_configs(prompts, {BASE_LABEL} | {u.label for u in user})
        if self.options.reference and suite.reference_gallery is not None:
            methods.insert(0, MethodSpec(self._gallery_label(), "computed_reference", "reference", {}))
        if self.options.reference and "trigger" in prompts:
            methods[:0] = self._saved_api_reference()
        methods += user
        return Plan(suite, methods, prompts, coverage, excluded)

    def _stored_configs(self, prompts: dict[str, list["Prompt"]], taken: set[str]) -> list[MethodSpec]:
        """Configs complete in the store for these prompts and settings, from current code only
        (``membench_eval.stored_configs``): bundled baselines, then earlier configs of other files."""
        from membench_eval.paths import PACKAGE_ROOT
        from membench_eval.stored_configs import find_stored_configs

        found = find_stored_configs(self.store.records(), prompts, self.settings,
                                    model_matches=lambda row: _same_model(row, self.model_name),
                                    device=self.options.device, bundled_folder=PACKAGE_ROOT.parent / "mitigations")
        out: list[MethodSpec] = []
        for c in found:
            if c.label in taken:
                continue
            taken.add(c.label)
            out.append(MethodSpec(c.label, "baseline" if c.bundled else "stored", c.name, c.mitigation.params(),
                                  c.path, c.mitigation))
        return sorted(out, key=lambda m: (m.kind != "baseline", m.label))

    # --- lazily loaded models -----------------------------------------------------------------

    @property
    def pipeline(self) -> Any:
        from membench_eval.generation.pipeline import load_pipeline

        revision = self.suite.revision if self.options.model is None else None
        return self._load_once("pipeline", lambda: load_pipeline(self.model_name, revision=revision,
                                                                 device=self.options.device,
                                                                 compile=self.options.compile))

    @property
    def sscd(self) -> Any:
        from membench_eval.metrics.sscd import load_sscd

        return self._load_once("sscd", lambda: load_sscd(self.sscd_backend, device=self.options.device))

    def _load_once(self, name: str, load: Any) -> Any:
        """Load a model once; a failure (missing weights) is remembered and raised again at once,
        so thousands of pytest items do not each retry a download."""
        cache = self.__dict__.setdefault("_loaded", {})
        if name not in cache:
            try:
                cache[name] = (load(), None)
            except MembenchError as exc:
                cache[name] = (None, exc)
        value, error = cache[name]
        if error is not None:
            raise error
        return value

    @cached_property
    def reference_embeddings(self) -> dict[str, np.ndarray]:
        from membench_eval.metrics.sscd import reference_embeddings

        paths, _ = self.references
        return reference_embeddings(self.sscd, paths)

    @cached_property
    def _quality(self) -> dict[str, Any]:
        """CLIP and aesthetic scorers, or the reason each is unavailable (``quality_models``)."""
        from membench_eval.quality_models import load_quality_scorers

        return load_quality_scorers(self)

    @property
    def clip(self) -> Any:
        return self._quality["clip"]

    @property
    def aesthetic(self) -> Any:
        return self._quality["aesthetic"]

    @property
    def quality_scorers(self) -> dict[str, Any]:
        """Registered per-image metric name -> its scorer (None when unavailable): what scoring uses."""
        return {name: s for name, s in self._quality.items() if not name.endswith("_reason")}

    def unavailable(self) -> dict[str, str]:
        """Leaderboard column -> reason, for metrics this run cannot compute."""
        return dict(self.quality_status()["unavailable"])

    def quality_status(self) -> dict[str, Any]:
        """Which models scored this run's per-image metrics (CLIP, aesthetic, ...), or why not (plain
        data: the pytest plugin sends it from xdist workers, so the controller never loads the
        scorers itself)."""
        from membench_eval.metrics.registry import image_metrics

        specs = image_metrics()
        out: dict[str, Any] = {"unavailable": {}, **{s.model_key: None for s in specs}}
        for spec in specs:
            scorer = self._quality.get(spec.name)
            if scorer is None:
                why = self._quality.get(spec.name + "_reason") or spec.unavailable_reason("its scorer was not loaded")
                out["unavailable"].update({c.key: why for c in spec.columns()})
            else:
                out[spec.model_key] = scorer_id(scorer)
        return out

    # --- evaluation ---------------------------------------------------------------------------

    def evaluate_prompts(self, method: MethodSpec, role: str, prompts: Sequence["Prompt"]) -> list[PromptResult]:
        """Generate (or reuse) and score the images of ``prompts``; one PromptResult per prompt."""
        from membench_eval.generation.engine import generate
        from membench_eval.generation.seeding import plan_requests
        from membench_eval.image_scores import OverlappedScorer

        n = self.settings.images_per_prompt(role)  # type: ignore[arg-type]
        if method.kind == "computed_reference":
            saved = self.__dict__.get("_saved_reference")
            if saved is not None and saved[0].label == method.label:
                return [saved[1][p.prompt_id] for p in prompts if p.prompt_id in saved[1]]
            return self._gallery_reference(method, role, prompts, n)
        requests = plan_requests(prompts, n, self.settings.seed)
        scorer = OverlappedScorer(self) if self.options.overlap_scoring else None
        report = generate(self.pipeline, requests, method.mitigation, self.settings, self.store,
                          progress=self.options.progress, on_stored=scorer if scorer and scorer.ready() else None)
        self.counts["generated"] += report.new
        self.counts["reused"] += report.reused
        scores = self.score_keys(report.keys, [r.prompt for r in requests])
        for key in report.keys:  # the measured cost (``generation.batch.run_batch``), when stored
            evals = (self.store.record(key).get("records") or {}).get("unet_evals")
            if isinstance(evals, (int, float)):
                scores[key]["unet_evals"] = float(evals)
        results = []
        for k, prompt in enumerate(prompts):
            rows = [scores[key] for key in report.keys[k * n:(k + 1) * n]]
            results.append(self._aggregate(method, role, prompt, rows))
        return results

    def score_keys(self, keys: Sequence[str], texts: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Per-image scores of stored images, from the store or computed once and stored
        (``membench_eval.image_scores``)."""
        from membench_eval.image_scores import score_keys

        return score_keys(self, keys, texts)

    # --- computed references (membench_eval.reference.evaluate) ----------------------------

    def _saved_api_reference(self) -> list[MethodSpec]:
        from membench_eval.reference.evaluate import saved_api_reference

        return saved_api_reference(self)

    def _gallery_label(self) -> str:
        from membench_eval.reference.evaluate import gallery_label

        return gallery_label(self.suite)

    def _gallery_reference(self, method: MethodSpec, role: str, prompts: Sequence["Prompt"], k: int) -> list[PromptResult]:
        from membench_eval.reference.evaluate import gallery_reference

        return gallery_reference(self, method, role, prompts, k)

    def _score_loaded(self, images: list[Any], texts: list[str]) -> list[dict[str, Any]]:
        from membench_eval.image_scores import score_images

        return score_images(self, images, texts)

    def _aggregate(self, method: MethodSpec, role: str, prompt: "Prompt", rows: list[dict[str, Any]]) -> PromptResult:
        from membench_eval.image_scores import aggregate_prompt

        return aggregate_prompt(self, method, role, prompt, rows)

    def evaluate_plan(self, plan: Plan) -> list[PromptResult]:
        """Every (method, prompt set) of the plan in large batches (the CLI's path)."""
        results: list[PromptResult] = []
        for method in plan.methods:
            for role, prompts in plan.prompts.items():
                if prompts and method.measures(role):
                    results += self.evaluate_prompts(method, role, prompts)
        return results

    # --- reporting ----------------------------------------------------------------------------

    def metadata(self, plan: Plan, quality: dict[str, Any] | None = None) -> dict[str, Any]:
        """What the leaderboard's numbers depend on (the JSON's ``metadata``; ``run_metadata``)."""
        from membench_eval.run_metadata import run_metadata

        return run_metadata(self, plan, quality if quality is not None else self.quality_status())

    def leaderboard(self, plan: Plan, results: Sequence[PromptResult],
                    quality: dict[str, Any] | None = None) -> Leaderboard:
        """The table (with intervals and paired deltas) from per-prompt results. ``quality`` is a
        ``quality_status()`` from the processes that scored (default: this one's).

        The suite's reference targets are shown only where this run's SSCD backend / CLIP model
        (from the metadata) match what they were published with; every row is checked against the
        plan's prompt sets (``expected``), so a row missing results is marked incomplete."""
        quality = quality if quality is not None else self.quality_status()
        t = self.suite.targets
        kinds = {m.label: m.kind for m in plan.methods}
        expected = {role: [p.prompt_id for p in ps] for role, ps in plan.prompts.items()}
        metadata = self.metadata(plan, quality)
        for m in plan.methods:
            if m.kind == "computed_reference":
                rs = [r for r in results if r.label == m.label]
                images = sum(r.n_images for r in rs)
                copies = int(sum(r.metrics.get("reference_copies") or 0 for r in rs))
                metadata["computed_reference"] = (
                    f"{m.label}: {images} retrieved images over {len(rs)} prompts, {copies} of them copies of a "
                    f"memorized image (SSCD > 0.5, kept); retrieval uses the CLIP model that scores the CLIP "
                    f"column, so its CLIP is an upper-biased proxy")
        return build_leaderboard(
            results, suite=self.suite.name, kinds=kinds,
            targets=t if (t.top1_sscd is not None or t.clip is not None) else None, targets_source=t.source,
            expected=expected, unavailable=dict(quality["unavailable"]), metadata=metadata,
            n_resamples=self.options.bootstrap_resamples, seed=self.options.bootstrap_seed,
            cluster_method=self.options.cluster_method,  # type: ignore[arg-type]
        )


# --- helpers --------------------------------------------------------------------------------


def _load_method_configs(path: str, params: Sequence[str]) -> list["Mitigation"]:
    """Every parameter setting of the method in ``path`` (a sweep gives several)."""
    from membench_eval.mitigation_loader import load_mitigations

    return list(load_mitigations(path, None, list(params)))


def _load_method(path: Path, params: dict[str, str]) -> "Mitigation":
    from membench_eval.mitigation_loader import load_mitigation

    return load_mitigation(path, None, params)


def _same_model(row: dict[str, Any], model: str) -> bool:
    """Store rows name the model as a hub id or ``local`` (+ path); match either way."""
    if row.get("model") == model:
        return True
    path = row.get("model_path")
    try:
        return bool(path) and Path(path).resolve() == Path(model).expanduser().resolve()
    except OSError:
        return False
