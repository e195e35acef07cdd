"""The adaptive attack on one method: search per memorized image, generate, score.

For every memorized image of the suite (or an evenly spaced subset): Algorithm 2
(``search.augment``) from its first trigger prompt(s), scored by ``signal.BudgetedScorer`` through
the method, under ``budget.plan_budget``; then the best ``prompts`` of the search (by score, from
its diverse set) are generated ``images_per_prompt`` times each through the mitigated pipeline
(``generation.engine.generate``: the rewrite hooks act here, after submission) into the run store
and scored by SSCD against that image's reference. The fixed-prompt number is the same image's
trigger prompt(s) generated as ``membench run`` does (same store keys, so shared with it).

Equal image counts: by default ``prompts x images_per_prompt`` equals the suite's images per
trigger prompt (mini and sd1: 10 = 5 x 2), so attacked and fixed Top-1 are maxima over equally
many images; the origin prompt itself is not among the attack's prompts.

Content-addressed and resumable: a search lives in ``<store>/attacks/search/<key>/`` (its chain
logs, resumed after a kill, then ``augment.json`` and ``cost.json``), keyed by everything its
scores depend on (model, scorer identity, origin prompt, chain settings, seed); the images and
SSCD rows are the run store's own. A rerun therefore makes no UNet call; base, RNA and RTA (whose
scorer is the unmitigated signal) share one search per image.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from membench_eval.attack.budget import BudgetPlan, plan_budget
from membench_eval.attack.signal import AttackError, BudgetedScorer, identity_hash, scorer_identity

if TYPE_CHECKING:
    from membench_eval.evaluation import Evaluation
    from membench_eval.evaluation.plan import MethodSpec
    from membench_eval.mitigation import Mitigation
    from membench_eval.search.mlm import MaskedLM
    from membench_eval.suites.types import Prompt, Suite

# Version of this orchestration (search layout, prompt choice, seeds): part of every search key.
ATTACK_CODE_VERSION = "membench-attack/v1"
# SSCD above which an image counts as a copy ("images re-extracted").
COPY_THRESHOLD = 0.5


@dataclass(frozen=True)
class AttackOptions:
    """The attacker's settings; equal for every method of a table."""

    budget: int = 2000  # scored candidates per memorized image
    images_per_prompt: int = 2  # images generated per attack prompt
    prompts: int | None = None  # attack prompts generated per image; None: suite images / images_per_prompt
    trigger_prompts: int = 1  # origin prompts per image (the budget is split over their word positions)
    max_images: int | None = None  # evenly spaced subset of the memorized images
    top_k: int = 200
    max_steps: int = 50
    temperature: float = 1.5
    early_stop: float | None = 3.0
    mlm: str | None = None  # default: mini-mlm for mini, bert-base-uncased otherwise
    batch_size: int = 50
    progress: bool = False

    def __post_init__(self) -> None:
        for name in ("budget", "images_per_prompt", "trigger_prompts", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise AttackError(f"attack: {name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("prompts", "max_images"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise AttackError(f"attack: {name.replace('_', '-')} must be >= 1, got {value}")
        if self.temperature <= 0:
            raise AttackError(f"attack: temperature must be > 0, got {self.temperature}")

    def n_prompts(self, trigger_images: int) -> int:
        return self.prompts if self.prompts is not None else max(1, trigger_images // self.images_per_prompt)


@dataclass(frozen=True)
class Target:
    """A memorized image and the trigger prompts the attack starts from."""

    image_id: str
    prompts: tuple["Prompt", ...]


@dataclass
class ImageResult:
    """One (method, memorized image): fixed and attacked Top-1 and what the attack found."""

    image_id: str
    origin: list[str]
    fixed_top1: float
    attacked_top1: float
    attack_prompts: list[dict[str, Any]]
    candidates: int  # scored by the search (<= budget)
    unet_rows: int  # measured UNet rows of that scoring
    plan: dict[str, Any]
    searches: list[str] = field(default_factory=list)  # search keys (store folders)
    searched_now: bool = False  # False: every search came from the store

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def attack_targets(suite: "Suite", available: Sequence[str], *, trigger_prompts: int = 1,
                   max_images: int | None = None) -> list[Target]:
    """Memorized images with a reference and a trigger prompt, in suite order, each with its first
    ``trigger_prompts`` prompts; ``max_images`` keeps an evenly spaced subset (every tier of a
    suite ordered by tier keeps its share)."""
    if suite.trigger is None:
        raise AttackError(f"suite {suite.name}: has no trigger prompts to attack from")
    have = set(available)
    by_image: dict[str, list["Prompt"]] = {}
    for p in suite.trigger.prompts:
        for image_id in p.memorized_ids:
            if image_id in have:
                by_image.setdefault(image_id, []).append(p)
    targets = [Target(i, tuple(ps[:trigger_prompts])) for i, ps in by_image.items()]
    if not targets:
        raise AttackError(f"suite {suite.name}: no memorized image has an available reference")
    if max_images is not None and max_images < len(targets):
        idx = sorted(set(np.linspace(0, len(targets) - 1, max_images).round().astype(int).tolist()))
        targets = [targets[i] for i in idx]
    return targets


class _SscdOnly:
    """A ``ScoringContext`` with SSCD alone (the attack's images need no per-image quality score)."""

    def __init__(self, ev: "Evaluation"):
        self.sscd, self.reference_embeddings, self.store = ev.sscd, ev.reference_embeddings, ev.store
        self.counts, self.options, self.settings = ev.counts, ev.options, ev.settings
        self.quality_scorers: dict[str, Any] = {}


class Attack:
    """The attack of one suite run (an ``Evaluation``: its store, pipeline, SSCD and settings)."""

    def __init__(self, ev: "Evaluation", options: AttackOptions = AttackOptions()):
        self.ev, self.options = ev, options
        self._mlm: "MaskedLM | None" = None
        self.counts = {"searches_run": 0, "searches_reused": 0}

    @property
    def mlm(self) -> "MaskedLM":
        if self._mlm is None:
            from membench_eval.search.mlm import default_mlm
            from membench_eval.search.mlm import load_masked_lm

            self._mlm = load_masked_lm(self.options.mlm or default_mlm(self.ev.suite.name), device=self.ev.options.device)
        return self._mlm

    def targets(self) -> list[Target]:
        paths, _ = self.ev.references
        return attack_targets(self.ev.suite, list(paths), trigger_prompts=self.options.trigger_prompts,
                              max_images=self.options.max_images)

    # --- search ---------------------------------------------------------------------------------

    def plan_for(self, target: Target) -> BudgetPlan:
        positions = [len(self.mlm.encode_words(p.text)) for p in target.prompts]
        o = self.options
        return plan_budget(o.budget, sum(positions), top_k=o.top_k, max_steps=o.max_steps, vocabulary=self.mlm.n_allowed())

    def search(self, m: "Mitigation", target: Target) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The attack prompts found for ``target`` (best first) and the search's cost."""
        from membench_eval.models.identity import model_identity
        from membench_eval.search.augment import AugmentConfig, augment_prompt
        from membench_eval.generation.seeding import image_seed

        plan = self.plan_for(target)
        o, settings, pipe = self.options, self.ev.settings, self.ev.pipeline
        scorer = BudgetedScorer(pipe, m, settings, plan.budget, batch_size=o.batch_size)
        found: dict[str, dict[str, Any]] = {}
        cost = {"candidates": 0, "unet_rows": 0, "plan": plan.as_dict(), "searches": [], "searched_now": False}
        for n, prompt in enumerate(target.prompts):
            config = AugmentConfig(
                steps=plan.steps, top_k=plan.top_k, temperature=o.temperature,
                seed=image_seed(settings.seed, f"attack:{target.image_id}", n) % 2**32,
                early_stop_threshold=o.early_stop, n_diverse=max(20, o.n_prompts(settings.trigger_images_per_prompt)),
            )
            key = identity_hash({
                "code": ATTACK_CODE_VERSION, "model": model_identity(pipe), "scorer": scorer_identity(m),
                "origin": prompt.text, "config": asdict(config), "mlm": self.mlm.spec, "prefix": self.mlm.prefix,
                "height": settings.height, "width": settings.width,
            })
            folder = self.ev.store.root / "attacks" / "search" / key[:2] / key
            result, spent = _stored_search(folder)
            if result is None:
                earlier = logged_candidates(folder)  # a killed run's logged steps spent budget already
                scorer.used += earlier
                rows_before = scorer.unet_rows
                result = augment_prompt(self.mlm, scorer, prompt.text, folder, config, progress=o.progress)
                spent = {"candidates": logged_candidates(folder), "unet_rows": scorer.unet_rows - rows_before,
                         "resumed_candidates": earlier}
                _write_json(folder / "cost.json", spent)
                self.counts["searches_run"] += 1
                cost["searched_now"] = True
            else:
                scorer.used += spent["candidates"]  # a stored search still spends this image's budget
                self.counts["searches_reused"] += 1
            cost["candidates"] += spent["candidates"]
            cost["unet_rows"] += spent["unet_rows"]
            cost["searches"].append(key)
            for item in result["diverse"]:
                if item["prompt"] not in found or found[item["prompt"]]["score"] < item["score"]:
                    found[item["prompt"]] = {"prompt": item["prompt"], "score": item["score"],
                                             "changed_words": item["changed_words"], "origin": prompt.text}
        ranked = sorted(found.values(), key=lambda it: (-it["score"], it["prompt"]))
        return ranked[: o.n_prompts(settings.trigger_images_per_prompt)], cost

    # --- generation and scoring -----------------------------------------------------------------

    def attack_image(self, spec: "MethodSpec", target: Target) -> ImageResult:
        from membench_eval.mitigation import Mitigation
        from membench_eval.suites.types import Prompt

        m = spec.mitigation if spec.mitigation is not None else Mitigation()
        attack, cost = self.search(m, target)
        if not attack:
            raise AttackError(f"attack on {target.image_id}: the search found no prompt other than the origin")
        settings = self.ev.settings
        fixed = list(target.prompts)
        attack_prompts = [Prompt(f"attack-{target.image_id}-{_short(a['prompt'])}", a["prompt"]) for a in attack]
        fixed_scores = self._generate_and_score(m, fixed, settings.trigger_images_per_prompt, target.image_id)
        attacked = self._generate_and_score(m, attack_prompts, self.options.images_per_prompt, target.image_id)
        for a, per_image in zip(attack, attacked):
            a["top1"] = float(max(per_image))
        return ImageResult(
            image_id=target.image_id, origin=[p.text for p in fixed],
            fixed_top1=float(max(max(s) for s in fixed_scores)), attacked_top1=float(max(max(s) for s in attacked)),
            attack_prompts=attack, candidates=int(cost["candidates"]), unet_rows=int(cost["unet_rows"]), plan=cost["plan"],
            searches=cost["searches"], searched_now=bool(cost["searched_now"]),
        )

    def _generate_and_score(self, m: "Mitigation", prompts: Sequence["Prompt"], n: int, image_id: str) -> list[list[float]]:
        """Per prompt, the SSCD of each of its ``n`` images to the memorized image ``image_id``."""
        from membench_eval.generation.engine import generate
        from membench_eval.generation.seeding import plan_requests
        from membench_eval.evaluation.scoring import score_keys

        ev = self.ev
        requests = plan_requests(prompts, n, ev.settings.seed)
        report = generate(ev.pipeline, requests, m, ev.settings, ev.store, progress=False)
        ev.counts["generated"] += report.new
        ev.counts["reused"] += report.reused
        scores = score_keys(self._scoring, report.keys, [r.prompt for r in requests])
        sims = [float(scores[k]["sscd"][image_id]) for k in report.keys]
        return [sims[i * n:(i + 1) * n] for i in range(len(prompts))]

    def whitebox_image(self, spec: "MethodSpec", target: Target, steps: int, budget: float | None = None) -> dict[str, Any]:
        """White-box variant (``attack.whitebox``) for one image: E optimised from its first trigger
        prompt through the method's processor, generated as many times as a fixed trigger prompt."""
        from membench_eval.attack.whitebox import (SubmittedEmbedding, embedding_sha256, optimise_embedding,
                                                   stored_embedding, whitebox_reason)
        from membench_eval.generation.batch import method_source
        from membench_eval.models.identity import model_identity
        from membench_eval.generation.seeding import image_seed
        from membench_eval.mitigation import Mitigation
        from membench_eval.suites.types import Prompt

        m = spec.mitigation if spec.mitigation is not None else Mitigation()
        reason = whitebox_reason(m)
        if reason is not None:
            return {"image_id": target.image_id, "reason": reason}
        ev, prompt = self.ev, target.prompts[0]
        seed = image_seed(ev.settings.seed, f"whitebox:{target.image_id}", 0) % 2**32
        processor = scorer_identity(m) if m.overrides("cross_attention_processor") else None
        fields = {"model": model_identity(ev.pipeline), "processor": processor, "origin": prompt.text, "seed": seed,
                  "steps": steps, "height": ev.settings.height, "width": ev.settings.width}
        if budget is not None:  # only then: unbudgeted embeddings keep their store keys
            fields["budget"] = float(budget)
        embeds, history, fresh = stored_embedding(ev.store.root, fields, lambda: optimise_embedding(
            ev.pipeline, m, prompt.text, seed=seed, settings=ev.settings, steps=steps, budget=budget))
        sha = embedding_sha256(embeds)
        pid = f"whitebox-{target.image_id}-{sha[:12]}"
        wrapper = SubmittedEmbedding(method=m.label(), method_sha256=method_source(m).sha256,
                                     embedding_sha256=sha).bind(m, {pid: embeds})
        sims = self._generate_and_score(wrapper, [Prompt(pid, prompt.text)], ev.settings.trigger_images_per_prompt,
                                        target.image_id)[0]
        return {"image_id": target.image_id, "top1": float(max(sims)), "signal_start": history[0],
                "signal_end": history[-1], "steps": steps, "optimised_now": fresh}

    @property
    def _scoring(self) -> _SscdOnly:
        if "_sscd_ctx" not in self.__dict__:
            self.__dict__["_sscd_ctx"] = _SscdOnly(self.ev)
        return self.__dict__["_sscd_ctx"]

    def run_method(self, spec: "MethodSpec", targets: Sequence[Target] | None = None) -> list[ImageResult]:
        from tqdm.auto import tqdm

        targets = list(targets) if targets is not None else self.targets()
        out = []
        for target in tqdm(targets, desc=f"attack {spec.label}", unit="image", disable=not self.options.progress):
            out.append(self.attack_image(spec, target))
        return out


def logged_candidates(folder: Path) -> int:
    """Candidates scored by the chains logged under ``folder`` (the chain logs are the record)."""
    from membench_eval.search.chainlog import read_log

    total = 0
    for log in sorted((folder / "chains").glob("*.jsonl")):
        _, steps = read_log(log)
        total += sum(len(s["candidate_ids"]) for s in steps)
    return total


def _stored_search(folder: Path) -> tuple[dict[str, Any] | None, dict[str, int]]:
    """A finished search (``augment.json`` and ``cost.json``) from the store, or (None, {})."""
    done, cost = folder / "augment.json", folder / "cost.json"
    if not (done.is_file() and cost.is_file()):
        return None, {}
    try:
        return json.loads(done.read_text(encoding="utf-8")), json.loads(cost.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, {}  # torn or damaged: the chain logs resume it


def _short(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _write_json(path: Path, obj: object) -> None:
    from membench_eval.store.atomic import write_atomic

    write_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
