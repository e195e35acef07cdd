"""A small synthetic run for the report tests: made-up per-image SSCD values, PromptResults computed
from them as the evaluation does, a tiny RunStore with 64x64 PNGs and reference images in tmp_path.

The other tests/report/test_report_*.py import :func:`synthetic_run`; the tests here check the synthetic
run itself is what the evaluation would have produced, and the AMS/UMS section built from it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from membench_eval.metrics.aggregate import score_prompt
from membench_eval.report import PromptResult, build_leaderboard
from membench_eval.store.run_store import RunStore

REFS = ("m0", "m1", "m2")
TRIGGER = {"t0": ("m0",), "t1": ("m0",), "t2": ("m1",), "t3": ("m2",), "t4": ("m1", "m2")}
GENERAL = ("g0", "g1", "g2")
TEXT = {**{p: f"a photo of memorized thing {p}" for p in TRIGGER},
        **{g: f"a cat on a sofa, caption {g}" for g in GENERAL}}
# label -> (method, params, how strongly it copies: scales the similarity to the own reference)
ROWS = {"base": ("base", {}, 1.0), "rna n=1": ("rna", {"n": 1}, 0.8), "rna n=6": ("rna", {"n": 6}, 0.45),
        "wen l=2": ("wen", {"l": 2.0}, 0.2)}
KINDS = {"base": "base", "rna n=1": "baseline", "rna n=6": "baseline", "wen l=2": "method"}
N_TRIGGER_IMAGES = 3
CLIP_ID = "clip_model=ViT-g-14|clip_pretrained=laion2b_s12b_b42k"
AESTHETIC_ID = "aesthetic_clip_model=ViT-L-14|aesthetic_clip_pretrained=openai|aesthetic_head=x.pth"
PAPER_META = {"model": "CompVis/stable-diffusion-v1-4", "sscd_backend": "disc_large", "clip_model": CLIP_ID,
              "aesthetic_model": AESTHETIC_ID}


@dataclass
class SyntheticRun:
    results: list[PromptResult]
    store_dir: Path
    refs: dict[str, Path]
    metadata: dict[str, Any]
    sims: dict[tuple[str, str, int], dict[str, float]]  # (label, prompt, image) -> {ref: similarity}

    def board(self, suite: str = "mini", **kw: Any):
        kw.setdefault("metadata", self.metadata)
        kw.setdefault("expected", {"trigger": sorted(TRIGGER), "general": list(GENERAL)})
        kw.setdefault("n_resamples", 200)
        return build_leaderboard(self.results, suite=suite, kinds=KINDS, **kw)


def _sha(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def _image(rng: np.random.Generator, size: int = 64) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8))


def similarities(label: str, pid: str, i: int) -> dict[str, float]:
    """Made-up SSCD of image i of (label, prompt) to every reference: own references high, others low."""
    strength = ROWS[label][2]
    rng = np.random.default_rng(int(hashlib.sha256(f"{label}|{pid}|{i}".encode()).hexdigest()[:8], 16))
    own = TRIGGER.get(pid, ())
    out = {}
    for j, ref in enumerate(REFS):
        base = 0.05 + 0.1 * rng.random()
        if ref in own:
            base = strength * (0.55 + 0.35 * rng.random()) + 0.01 * j
        out[ref] = round(float(base), 4)
    return out


def make_result(label: str, role: str, pid: str, sims: list[dict[str, float]], seeds: list[int]) -> PromptResult:
    """A PromptResult exactly as Evaluation.aggregate computes it from per-image similarities."""
    method, params, strength = ROWS[label]
    sim_all = np.array([[s[r] for r in REFS] for s in sims])
    nearest = sim_all.argmax(axis=1)
    per_image: dict[str, list[Any]] = {"best_sscd": [float(sim_all[k, j]) for k, j in enumerate(nearest)],
                                       "best_ref": [REFS[j] for j in nearest], "seed": list(seeds)}
    clip = 0.30 - 0.02 * (1.0 - strength)
    metrics: dict[str, float | None] = {"clip": clip, "aesthetic": 5.0 + strength / 10}
    mems: tuple[str, ...] = ()
    if role == "trigger":
        mems = TRIGGER[pid]
        own = [r for r in REFS if r in mems]
        sim_own = np.array([[s[r] for r in own] for s in sims])
        s = score_prompt(pid, sim_own, sim_all)
        metrics.update(top1_sscd=s.top1, top3_sscd=s.top3, sscd_gt_05=s.frac_above, top1_any=s.top1_any)
        on = sim_own.argmax(axis=1)
        per_image["own_sscd"] = [float(sim_own[k, j]) for k, j in enumerate(on)]
        per_image["own_ref"] = [own[j] for j in on]
    else:
        metrics["top1_any"] = float(sim_all.max())
    return PromptResult(label, method, role, pid, len(sims), metrics, dict(params), mems, per_image)


def synthetic_run(tmp_path: Path, *, skip_images: set[tuple[str, str]] = frozenset()) -> SyntheticRun:
    """Results + a store holding their images (except (label, prompt) pairs in ``skip_images``)."""
    rng = np.random.default_rng(7)
    refs_dir = tmp_path / "refs"
    refs_dir.mkdir(parents=True, exist_ok=True)
    refs = {}
    for ref in REFS:
        refs[ref] = refs_dir / f"{ref}.png"
        _image(rng, 80).save(refs[ref])
    store_dir = tmp_path / "store"
    results, all_sims = [], {}
    with RunStore(store_dir) as store:
        for label, (method, params, _) in ROWS.items():
            for role, prompts, n in (("trigger", sorted(TRIGGER), N_TRIGGER_IMAGES), ("general", GENERAL, 1)):
                for pid in prompts:
                    sims = [similarities(label, pid, i) for i in range(n)]
                    seeds = [1000 * (1 + list(ROWS).index(label)) + 10 * sorted([*TRIGGER, *GENERAL]).index(pid) + i
                             for i in range(n)]
                    for i, (s, seed) in enumerate(zip(sims, seeds)):
                        all_sims[(label, pid, i)] = s
                        if (label, pid) in skip_images:
                            continue
                        fields = {"method": method, "params": params, "prompt_id": pid, "prompt": TEXT[pid],
                                  "seed": seed, "method_source": _sha(label)}
                        key = RunStore.key(fields)
                        store.put_image(key, _image(rng), {**fields, "image_index": i})
                        store.put_score(key, "sscd_similarities", "sscd-test-backend", s)
                    results.append(make_result(label, role, pid, sims, seeds))
    metadata = {**PAPER_META, "seed": 0, "methods": {lab: {"path": f"{lab}.py", "sha256": _sha(lab)} for lab in ROWS},
                "coverage": "5 of 5 trigger prompts run; 3 of 3 general prompts run"}
    return SyntheticRun(results, store_dir, refs, metadata, all_sims)


# --- the synthetic run itself ---------------------------------------------------------------------


def test_results_round_trip_and_carry_per_image_values(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path)
    r = next(x for x in run.results if x.label == "base" and x.prompt_id == "t4")
    assert len(r.per_image["best_sscd"]) == r.n_images == N_TRIGGER_IMAGES
    assert max(r.per_image["own_sscd"]) == pytest.approx(r.metrics["top1_sscd"])
    assert PromptResult.from_dict(r.to_dict()) == r
    import json

    assert PromptResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    # a record from an older membench (no per_image) still reads
    old = {k: v for k, v in r.to_dict().items() if k != "per_image"}
    assert PromptResult.from_dict(old).per_image == {}


def test_band_section_matches_a_recount(tmp_path: Path) -> None:
    from membench_eval.metrics.memorization import MemorizationBands
    from membench_eval.report.bands import band_section

    run = synthetic_run(tmp_path)
    board = run.board()
    section = band_section(board)
    base = next(r for r in section.rows["trigger"] if r.label == "base")
    best, nearest = [], []
    for (label, pid, i), s in sorted(run.sims.items()):
        if label == "base" and pid in TRIGGER:
            ref = max(REFS, key=lambda x: (s[x], -REFS.index(x)))
            best.append(s[ref])
            nearest.append(ref)
    best_a = np.array(best)
    assert base.n_generated == len(TRIGGER) * N_TRIGGER_IMAGES
    assert base.bands["high"].ams.mean == pytest.approx(float((best_a > 0.6).mean()))
    assert base.bands["mid"].ams.mean == pytest.approx(float(((best_a >= 0.5) & (best_a <= 0.6)).mean()))
    high_refs = sorted({n for b, n in zip(best, nearest) if b > 0.6})
    assert base.bands["high"].matched == tuple(high_refs)
    assert base.bands["high"].ums == pytest.approx(len(high_refs) / len(best))
    for band in ("low", "mid", "high"):
        est = base.bands[band].ams
        assert est.low <= est.mean <= est.high
    assert sum(base.bands[b].ams.mean for b in ("low", "mid", "high")) == pytest.approx(1.0)
    # other bands, set in the metadata, reach the section
    other = band_section(run.board(metadata={**run.metadata, "memorization_bands": {"mid_low": 0.2, "mid_high": 0.3}}))
    assert other.bands == MemorizationBands(0.2, 0.3)
    wen = next(r for r in other.rows["trigger"] if r.label == "wen l=2")
    base2 = next(r for r in other.rows["trigger"] if r.label == "base")
    assert wen.bands["low"].ams.mean == 1.0 and base2.bands["high"].ams.mean == 1.0  # wen < 0.2; base > 0.5
    assert base.bands["low"].ams.mean < 1.0


def test_oracle_rows_are_marked_and_unet_cost_reaches_the_json(tmp_path: Path) -> None:
    """A method that reads the memorized images (Mitigation.oracle) says so wherever its label is
    shown; the measured UNet evaluations per image are averaged per row in the JSON."""
    import dataclasses

    from membench_eval.report.output import to_json
    from membench_eval.report.render import to_markdown

    run = synthetic_run(tmp_path)
    meta = {**run.metadata, "methods": {**run.metadata["methods"], "wen l=2": {"path": "wen.py", "sha256": "0" * 64,
                                                                                 "oracle": True}}}
    costs = {"base": 100.0, "wen l=2": 130.0}
    results = [dataclasses.replace(r, per_image={**r.per_image, "unet_evals": [costs[r.label]] * r.n_images})
               if r.label in costs else r for r in run.results]
    board = build_leaderboard(results, suite="mini", kinds=KINDS, metadata=meta, n_resamples=50,
                              expected={"trigger": sorted(TRIGGER), "general": list(GENERAL)})
    text = to_markdown(board)
    assert "| wen l=2 (oracle: uses the memorized images) |" in text
    assert "| rna n=6 (oracle" not in text
    rows = {r["label"]: r for r in to_json(board)["rows"]}
    assert rows["wen l=2"]["oracle"] is True and rows["rna n=6"]["oracle"] is False
    assert rows["base"]["unet_evals_per_image"] == 100.0 and rows["wen l=2"]["unet_evals_per_image"] == 130.0
    assert rows["rna n=6"]["unet_evals_per_image"] is None  # images without a stored count
