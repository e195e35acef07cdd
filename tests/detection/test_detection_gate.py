"""Detect-then-mitigate: the gate's calibration, its score (= detectors/wen_single.py's), and
mitigations/wen_gated.py on the tiny random pipeline: unflagged prompts' images are byte-identical to
no mitigation, flagged ones are Wen's, decisions do not depend on the batch, records are stored."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from membench_eval.detection.gate import ScoreGate, calibrate_threshold

ROOT = Path(__file__).resolve().parents[2]
WEN_GATED = ROOT / "mitigations" / "wen_gated.py"
STEPS = 3
PROMPTS = [("p0", "an astronaut riding a horse on the moon"), ("p1", "a cup of coffee on a wooden table")]
IMAGES = 5  # per prompt: 2 x 5 = one batch of 10 for the base and for the by-prompt method alike


# --- calibration ----------------------------------------------------------------------------------


def test_threshold_is_the_smallest_with_fpr_at_most_the_target():
    neg = [float(i) for i in range(1, 101)]  # 1..100
    assert calibrate_threshold(neg, 0.0) == 100.0  # nothing above the largest negative
    assert calibrate_threshold(neg, 0.01) == 99.0  # one negative (100) above
    assert calibrate_threshold(neg, 0.5) == 50.0  # 51..100 above: 50 of 100
    assert calibrate_threshold(neg, 0.29) == 71.0  # floor(0.29 * 100) = 29, despite 28.999... in floats
    assert calibrate_threshold(neg, 0.015) == 99.0  # 1.5 false positives allowed -> 1
    assert calibrate_threshold(neg, 1.0) == -math.inf
    for fpr in (0.0, 0.01, 0.05, 0.29, 0.5, 0.9):
        t = calibrate_threshold(neg, fpr)
        assert np.mean(np.asarray(neg) > t) <= fpr
        assert np.mean(np.asarray(neg) > np.nextafter(t, -np.inf)) > fpr  # any smaller one flags too many


def test_threshold_ties_are_not_flagged():
    neg = [1.0, 2.0, 2.0, 2.0, 3.0]
    assert calibrate_threshold(neg, 0.2) == 2.0  # 3 above: FPR 0.2
    assert calibrate_threshold(neg, 0.5) == 2.0  # the ties at 2 stay unflagged: FPR 0.2 <= 0.5
    assert calibrate_threshold(neg, 0.8) == 1.0
    assert calibrate_threshold([4.0] * 10, 0.5) == 4.0  # all tied: nothing flagged for any fpr < 1
    with pytest.raises(ValueError):
        calibrate_threshold([], 0.1)
    with pytest.raises(ValueError):
        calibrate_threshold([1.0, math.nan], 0.1)
    with pytest.raises(ValueError):
        calibrate_threshold([1.0], 1.5)


def test_score_gate_memoises_per_prompt_text():
    calls = []

    def score_fn(pipe, prompts):
        calls.append(list(prompts))
        return [float(len(p)) for p in prompts]

    gate = ScoreGate(score_fn, threshold=3.0)
    assert gate.flags(None, ["abcd", "ab", "abcd"]) == [True, False, True]
    assert gate.flags(None, ["ab", "xyz", "abcd"]) == [False, False, True]  # 3 is not above 3
    assert calls == [["abcd", "ab"], ["xyz"]]


# --- on the tiny random pipeline ------------------------------------------------------------------

torch = pytest.importorskip("torch")


def test_score_is_the_wen_single_detector_score(pipe):
    from membench_eval.detection.gate import wen_single_step_score_fn
    from membench_eval.detector import DetectionContext, DetectionRequest
    from membench_eval.plugins.detectors import load_detector

    det = load_detector(ROOT / "detectors" / "wen_single.py")
    assert det.seed == 0
    prompts = [p for _, p in PROMPTS] + ["a bowl of fruit on a kitchen table"]

    def detector(texts):
        reqs = [DetectionRequest(f"q{i}", t, 100 + i) for i, t in enumerate(texts)]
        ctx = DetectionContext(requests=reqs, prompts=list(texts), num_inference_steps=STEPS, guidance_scale=7.5,
                               height=64, width=64, device=torch.device("cpu"), records=[{} for _ in reqs])
        return np.array(det.score(pipe, ctx))

    ours = np.array(wen_single_step_score_fn()(pipe, prompts))
    np.testing.assert_allclose(ours, detector(prompts), rtol=1e-5)  # the detector batches its 3 prompts
    for i, text in enumerate(prompts):  # one prompt per call: the same computation, bit for bit
        assert ours[i] == detector([text])[0]
    # A score does not depend on the other prompts of the call (one UNet row per prompt).
    assert np.array_equal(np.array(wen_single_step_score_fn()(pipe, prompts[::-1]))[::-1], ours)


def _load(**params):
    from membench_eval.plugins.mitigations import load_mitigation

    return load_mitigation(WEN_GATED, params=params)


def test_store_key_hashes_wen_and_the_gate():
    from membench_eval.plugins.source import fingerprint_file

    files = {Path(f).relative_to(ROOT).as_posix() for f in fingerprint_file(WEN_GATED).files}
    assert {"mitigations/wen_gated.py", "mitigations/wen.py", "membench_eval/detection/gate.py",
            "membench_eval/detection/signal.py"} <= files


def test_setup_calibrates_on_the_calibration_file(pipe, tmp_path):
    from membench_eval.detection.gate import wen_single_step_score_fn

    lines = ["a red car parked on a street", "two dogs running on a beach", "a mountain lake at sunrise",
             "an old man reading a newspaper"]
    (tmp_path / "neg.txt").write_text("\n".join(lines))
    scores = wen_single_step_score_fn()(pipe, lines)
    for fpr in (0.0, 0.25, 0.5):
        gate = _load(fpr=str(fpr), calibration=str(tmp_path / "neg.txt")).setup(pipe)
        assert gate.threshold == calibrate_threshold(scores, fpr)
        assert sum(gate.flags(pipe, lines)) == int(fpr * len(lines))


def _generate(pipe, store_dir, method, batch_size=10, reverse=False):
    from membench_eval.generation.engine import generate
    from membench_eval.generation.seeding import plan_requests
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.store.run_store import RunStore
    from membench_eval.suites.types import Prompt

    pipe.__dict__.pop("_membench_setup", None)  # a fresh setup (and gate score cache) per run
    settings = GenerationSettings(num_inference_steps=STEPS, height=64, width=64, seed=4, batch_size=batch_size)
    requests = plan_requests([Prompt(*p) for p in PROMPTS], IMAGES, settings.seed)
    if reverse:
        requests = requests[::-1]
    store = RunStore(store_dir)
    report = generate(pipe, requests, method, settings, store, progress=False)
    return {(r.prompt_id, r.image_index): (np.asarray(store.get_image(k)), store.record(k)["records"])
            for r, k in zip(requests, report.keys)}


@pytest.fixture
def forced(pipe, monkeypatch):
    """wen_gated (l=0: Wen always takes its 10 steps) whose gate threshold lies between the two
    prompts' scores: the higher-scoring prompt is flagged, the other is not."""
    from membench_eval.detection.gate import wen_single_step_score_fn

    method = _load(l="0")
    scores = wen_single_step_score_fn()(pipe, [p for _, p in PROMPTS])
    threshold = float(np.mean(scores))
    monkeypatch.setattr(type(method), "setup", lambda self, pipe: ScoreGate(wen_single_step_score_fn(), threshold))
    flagged_id = PROMPTS[int(np.argmax(scores))][0]
    return method, flagged_id, threshold


