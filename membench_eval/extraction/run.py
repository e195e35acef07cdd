"""Running an extraction method on an unconditional suite and scoring it with AMS/UMS.

For each seed the method returns ``n_generated`` images (cached in the run store under the
method's name, parameters and source hash, the model's identity, n, seed and steps); the harness
embeds them with SSCD, takes the (n x training-set) similarity matrix and scores it with the ONE
AMS/UMS implementation (``metrics.memorization.memorization_scores``). Every method gets the same
n, so UMS (which depends on n) is comparable across methods. Intervals are over seeds
(``stats.seeds.seed_interval``).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from membench_eval.errors import ExtractionError
from membench_eval.extraction.cache import StageCache
from membench_eval.extraction.suite import UncondSuite
from membench_eval.extraction_method import EXTRACTION_CODE_VERSION, ExtractionContext, ExtractionMethod
from membench_eval.metrics.memorization import MemorizationScores, memorization_scores
from membench_eval.bundle import folder

if TYPE_CHECKING:
    from membench_eval.models.uncond import UncondPipeline
    from membench_eval.metrics.sscd import SSCDModel

# extractions/ (the bundled method files): the installed wheel's copy or the checkout's folder.
METHODS_DIR = folder("extractions")


@dataclass(frozen=True)
class ExtractionSettings:
    """The run's settings: equal for every method compared in one table."""

    n_generated: int = 64
    seeds: int = 3
    first_seed: int = 0
    sscd_backend: str = "disc_mixup_onnx"
    device: str | None = "cpu"
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.n_generated < 1:
            raise ExtractionError(f"n_generated must be >= 1, got {self.n_generated}")
        if self.seeds < 1:
            raise ExtractionError(f"seeds must be >= 1, got {self.seeds}")

    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))


@dataclass
class SeedResult:
    seed: int
    scores: MemorizationScores
    records: dict[str, Any]


@dataclass
class ExtractionResult:
    method: str
    label: str
    params: dict[str, Any]
    suite: str
    n_generated: int
    per_seed: list[SeedResult]
    seconds: float
    cache: dict[str, dict[str, int]] = field(default_factory=dict)

    def values(self, metric: str, band: str) -> list[float]:
        """Per-seed AMS or UMS of one band."""
        return [getattr(r.scores, metric)[band] for r in self.per_seed]

    def summary(self) -> dict[str, Any]:
        """JSON-ready: per band mean and interval over seeds, and the per-seed figures."""
        from membench_eval.stats.seeds import seed_interval
        from membench_eval.metrics.memorization import BAND_NAMES

        bands = self.per_seed[0].scores.bands
        return {
            "method": self.method, "label": self.label, "params": self.params, "suite": self.suite,
            "n_generated": self.n_generated, "seeds": [r.seed for r in self.per_seed],
            "bands": bands.to_dict(), "bands_text": bands.describe(),
            "ams": {b: seed_interval(self.values("ams", b)) for b in BAND_NAMES},
            "ums": {b: seed_interval(self.values("ums", b)) for b in BAND_NAMES},
            "per_seed": [{"seed": r.seed, **r.scores.as_dict(),
                          "matched_high": list(r.scores.matched["high"]), "records": r.records} for r in self.per_seed],
            "seconds": round(self.seconds, 1),
            "cache": self.cache,
        }


def resolve_method(method: str | Path | ExtractionMethod, params: list[str] | None = None) -> ExtractionMethod:
    """A configured method: an instance as is; a bundled name (``plain``, ``side``: the files in
    ``extractions/``) or a path to a ``.py`` file defining one ``ExtractionMethod`` subclass."""
    from membench_eval.plugins import loader as plugin_loader

    if isinstance(method, ExtractionMethod):
        if params:
            raise ExtractionError("parameters are given with the method object, not as --param")
        return method
    path = plugin_loader.resolve_file(method, plugin_loader.EXTRACTION)
    configs = plugin_loader.load_configs(path, plugin_loader.EXTRACTION, None, params)
    if len(configs) != 1:
        raise ExtractionError(f"{path}: --param gives {len(configs)} configurations; extract runs one at a time")
    return configs[0]


def method_identity(method: ExtractionMethod) -> dict[str, Any]:
    from membench_eval.plugins.source import fingerprint_method

    try:
        source = fingerprint_method(method).sha256  # type: ignore[arg-type]
    except ValueError as exc:
        raise ExtractionError(str(exc)) from None
    return {"method": method.name, "params": method.params(), "source": source}


