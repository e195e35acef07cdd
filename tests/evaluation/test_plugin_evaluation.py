"""The evaluation library on a tiny random pipeline: per-image scores stored once and reused,
results independent of how prompts are grouped, CLIP/aesthetic through the real code path
(tiny open_clip model, real LAION head), and the missing-weights policy per suite."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from membench_eval.errors import MissingWeightsError
from membench_eval.evaluation import CLIP_METRIC, SSCD_METRIC, EvalOptions, Evaluation
from membench_eval.suites.types import MemorizedImage, Prompt, PromptSet, Suite

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def toy_suite(tmp_path_factory: pytest.TempPathFactory, memorized_pair) -> Suite:
    from membench_eval.models.tiny import build_random_tiny_pipeline

    root = tmp_path_factory.mktemp("toy")
    build_random_tiny_pipeline(seed=0).save_pretrained(root / "model")
    origin, augmented = memorized_pair
    memorized = {"mA": MemorizedImage("mA", str(origin)), "mB": MemorizedImage("mB", str(augmented))}
    trigger = PromptSet("trigger", (Prompt("t0", "a red car", ("mA",)), Prompt("t1", "a blue boat", ("mB",)),
                                    Prompt("t2", "a cat on a mat", ("mA", "mB"))), images_per_prompt=2)
    general = PromptSet("general", (Prompt("g0", "a green field"), Prompt("g1", "a city at night")), 1)
    return Suite("mini", str(root / "model"), trigger, general, memorized,
                 generation_defaults={"height": 64, "width": 64, "num_inference_steps": 3},
                 sscd_backend="disc_mixup_onnx", allow_missing_quality_weights=True)


@pytest.fixture(scope="module")
def tiny_quality(shared_data_dir: Path):
    from membench_eval.metrics.aesthetic import AestheticScorer
    from membench_eval.metrics.clip_score import ClipScorer

    torch.manual_seed(0)
    model = open_clip.CLIP(
        embed_dim=768,
        vision_cfg={"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    ).eval()
    preprocess = open_clip.image_transform(32, is_train=False)
    clip = ClipScorer.from_open_clip(model, preprocess, open_clip.get_tokenizer("ViT-g-14"), name="tiny")
    head = shared_data_dir / "membench" / "sac+logos+ava1-l14-linearMSE.pth"
    aesthetic = AestheticScorer.from_open_clip(model, preprocess, head=head, name="tiny")
    return {"clip": clip, "aesthetic": aesthetic}


def _evaluation(suite: Suite, store: Path, quality=None, **kw) -> Evaluation:
    ev = Evaluation(EvalOptions(store_dir=str(store), device="cpu", bootstrap_resamples=200, **kw), suite=suite)
    if quality is not None:
        ev.quality_scorers = dict(quality)  # inject scorers (no CLIP weights exist offline)
    return ev


@pytest.mark.slow
def test_scores_stored_once_reused_and_grouping_independent(toy_suite, tiny_quality, tmp_path: Path) -> None:
    ev = _evaluation(toy_suite, tmp_path / "store", tiny_quality)
    plan = ev.plan([], [])
    all_at_once = ev.evaluate_plan(plan)
    assert ev.counts["generated"] == 3 * 2 + 2 and ev.counts["scored"] == 8

    # CLIP is scored against the ORIGINAL prompt, per image, then averaged per prompt.
    store = ev.store
    t0 = next(r for r in all_at_once if r.prompt_id == "t0")
    keys = [row["key"] for row in store.records() if row["prompt_id"] == "t0"]
    imgs = [store.get_image(k) for k in keys]
    expected = tiny_quality["clip"].score(imgs, "a red car").mean()
    assert t0.metrics["clip"] == pytest.approx(float(expected), abs=1e-6)
    assert t0.metrics["aesthetic"] == pytest.approx(float(tiny_quality["aesthetic"].score(imgs).mean()), abs=1e-5)
    sims = [store.get_score(k, SSCD_METRIC, ev.sscd.fingerprint) for k in keys]
    assert t0.metrics["top1_sscd"] == pytest.approx(max(s["mA"] for s in sims))
    assert t0.metrics["top1_any"] == pytest.approx(max(max(s.values()) for s in sims))

    # A fresh evaluation on the same store: nothing generated or scored, prompt by prompt, same numbers.
    again = _evaluation(toy_suite, tmp_path / "store", tiny_quality)
    one_by_one = [r for role, ps in plan.prompts.items() for p in ps
                  for r in again.evaluate_prompts(plan.methods[0], role, [p])]
    assert again.counts == {"generated": 0, "reused": 8, "scored": 0, "scores_reused": 8}
    key = lambda r: (r.role, r.prompt_id)  # noqa: E731
    assert sorted(one_by_one, key=key) == sorted(all_at_once, key=key)
    assert len(store.scores(CLIP_METRIC)) == 8

    board = again.leaderboard(plan, one_by_one)
    base = board.row("base")
    assert base.cells["clip"].estimate is not None and base.cells["coco_aesthetic"].estimate is not None
    assert base.cells["clip"].estimate.mean == pytest.approx(
        np.mean([r.metrics["clip"] for r in one_by_one if r.role == "trigger"]))


def test_missing_quality_weights_on_mini_are_unavailable_with_reason(toy_suite, tmp_path: Path) -> None:
    ev = _evaluation(toy_suite, tmp_path / "store")
    if ev.clip is not None:  # pragma: no cover - a machine with the ViT-g-14 weights cached
        pytest.skip("open_clip ViT-g-14 weights are cached on this machine")
    reasons = ev.unavailable()
    assert set(reasons) == {"clip", "coco_clip", "aesthetic", "coco_aesthetic"}
    assert "ViT-g-14 / laion2b_s12b_b42k" in reasons["clip"] and "--membench-clip-pretrained" in reasons["clip"]


def test_missing_quality_weights_are_an_error_on_paper_suites(toy_suite, tmp_path: Path) -> None:
    strict = replace(toy_suite, name="sd1")
    with pytest.raises(MissingWeightsError, match="clip score needed for suite sd1"):
        _ = _evaluation(strict, tmp_path / "store", clip_pretrained=str(tmp_path / "missing.safetensors")).clip
    # An explicit checkpoint path that does not exist is an error even on mini.
    with pytest.raises(MissingWeightsError, match="missing.safetensors"):
        _ = _evaluation(toy_suite, tmp_path / "store", clip_pretrained=str(tmp_path / "missing.safetensors")).clip


def test_overlapped_scoring_stores_the_same_scores_as_serial(toy_suite, tiny_quality, tmp_path: Path) -> None:
    """Scoring each batch from memory in the sink's thread (the default) stores exactly the rows
    that scoring the PNGs after generation stores: same keys, metrics, backends and values."""
    boards = {}
    for name, overlap in (("overlap", True), ("serial", False)):
        ev = _evaluation(toy_suite, tmp_path / name, tiny_quality, overlap_scoring=overlap, batch_size=4)
        plan = ev.plan([], [])
        results = ev.evaluate_plan(plan)
        rows = {(r["key"], r["metric"], r["backend"]): r["value"] for r in ev.store.score_rows()}
        boards[name] = (rows, [(r.prompt_id, r.metrics) for r in results], dict(ev.counts))
    assert boards["overlap"][0] == boards["serial"][0] and len(boards["overlap"][0]) == 3 * (3 * 2 + 2)
    assert boards["overlap"][1] == boards["serial"][1]
    assert boards["overlap"][2] == boards["serial"][2]  # 8 generated, 8 scored, none reused
