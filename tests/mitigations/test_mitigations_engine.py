"""Every bundled method runs through the generation engine (tiny random pipeline, seconds):
loaded from its file, stored under its own key, with its records, and changing the images."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

MITIGATIONS = Path(__file__).resolve().parents[2] / "mitigations"


@pytest.fixture(scope="module")
def engine_run(tmp_path_factory, make_tiny_pipeline):
    from membench_eval.generation.engine import generate
    from membench_eval.generation.seeding import plan_requests
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.plugins.mitigations import load_mitigations
    from membench_eval.store.run_store import RunStore
    from membench_eval.suites.types import Prompt

    pipe = make_tiny_pipeline(seed=0)
    processors_before = dict(pipe.unet.attn_processors)
    settings = GenerationSettings(num_inference_steps=3, height=64, width=64, batch_size=3)
    prompts = [Prompt("p0", "a photo of an astronaut riding a horse"), Prompt("p1", "a cup of coffee on a table")]
    requests = plan_requests(prompts, 2, run_seed=0)
    store = RunStore(tmp_path_factory.mktemp("engine") / "store")
    out = {}
    for name in ("base", "rna", "rta", "wen", "ren"):
        (method,) = load_mitigations(MITIGATIONS / f"{name}.py", param_items=[] if name == "base" else ["strongest"])
        report = generate(pipe, requests, method, settings, store, progress=False)
        rows = [store.record(k) for k in report.keys]
        images = np.stack([np.asarray(store.get_image(k), dtype=np.float32) for k in report.keys])
        out[name] = (report, rows, images)
    return pipe, processors_before, requests, out


def test_each_method_has_its_own_keys_and_changes_the_images(engine_run):
    _, _, requests, out = engine_run
    base_keys = set(out["base"][0].keys)
    for name in ("rna", "rta", "wen", "ren"):
        report, rows, images = out[name]
        assert report.new == len(requests) and base_keys.isdisjoint(report.keys), name
        assert rows[0]["method"] == name
        assert np.abs(images - out["base"][2]).mean() > 0.5, f"{name} left the images unchanged"


def test_rewrites_are_stored_and_differ_per_image(engine_run):
    _, _, requests, out = engine_run
    for name in ("rna", "rta"):
        used = [row["prompt_used"] for row in out[name][1]]
        assert all(u != r.prompt for u, r in zip(used, requests))
        assert len(set(used)) == len(used)
        assert all(len(u.split(" ")) == len(r.prompt.split(" ")) + 6 for u, r in zip(used, requests)), name


def test_wen_records_are_stored_per_image(engine_run):
    _, _, _, out = engine_run
    for row in out["wen"][1]:
        rec = row["records"]
        assert set(rec) == {"wen_iterations", "wen_initial_loss", "wen_final_loss", "unet_evals"}
        assert rec["wen_final_loss"] <= 2.0 or rec["wen_iterations"] == 10


def test_unet_evaluations_per_image_are_measured(engine_run):
    """Plain CFG costs 2 x steps per image; Wen's optimisation adds forward calls on top."""
    _, _, _, out = engine_run
    assert {row["records"]["unet_evals"] for row in out["base"][1]} == {6.0}
    assert all(row["records"]["unet_evals"] > 6.0 for row in out["wen"][1])


def test_ren_processor_is_removed_after_generation(engine_run):
    pipe, before, _, _ = engine_run
    after = pipe.unet.attn_processors
    assert {k: type(v) for k, v in after.items()} == {k: type(v) for k, v in before.items()}
