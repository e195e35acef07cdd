"""Detector loading and the detection runner: seeded requests, store reuse, keys, checks, cost."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from membench_eval.errors import DetectorError
from membench_eval.generation.settings import GenerationSettings
from membench_eval.suites.types import Prompt

TEXT_DETECTOR = '''
from membench_eval.detector import Detector


class TokenCount(Detector):
    """Words in the prompt, times ``scale``; with failure modes for the tests."""
    name = "token_count"
    needs_model = False
    sweep = {"scale": [1.0, 2.0]}
    strongest = {"scale": 3.0}
    scale: float = 1.0
    fail: str = ""  # nan: NaN for prompts with an 'x'; count: one score too few; raise: an exception
    calls = 0

    def score(self, pipe, ctx):
        type(self).calls += 1
        assert pipe is None
        if self.fail == "raise":
            return [1 / 0 for _ in ctx.prompts]
        out = [self.scale * len(p.split()) for p in ctx.prompts]
        if self.fail == "nan":
            out = [float("nan") if "x" in p else s for p, s in zip(ctx.prompts, out)]
        if self.fail == "count":
            out = out[:-1]
        for record, p in zip(ctx.records, ctx.prompts):
            record["words"] = len(p.split())
        return out
'''

UNET_DETECTOR = '''
import torch

from membench_eval.detector import Detector

SETUPS = []


class UNetNorm(Detector):
    """Norm of one conditional noise prediction at ``timestep`` on each prompt's own latent."""
    name = "unet_norm"
    timestep: int = 999

    def setup(self, pipe):
        SETUPS.append(1)
        return pipe.vae_scale_factor

    def score(self, pipe, ctx):
        size = ctx.height // ctx.state
        with torch.no_grad():
            cond = pipe.encode_prompt(ctx.prompts, ctx.device, 1, False)[0]
            lat = torch.cat([torch.randn((1, 4, size, size), generator=g, device=ctx.device) for g in ctx.generators])
            eps = pipe.unet(lat, self.timestep, encoder_hidden_states=cond).sample
        return (eps - lat).flatten(1).norm(dim=1).double()