class Runner:
    """Loads the model and SSCD once; ``run`` scores one method over the settings' seeds."""

    def __init__(self, suite: UncondSuite, settings: ExtractionSettings, store: str | Path, *, progress: bool = False,
                 pipe: "UncondPipeline | None" = None, sscd: "SSCDModel | None" = None):
        from membench_eval.models.uncond import load_uncond_pipeline
        from membench_eval.metrics.sscd import load_sscd, reference_embeddings, stack_embeddings

        self.suite, self.settings, self.progress = suite, settings, progress
        self.cache = StageCache(store)
        self.pipe = pipe or load_uncond_pipeline(suite.model, settings.device)
        self.sscd = sscd or load_sscd(settings.sscd_backend)
        files = suite.training_files()
        self.reference_ids = list(files)
        refs = reference_embeddings(self.sscd, files, cache_dir=self.cache.folder, progress=progress)
        self.references = stack_embeddings(refs, self.reference_ids)
        self.base_fields = {"code": EXTRACTION_CODE_VERSION, "model": self.pipe.identity,
                            "steps": suite.num_inference_steps, "sscd": self.sscd.fingerprint}
        import torch

        # CPU results differ in the last bits between thread counts (as for images: the
        # generation key's 'cpu_threads'), so a non-default count is part of every key.
        if self.pipe.device.type == "cpu" and torch.get_num_threads() != 1:
            self.base_fields["cpu_threads"] = torch.get_num_threads()
        elif self.pipe.device.type != "cpu":
            self.base_fields["device"] = self.pipe.device.type

    # -- the pieces a method is handed (ExtractionContext) -------------------------------------

    def sample(self, pipe: "UncondPipeline", n: int, *, seed: int, guide=None, start: int = 0,
               batch_size: int | None = None):
        from membench_eval.extraction.sampling import ddim_sample

        return ddim_sample(pipe, n, seed=seed, steps=self.suite.num_inference_steps, guide=guide,
                           batch_size=batch_size or self.settings.batch_size, start=start, progress=self.progress)

    def embed(self, images: Any) -> np.ndarray:
        """SSCD rows of (n, 3, H, W) tensors in [-1, 1] or uint8 (n, H, W, 3) arrays."""
        from membench_eval.extraction.sampling import to_uint8

        arr = images if isinstance(images, np.ndarray) and images.dtype == np.uint8 else to_uint8(images)
        return self.sscd.embed(list(arr))

    # -- one method, every seed ----------------------------------------------------------------

    def run(self, method: ExtractionMethod) -> ExtractionResult:
        from membench_eval.extraction.sampling import to_uint8
        from membench_eval.metrics.sscd import similarity_matrix
        from membench_eval.plugins.source import call_user_code

        ident = method_identity(method)
        before_c, before_r = dict(self.cache.computed), dict(self.cache.reused)
        t0 = time.time()
        results = []
        n = self.settings.n_generated
        for seed in self.settings.seed_list():
            fields = {**self.base_fields, **ident, "n": n, "seed": seed}
            records: dict[str, Any] = {}

            # A method's own stages are keyed by what THEY depend on (``extra``), not by every
            # parameter: SIDE's pool is reused across guidance scales.
            stage_fields = {**self.base_fields, "method": method.name, "source": ident["source"], "seed": seed}

            def cached(stage: str, extra: dict[str, Any], compute, _fields=stage_fields):
                return self.cache.get_or_compute(f"{method.name}-{stage}", {**_fields, "extra": extra}, compute)

            def generate() -> dict[str, np.ndarray]:
                ctx = ExtractionContext(n=n, seed=seed, num_inference_steps=self.suite.num_inference_steps,
                                        device=self.pipe.device, sample=self.sample, embed=self.embed,
                                        cached=cached, progress=self.progress, records=records)
                images = call_user_code(method, lambda: method.generate(self.pipe, ctx), lambda m: ExtractionError(
                    f"extraction method {method.name!r}, seed {seed}: generate() {m}"))
                arr = images if isinstance(images, np.ndarray) and images.dtype == np.uint8 else to_uint8(images)
                c, h, w = self.pipe.sample_shape
                if arr.shape != (n, h, w, c):
                    raise ExtractionError(f"extraction method {method.name!r}, seed {seed}: generate() returned "
                                          f"images of shape {tuple(arr.shape)}, expected {n} of {c}x{h}x{w}")
                return {"images": arr, "records": np.frombuffer(json.dumps(records).encode(), dtype=np.uint8)}

            out = self.cache.get_or_compute("generated", fields, generate)
            images = out["images"]
            digest = hashlib.sha256(images.tobytes()).hexdigest()
            emb = self.cache.get_or_compute("sscd", {"sscd": self.sscd.fingerprint, "images_sha256": digest},
                                            lambda: {"embeddings": self.embed(images)})["embeddings"]
            sim = similarity_matrix(emb, self.references)
            scores = memorization_scores(sim, self.suite.bands, self.reference_ids)
            results.append(SeedResult(seed, scores, json.loads(out["records"].tobytes().decode() or "{}")))
        cache = {"computed": _diff(self.cache.computed, before_c), "reused": _diff(self.cache.reused, before_r)}
        return ExtractionResult(method.name, method.label(), method.params(), self.suite.name, n, results,
                                time.time() - t0, cache)


def _diff(now: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in now.items() if v - before.get(k, 0)}


def run_extraction(suite: UncondSuite, method: str | Path | ExtractionMethod, settings: ExtractionSettings,
                   store: str | Path, *, params: list[str] | None = None, progress: bool = False) -> ExtractionResult:
    """One method on one suite: the library entry point (the CLI compares several with one Runner)."""
    return Runner(suite, settings, store, progress=progress).run(resolve_method(method, params))
