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

Models (pipeline, SSCD, CLIP, aesthetic, reference embeddings) load lazily, once per Evaluation
(``models``, a ``ModelCache`` two evaluations may share). The helpers of this package (plan,
scoring, quality, metadata, stored configs, computed references) get what they need as arguments,
never the Evaluation itself.
A metric whose weights are missing is reported as unavailable with the reason on suites that allow
it (mini, where no CLIP weights exist offline); on the paper's suites missing weights are an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from membench_eval.errors import MembenchError
from membench_eval.evaluation.model_cache import ModelCache
from membench_eval.evaluation.plan import EvalOptions, MethodSpec, Plan, select_prompts
from membench_eval.evaluation.scoring import Scorers, scorer_id
from membench_eval.report.leaderboard import BASE_LABEL, Leaderboard, build_leaderboard
from membench_eval.report.records import PromptResult

__all__ = ["Evaluation"]

if TYPE_CHECKING:
    from membench_eval.evaluation.scoring import OverlappedScorer
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.store.run_store import RunStore
    from membench_eval.suites.references import Coverage
    from membench_eval.suites.types import Prompt, Suite


class Evaluation:
    """A configured run: the suite, the store, and lazily loaded models."""

    def __init__(self, options: EvalOptions, *, suite: "Suite | None" = None) -> None:
        """``suite`` overrides ``options.suite`` (a Suite built in code, e.g. a custom benchmark).

        Cached properties (``settings``, ``reference_embeddings``, ``quality_scorers``) may be
        assigned to inject a value; ``models`` may be replaced by another evaluation's cache."""
        self.options = options
        if suite is not None:
            self.__dict__["suite"] = suite  # pre-fills the cached_property
        # Work done by this process (for the "reused from the store" summary line).
        self.counts: dict[str, int] = {"generated": 0, "reused": 0, "scored": 0, "scores_reused": 0}
        self.models = ModelCache()
        self._scored_here: set[str] = set()  # keys the OverlappedScorer of this run scored
        # The saved web image-search reference row and its results (``plan`` finds it).
        self._saved_reference: tuple[MethodSpec, dict[str, PromptResult]] | None = None

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
        """Before any generation: the store opens (known format), it and the leaderboard folder are
        writable, and the scorers' weights are on disk (``membench_eval.evaluation.preflight``);
        raises StoreError or MissingWeightsError (exit status 3)."""
        from membench_eval.evaluation.preflight import check_scorer_weights, check_writable

        store = self.store
        for sub in ("records", "scores", "images"):
            check_writable(store.root / sub, "run store")
        check_writable(self.options.out_dir, "leaderboard folder (--out)")
        check_scorer_weights(self.options, self.suite)  # MissingWeightsError (exit 3) before any image

    def store_problems(self) -> list[str]:
        """Damaged store entries this process found (quarantined and regenerated); none when the
        store was never opened."""
        return list(self.store.problems) if "store" in self.__dict__ else []

    # --- planning -----------------------------------------------------------------------------

    def plan(self, method_files: Sequence[str], params: Sequence[str] = ()) -> Plan:
        """Method configs and prompts of the run (no model is loaded)."""
        from membench_eval.mitigation import Mitigation
        from membench_eval.plugins.loader import MITIGATION, resolve_file
        from membench_eval.plugins.mitigations import load_mitigations

        suite = self.suite
        methods: list[MethodSpec] = [MethodSpec(BASE_LABEL, "base", "base", {}, None, Mitigation())]
        user: list[MethodSpec] = []
        # A bundled method's bare name (``rna``) becomes its file, so the leaderboard names the file.
        for path in [str(resolve_file(f, MITIGATION)) for f in method_files]:
            for m in load_mitigations(path, None, list(params)):  # every setting of a sweep
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
                from membench_eval.evaluation.applicability import no_reference_error

                raise no_reference_error(suite, coverage)
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
            methods.insert(0, MethodSpec(self.gallery_label, "computed_reference", "reference", {}))
        if self.options.reference and "trigger" in prompts:
            methods[:0] = self._saved_api_reference()
        methods += user
        return Plan(suite, methods, prompts, coverage, excluded)

    def _stored_configs(self, prompts: dict[str, list["Prompt"]], taken: set[str]) -> list[MethodSpec]:
        """Configs complete in the store for these prompts and settings, from current code only
        (``membench_eval.evaluation.stored_configs``): bundled baselines, then earlier configs of other files."""
        from membench_eval.bundle import folder
        from membench_eval.evaluation.stored_configs import find_stored_configs, same_model

        found = find_stored_configs(self.store, prompts, self.settings,
                                    model_matches=lambda row: same_model(row, self.model_name),
                                    device=self.options.device, bundled_folder=folder("mitigations"))
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
        from membench_eval.models.loading import load_pipeline

        revision = self.suite.revision if self.options.model is None else None
        return self.models.get("pipeline", lambda: load_pipeline(self.model_name, revision=revision,
                                                                 device=self.options.device,
                                                                 compile=self.options.compile))

    @property
    def sscd(self) -> Any:
        from membench_eval.metrics.sscd import load_sscd

        return self.models.get("sscd", lambda: load_sscd(self.sscd_backend, device=self.options.device))

    @cached_property
    def reference_embeddings(self) -> dict[str, np.ndarray]:
        from membench_eval.metrics.sscd import reference_embeddings

        paths, _ = self.references
        return reference_embeddings(self.sscd, paths)

    @cached_property
    def quality_scorers(self) -> dict[str, Any]:
        """Registered per-image metric name -> its scorer (None when unavailable), plus
        ``<name>_reason`` for each unavailable one (``evaluation.quality``)."""
        from membench_eval.evaluation.quality import load_quality_scorers

        return load_quality_scorers(self.options, self.suite)

    @property
    def quality_used(self) -> bool:
        """Whether this process loaded (or was given) the quality scorers."""
        return "quality_scorers" in self.__dict__

    @property
    def clip(self) -> Any:
        return self.quality_scorers["clip"]

    @property
    def aesthetic(self) -> Any:
        return self.quality_scorers["aesthetic"]

    def scorers(self, *, store: bool = True) -> Scorers:
        """The loaded scorers, references and (unless ``store`` is False: in-memory scoring only)
        the store that scoring reads; loads what is missing, in that order."""
        run_store = self.store if store else None
        sscd, refs = self.sscd, self.reference_embeddings
        return Scorers(run_store, sscd, refs, self.quality_scorers, self.counts)

    def scorer_ids(self) -> dict[str, str | None]:
        """The SSCD backend and CLIP model that score this run (what a saved reference must match)."""
        return {"sscd_backend": self.sscd.fingerprint, "clip_model": self.quality_status()["clip_model"]}

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
            scorer = self.quality_scorers.get(spec.name)
            if scorer is None:
                why = self.quality_scorers.get(spec.name + "_reason") or spec.unavailable_reason("its scorer was not loaded")
                out["unavailable"].update({c.key: why for c in spec.columns()})
            else:
                out[spec.model_key] = scorer_id(scorer)
        return out

    # --- evaluation ---------------------------------------------------------------------------

    def evaluate_prompts(self, method: MethodSpec, role: str, prompts: Sequence["Prompt"]) -> list[PromptResult]:
        """Generate (or reuse) and score the images of ``prompts``; one PromptResult per prompt."""
        from membench_eval.generation.engine import generate
        from membench_eval.generation.seeding import plan_requests

        n = self.settings.images_per_prompt(role)  # type: ignore[arg-type]
        if method.kind == "computed_reference":
            saved = self._saved_reference
            if saved is not None and saved[0].label == method.label:
                return [saved[1][p.prompt_id] for p in prompts if p.prompt_id in saved[1]]
            return self._gallery_reference(method, role, prompts, n)
        from membench_eval.evaluation.applicability import not_applicable_reason

        if getattr(method.mitigation, "needs", None) and not_applicable_reason(method, self.pipeline):
            return []  # nothing to act on in this family: the row reads n/a (``not_applicable``)
        requests = plan_requests(prompts, n, self.settings.seed)
        pipe, settings, store = self.pipeline, self.settings, self.store  # loaded before the scorers
        scorer = self._overlapped_scorer() if self.options.overlap_scoring else None
        report = generate(pipe, requests, method.mitigation, settings, store,
                          progress=self.options.progress, on_stored=scorer)
        self.counts["generated"] += report.new
        self.counts["reused"] += report.reused
        return self._prompt_results(method, role, prompts, report.keys, [r.prompt for r in requests], n)

    def _prompt_results(self, method: MethodSpec, role: str, prompts: Sequence["Prompt"], keys: Sequence[str],
                        texts: Sequence[str], n: int) -> list[PromptResult]:
        """Per prompt: its cached result, or its images' scores aggregated (``evaluation.prompt_cache``)."""
        from membench_eval.evaluation.prompt_cache import cache_key_maker, prompt_results
        from membench_eval.evaluation.scoring import backend_ids

        scorers = self.scorers()
        ids, refs, seed = backend_ids(scorers), list(scorers.reference_embeddings), self.settings.seed

        def reused(keys: list[str]) -> None:
            self.counts["scores_reused"] += sum(1 for k in dict.fromkeys(keys) if k not in self._scored_here)

        return prompt_results(
            self.store, method, role, prompts, keys, texts, n, reused=reused,
            make_key=cache_key_maker(scorers=ids, reference_ids=refs, run_seed=seed, method=method, role=role),
            score=self.score_keys, aggregate=lambda p, rows: self.aggregate(method, role, p, rows))

    def _overlapped_scorer(self) -> "OverlappedScorer | None":
        """The engine's ``on_stored`` scorer, or None when a scorer cannot load (then scoring
        happens after generation, where the failure is raised)."""
        from membench_eval.evaluation.scoring import OverlappedScorer

        try:
            scorers = self.scorers()
        except MembenchError:
            return None
        scorer = OverlappedScorer(scorers, device=self.options.device, scored=self._scored_here)
        return scorer if scorer.ready() else None

    def score_keys(self, keys: Sequence[str], texts: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Per-image scores of stored images, from the store or computed once and stored
        (``membench_eval.evaluation.scoring``)."""
        from membench_eval.evaluation.scoring import score_keys

        return score_keys(self.scorers(), keys, texts, fresh=self._scored_here)

    def score_images(self, images: list[Any], texts: list[str]) -> list[dict[str, Any]]:
        """Every metric of in-memory images (not stored): one score row per image."""
        from membench_eval.evaluation.scoring import score_images

        return score_images(self.scorers(store=False), images, texts)

    def aggregate(self, method: MethodSpec, role: str, prompt: "Prompt", rows: list[dict[str, Any]]) -> PromptResult:
        """One prompt's result row from its images' score rows (``score_keys`` / ``score_images``)."""
        from membench_eval.evaluation.scoring import aggregate_prompt

        return aggregate_prompt(self.reference_embeddings.keys(), self.settings.seed, method, role, prompt, rows)

    # --- computed references (membench_eval.evaluation.computed_reference) ------------------------

    @property
    def gallery_label(self) -> str:
        """The leaderboard label of the suite's local-gallery reference row."""
        from membench_eval.evaluation.computed_reference import gallery_label

        return gallery_label(self.suite)

    def _saved_api_reference(self) -> list[MethodSpec]:
        """The web image-search reference saved by `membench reference --source api`, when it was
        scored with this run's SSCD and CLIP models (loads those scorers only if a saved one exists)."""
        from membench_eval.evaluation.computed_reference import saved_api_reference
        from membench_eval.reference.api_reference import reference_folder

        found = saved_api_reference(
            reference_folder(self.options.reference_dir), self.suite.result_key,
            sscd_backend=lambda: self.sscd.fingerprint, clip_model=lambda: self.quality_status()["clip_model"])
        if found is None:
            return []
        self._saved_reference = found
        return [found[0]]

    def _gallery_reference(self, method: MethodSpec, role: str, prompts: Sequence["Prompt"], k: int) -> list[PromptResult]:
        from membench_eval.evaluation.computed_reference import gallery_reference
        from membench_eval.reference.gallery import load_gallery

        if self.clip is None:
            raise MembenchError(f"suite {self.suite.name}: the gallery reference retrieves by CLIP, which is not "
                                f"available: {self.unavailable().get('clip')}")
        gallery = self.models.get("gallery", lambda: load_gallery(self.suite.reference_gallery))
        return gallery_reference(gallery, self.clip, prompts, k, score=self.score_images,
                                 aggregate=lambda prompt, rows: self.aggregate(method, role, prompt, rows))

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
        """What the leaderboard's numbers depend on (the JSON's ``metadata``; ``evaluation.metadata``)."""
        from membench_eval.evaluation.metadata import run_metadata

        quality = quality if quality is not None else self.quality_status()
        return run_metadata(plan, quality, suite=self.suite, settings=self.settings, model=self.model_name,
                            sscd_backend=self.sscd_backend, options=self.options, store_root=self.store.root)

    def leaderboard(self, plan: Plan, results: Sequence[PromptResult],
                    quality: dict[str, Any] | None = None) -> Leaderboard:
        """The table (with intervals and paired deltas) from per-prompt results. ``quality`` is a
        ``quality_status()`` from the processes that scored (default: this one's).

        The suite's reference targets are shown only where this run's SSCD backend / CLIP model
        (from the metadata) match what they were published with; every row is checked against the
        plan's prompt sets (``expected``), so a row missing results is marked incomplete."""
        from membench_eval.evaluation.computed_reference import describe

        quality = quality if quality is not None else self.quality_status()
        t = self.suite.targets
        kinds = {m.label: m.kind for m in plan.methods}
        expected = {role: [p.prompt_id for p in ps] for role, ps in plan.prompts.items()}
        metadata = self.metadata(plan, quality)
        from membench_eval.evaluation.applicability import family_metadata

        metadata.update(family_metadata(plan, self.pipeline if "pipeline" in self.models else None))
        for m in plan.methods:
            if m.kind == "computed_reference":
                metadata["computed_reference"] = describe(m.label, results)
        return build_leaderboard(
            results, suite=self.suite.name, kinds=kinds,
            targets=t if (t.top1_sscd is not None or t.clip is not None) else None, targets_source=t.source,
            expected=expected, unavailable=dict(quality["unavailable"]), metadata=metadata,
            n_resamples=self.options.bootstrap_resamples, seed=self.options.bootstrap_seed,
            cluster_method=self.options.cluster_method,  # type: ignore[arg-type]
        )