'''

PROMPTS = [Prompt(f"p{i}", text) for i, text in enumerate(
    ["an astronaut riding a horse", "a cup of coffee", "the no limits business woman podcast", "a red fox",
     "mexico city skyline at night"])]
SETTINGS = GenerationSettings(num_inference_steps=2, guidance_scale=7.5, height=64, width=64, seed=0, batch_size=2)


def _file(tmp_path: Path, text: str, name: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def text_file(tmp_path):
    return _file(tmp_path, TEXT_DETECTOR, "token_count.py")


def _store(tmp_path: Path, name: str = "store"):
    from membench_eval.store.detections import DetectionStore

    return DetectionStore(tmp_path / name)


def _load(path: Path, **params):
    from membench_eval.plugins.detectors import load_detector

    return load_detector(path, params=params)


def test_loader_typed_params_sweeps_and_errors(tmp_path, text_file):
    from membench_eval.plugins.detectors import load_detector_files, load_detectors
    from membench_eval.plugins.source import API_MODULES

    assert [d.label() for d in load_detectors(text_file, ["scale=1,2"])] == [
        "token_count scale=1.0 fail=", "token_count scale=2.0 fail="]
    assert [d.scale for d in load_detectors(text_file, ["sweep"])] == [1.0, 2.0]
    assert [d.scale for d in load_detectors(text_file, ["strongest"])] == [3.0]
    assert isinstance(load_detectors(text_file, ["scale=2"])[0].scale, float)
    with pytest.raises(DetectorError, match=r"token_count\.py: detector 'token_count' has no parameter 'k'"):
        load_detectors(text_file, ["k=1"])
    with pytest.raises(DetectorError, match="expected a float"):
        load_detectors(text_file, ["scale=big"])
    empty = _file(tmp_path, "X = 1\n", "empty.py")
    with pytest.raises(DetectorError, match=r"empty\.py: defines no Detector subclass"):
        load_detectors(empty)
    with pytest.raises(DetectorError, match="detector file not found"):
        load_detectors(tmp_path / "missing.py")
    with pytest.raises(DetectorError, match="also defined by"):
        load_detector_files([text_file, text_file])
    assert "membench_eval.detector" in API_MODULES  # the plugin API is versioned by the runner


def test_scores_are_stored_and_a_rerun_scores_nothing(tmp_path, text_file):
    from membench_eval.detection.run import score_prompts
    from membench_eval.generation.seeding import image_seed

    det = _load(text_file)
    with _store(tmp_path) as store:
        first = score_prompts(det, PROMPTS, SETTINGS, store)
    assert (first.new, first.reused, type(det).calls) == (5, 0, 3)  # batches of 2, 2, 1
    assert first.scores == [5.0, 4.0, 6.0, 3.0, 5.0] and first.records[0] == {"words": 5}
    assert first.seeds == [image_seed(0, p.prompt_id, 0) for p in PROMPTS]
    assert first.unet_rows == [0.0] * 5 and all(s >= 0 for s in first.seconds)
    rows = [json.loads(line) for f in (tmp_path / "store" / "detections").glob("*.jsonl") for line in f.open()]
    assert len(rows) == 5 and all(r["row_sha256"] and r["fields"]["model"] is None for r in rows)
    with _store(tmp_path) as store:  # a new process: read back from disk, checked
        again = score_prompts(det, PROMPTS[::-1], SETTINGS, store)
    assert (again.new, again.reused, type(det).calls) == (0, 5, 3)
    assert again.scores == first.scores[::-1] and again.records[-1] == {"words": 5}


def test_keys_change_with_params_source_settings_and_prompt(tmp_path, text_file):
    from membench_eval.detection.run import score_prompts

    with _store(tmp_path) as store:
        assert score_prompts(_load(text_file), PROMPTS, SETTINGS, store).new == 5
        assert score_prompts(_load(text_file), PROMPTS, SETTINGS, store).new == 0
        assert score_prompts(_load(text_file, scale="2"), PROMPTS, SETTINGS, store).new == 5
        assert score_prompts(_load(text_file), PROMPTS, SETTINGS.replace(num_inference_steps=3), store).new == 5
        assert score_prompts(_load(text_file), PROMPTS, SETTINGS.replace(seed=1), store).new == 5
        assert score_prompts(_load(text_file), [Prompt("p0", "an astronaut")], SETTINGS, store).new == 1
        text_file.write_text(text_file.read_text() + "\n# edited\n")
        edited = score_prompts(_load(text_file), PROMPTS, SETTINGS, store)
        assert edited.new == 5 and edited.scores == [5.0, 4.0, 6.0, 3.0, 5.0]


def test_an_interrupted_run_keeps_its_finished_batches(tmp_path, text_file):
    from membench_eval.detection.run import score_prompts

    det = _load(text_file)
    original = det.score
    calls = []

    def stop_on_second(pipe, ctx):
        calls.append(len(ctx.prompts))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(pipe, ctx)

    det.score = stop_on_second
    with _store(tmp_path) as store, pytest.raises(KeyboardInterrupt):
        score_prompts(det, PROMPTS, SETTINGS, store)
    with _store(tmp_path) as store:
        resumed = score_prompts(_load(text_file), PROMPTS, SETTINGS, store)
    assert (resumed.new, resumed.reused) == (3, 2)


@pytest.mark.parametrize("fail, message, named, not_named", [
    ("nan", r"detector 'token_count scale=1\.0 fail=nan': score returned NaN or infinite scores \(prompt 'p3'\)",
     ["p3"], ["p2", "p4"]),
    ("count", r"score returned 1 score\(s\) for 2 prompt\(s\) \(prompts 'p0', 'p1'\)", ["p0", "p1"], []),
    ("raise", r"score raised ZeroDivisionError: division by zero \(prompts 'p0', 'p1'\)", [], []),
])
def test_bad_scores_name_the_detector_and_prompts_and_store_nothing(tmp_path, text_file, fail, message, named,
                                                                    not_named):
    from membench_eval.detection.run import score_prompts

    prompts = PROMPTS[:3] + [Prompt("p3", "a xylophone")] + PROMPTS[4:]
    with _store(tmp_path) as store:
        with pytest.raises(DetectorError, match=message) as info:
            score_prompts(_load(text_file, fail=fail), prompts, SETTINGS, store)
        assert all(f"'{p}'" not in str(info.value) for p in not_named)
        if fail == "raise":
            assert "token_count.py" in info.value.details and "1 / 0" in info.value.details
        stored = len(store)
    assert stored == (2 if fail == "nan" else 0)  # the batches before the bad one are kept


def test_a_damaged_row_is_reported_and_rescored(tmp_path, text_file):
    from membench_eval.detection.run import score_prompts

    with _store(tmp_path) as store:
        score_prompts(_load(text_file), PROMPTS, SETTINGS, store)
    shard = next((tmp_path / "store" / "detections").glob("*.jsonl"))
    lines = shard.read_text().splitlines()
    lines[0] = lines[0].replace('"score":5.0', '"score":0.5')
    shard.write_text("\n".join(lines) + "\n")
    with _store(tmp_path) as store:
        again = score_prompts(_load(text_file), PROMPTS, SETTINGS, store)
        assert any("checksum mismatch" in p for p in store.problems)
    assert (again.new, again.scores[0]) == (1, 5.0)


def test_model_detector_batching_order_unet_rows_and_setup(tmp_path, pipe):
    from membench_eval.detection.run import run_detectors, score_prompts

    path = _file(tmp_path, UNET_DETECTOR, "unet_norm.py")
    det = _load(path)
    with _store(tmp_path, "a") as store:
        a = score_prompts(det, PROMPTS, SETTINGS.replace(batch_size=4), store, pipe=pipe)
    with _store(tmp_path, "b") as store:
        b = run_detectors([det], PROMPTS[::-1], SETTINGS.replace(batch_size=1), store, load_pipe=lambda: pipe)[0]
    np.testing.assert_allclose(a.scores, b.scores[::-1], rtol=1e-5)
    assert len(set(np.round(a.scores, 4))) == 5  # prompts (and their seeds) differ
    assert a.unet_rows == [1.0] * 5 and b.unet_rows == [1.0] * 5  # one UNet row per prompt, batched or not
    assert all(s > 0 for s in a.seconds)
    assert len(sys.modules[type(det).__module__].SETUPS) == 1  # setup cached per pipeline
    row = json.loads(next((tmp_path / "a" / "detections").glob("*.jsonl")).open().readline())
    assert row["fields"]["model"]["model"] == "in-memory" and row["batch_prompts"] in (4, 1)
    with _store(tmp_path, "a") as store:
        with pytest.raises(DetectorError, match=r"detector 'unet_norm timestep=999': needs a model"):
            score_prompts(det, PROMPTS, SETTINGS, store)
        assert score_prompts(det, PROMPTS, SETTINGS.replace(batch_size=3), store, pipe=pipe).new == 0
