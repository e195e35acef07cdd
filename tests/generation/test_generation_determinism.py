"""Images depend only on (run seed, prompt id, image index): not on batch size, order or worker."""

from __future__ import annotations

import random

import pytest

from membench_eval.generation.engine import generate, request_keys
from membench_eval.generation.seeding import image_seed, make_rng, plan_requests, rng_seed
from membench_eval.generation.settings import GenerationSettings
from membench_eval.mitigation import Mitigation
from membench_eval.store.run_store import RunStore
from membench_eval.suites.types import Prompt, PromptSet, Suite

PROMPTS = [Prompt("p0", "a photo of an astronaut"), Prompt("p1", "a cup of coffee"), Prompt("p2", "a cat on a sofa")]
SETTINGS = GenerationSettings(num_inference_steps=3, height=32, width=32, seed=7)


@pytest.fixture(scope="module")
def pipe(make_tiny_pipeline):
    return make_tiny_pipeline(seed=1, sample_size=32)


def _png_bytes(pipe, tmp_path, name: str, requests, batch_size: int, settings=SETTINGS) -> dict[tuple[str, int], bytes]:
    store = RunStore(tmp_path / name)
    report = generate(pipe, requests, None, settings.replace(batch_size=batch_size), store, progress=False)
    assert report.new == len(requests) and report.reused == 0
    return {(r.prompt_id, r.image_index): store.image_path(k).read_bytes() for r, k in zip(requests, report.keys)}


def test_image_seed_is_a_stable_documented_hash():
    # Pinned value: a change of the derivation would silently change every stored image.
    assert image_seed(0, "p0", 0) == 6014689981305161043
    assert image_seed(0, "p0", 0) != image_seed(0, "p0", 1) != image_seed(0, "p1", 0)
    assert image_seed(1, "p0", 0) != image_seed(0, "p0", 0)
    assert 0 <= image_seed(123, "x" * 1000, 10**6) < 2**63
    # The mitigation RNG is seeded independently of the noise seed.
    assert rng_seed(5) != 5 and make_rng(5).random() == make_rng(5).random() != random.Random(5).random()


def test_plan_requests_one_request_per_image():
    reqs = plan_requests(PROMPTS[:2], 3, run_seed=7)
    assert [(r.prompt_id, r.image_index) for r in reqs] == [("p0", 0), ("p0", 1), ("p0", 2), ("p1", 0), ("p1", 1), ("p1", 2)]
    assert all(r.seed == image_seed(7, r.prompt_id, r.image_index) for r in reqs)


def test_batch_composition_and_order_do_not_change_png_bytes(pipe, tmp_path):
    """At one batch size, calls of 1, 3 or 10 prompts, in any order, give byte-identical PNGs: the
    engine pads every pipeline call to the same shape (float rounding depends on the shape only)."""
    requests = plan_requests([Prompt(f"g{i}", f"a photo number {i}") for i in range(10)], 1, SETTINGS.seed)
    ref = _png_bytes(pipe, tmp_path, "all", requests, 10)
    pieces = {}
    for name, part in (("one", requests[:1]), ("three", requests[3:6]), ("reversed", requests[::-1])):
        pieces.update({(name, k): v for k, v in _png_bytes(pipe, tmp_path, name, part, 10).items()})
    for (name, k), data in pieces.items():
        assert data == ref[k], (name, k)
    # Not vacuous: different seeds give different images, and a different batch size is a
    # different compute shape (its own keys), never mixed with these.
    assert len(set(ref.values())) == len(ref)
    store = RunStore(tmp_path / "all")
    assert not set(request_keys(pipe, requests, Mitigation(), SETTINGS.replace(batch_size=4))) & set(
        request_keys(pipe, requests, Mitigation(), SETTINGS.replace(batch_size=10)))
    assert all(store.has(k) for k in request_keys(pipe, requests, Mitigation(), SETTINGS.replace(batch_size=10)))


def test_images_of_a_prompt_do_not_depend_on_other_prompts_in_the_call(pipe, tmp_path):
    requests = plan_requests(PROMPTS, 4, SETTINGS.seed)  # 12 images: batches of 4 mix prompts
    ref = _png_bytes(pipe, tmp_path, "b4", requests, 4)
    reversed_ = _png_bytes(pipe, tmp_path, "rev", list(reversed(requests)), 4)
    alone = _png_bytes(pipe, tmp_path, "p1", requests[4:8], 4)
    assert all(reversed_[k] == ref[k] for k in ref)
    assert all(alone[k] == ref[k] for k in alone)


def test_settings_for_suite_applies_suite_then_overrides():
    suite = Suite(
        name="t", model="m",
        trigger=PromptSet("trigger", tuple(PROMPTS), images_per_prompt=5),
        general=PromptSet("general", tuple(PROMPTS), images_per_prompt=2),
        generation_defaults={"height": 64, "width": 64, "num_inference_steps": 20},
    )
    s = GenerationSettings.for_suite(suite, num_inference_steps=7, seed=None)
    assert (s.height, s.width, s.num_inference_steps, s.guidance_scale) == (64, 64, 7, 7.5)
    assert (s.images_per_prompt("trigger"), s.images_per_prompt("general"), s.seed) == (5, 2, 0)
    d = GenerationSettings()
    assert (d.num_inference_steps, d.guidance_scale, d.height, d.width) == (50, 7.5, 512, 512)
    assert (d.trigger_images_per_prompt, d.general_images_per_prompt) == (10, 1)
    with pytest.raises(ValueError, match="unknown generation setting"):
        GenerationSettings().replace(stpes=3)
    with pytest.raises(ValueError, match="multiples of 8"):
        GenerationSettings(height=30)


def test_mini_model_limit_and_order_do_not_change_png_bytes(tmp_path):
    """The same property on the trained miniature model (its suite's size; 5 steps keep it fast):
    a --limit-like subset, a reversed order and the full set give identical PNG bytes."""
    import torch

    from membench_eval.errors import MissingWeightsError
    from membench_eval.models.loading import load_pipeline
    from membench_eval.suites import get_suite

    try:
        suite = get_suite("mini")
    except MissingWeightsError as exc:
        pytest.skip(f"mini model not built: {exc}")
    torch.set_num_threads(1)
    pipe = load_pipeline(suite.model, device="cpu")
    settings = GenerationSettings.for_suite(suite, num_inference_steps=5)
    requests = plan_requests(suite.general.prompts[:7], 1, settings.seed)
    ref = _png_bytes(pipe, tmp_path, "all", requests, 10, settings)
    for name, reqs in (("limit-2", requests[:2]), ("reversed", requests[::-1])):
        got = _png_bytes(pipe, tmp_path, name, reqs, 10, settings)
        assert all(got[k] == ref[k] for k in got), name