def test_only_flagged_prompts_are_mitigated(pipe, tmp_path, forced):
    from membench_eval.mitigation import Mitigation
    from membench_eval.plugins.mitigations import load_mitigation

    method, flagged_id, threshold = forced
    base = _generate(pipe, tmp_path / "base", Mitigation())
    wen = _generate(pipe, tmp_path / "wen", load_mitigation(ROOT / "mitigations" / "wen.py", params={"l": "0"}))
    gated = _generate(pipe, tmp_path / "gated", method)
    for key, (image, records) in gated.items():
        flagged = key[0] == flagged_id
        assert records["gate_flagged"] is flagged
        assert records["gate_threshold"] == threshold
        assert (records["gate_score"] > threshold) is flagged
        if flagged:  # Wen's images and records, exactly
            assert np.array_equal(image, wen[key][0]), key
            assert not np.array_equal(image, base[key][0]), key
            assert records["wen_iterations"] == wen[key][1]["wen_iterations"] == 10
            assert records["wen_final_loss"] == wen[key][1]["wen_final_loss"]
        else:  # untouched: no mitigation's pixels, byte for byte
            assert np.array_equal(image, base[key][0]), key
            assert not any(k.startswith("wen_") for k in records)


def test_decision_does_not_depend_on_the_batch(pipe, tmp_path, forced):
    method, flagged_id, _ = forced
    runs = [_generate(pipe, tmp_path / "a", method), _generate(pipe, tmp_path / "b", method, reverse=True),
            _generate(pipe, tmp_path / "c", method, batch_size=5)]
    for key in runs[0]:
        gate_records = [{k: v for k, v in run[key][1].items() if k.startswith("gate_")} for run in runs]
        assert gate_records[0] == gate_records[1] == gate_records[2], key
        assert gate_records[0]["gate_flagged"] is (key[0] == flagged_id)
    # All images of a prompt share one score.
    for pid, _ in PROMPTS:
        assert len({r[1]["gate_score"] for k, r in runs[0].items() if k[0] == pid}) == 1


def test_calibration_is_not_charged_to_the_images(pipe, tmp_path):
    """``setup`` (calibration: 1 + n UNet rows) runs outside the per-image count; a batch pays the
    gate's rows (1 + one per prompt text) and Wen's (here l huge: one uncond and one cond call)."""
    lines = ["a red car parked on a street", "two dogs running on a beach", "a mountain lake at sunrise"]
    (tmp_path / "neg.txt").write_text("\n".join(lines))
    method = _load(l="1e9", fpr="0", calibration=str(tmp_path / "neg.txt"))
    out = _generate(pipe, tmp_path / "store", method)
    flagged = {k[0] for k, (_, r) in out.items() if r["gate_flagged"]}
    n = len(out)
    rows = 2 * STEPS * n + (1 + len(PROMPTS)) + sum(2 * IMAGES for _ in flagged)
    for _, records in out.values():
        assert records["unet_evals"] == pytest.approx(rows / n)
