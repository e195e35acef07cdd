"""The explicit denoising loop and the hooks it adds: guidance, edit_latents, setup, UNet counts."""

from __future__ import annotations

import numpy as np
import pytest

from membench_eval.errors import MitigationError
from membench_eval.generation.batch import run_batch
from membench_eval.generation.engine import generate, pad_batch
from membench_eval.generation.seeding import make_generator, plan_requests
from membench_eval.generation.settings import GenerationSettings
from membench_eval.mitigation import Mitigation
from membench_eval.store.run_store import RunStore
from membench_eval.suites.types import Prompt

PROMPTS = [Prompt("p0", "a photo of an astronaut"), Prompt("p1", "a cup of coffee")]
SETTINGS = GenerationSettings(num_inference_steps=3, height=32, width=32, seed=3, batch_size=4)


@pytest.fixture(scope="module")
def pipe(make_tiny_pipeline):
    return make_tiny_pipeline(seed=2, sample_size=32)


def _bare(pipe, requests, guidance_scale):
    return pipe(
        prompt=[r.prompt for r in requests], generator=[make_generator(r.seed) for r in requests],
        num_inference_steps=SETTINGS.num_inference_steps, guidance_scale=guidance_scale, height=32, width=32,
        output_type="np",
    ).images


@pytest.mark.parametrize("guidance_scale", [7.5, 1.0])
def test_loop_equals_stable_diffusion_pipeline_call_byte_for_byte(pipe, guidance_scale):
    """A method that overrides nothing: same pixels as diffusers' __call__ (max difference 0)."""
    import dataclasses

    settings = dataclasses.replace(SETTINGS, guidance_scale=guidance_scale)
    requests = plan_requests(PROMPTS, 2, settings.seed)
    images, ctx = run_batch(pipe, requests, Mitigation(), settings)
    expected = (np.clip(_bare(pipe, requests, guidance_scale), 0, 1) * 255).round().astype(np.uint8)
    assert np.abs(np.stack(images).astype(int) - expected.astype(int)).max() == 0
    assert ctx.do_classifier_free_guidance is (guidance_scale > 1)


class Schedule(Mitigation):
    """Conditional prediction only before ``start``, CFG from then on; records what it saw."""

    name = "test_schedule"
    start: int = 2

    def guidance(self, pipe, step, timestep, latents, eps_uncond, eps_cond, ctx):
        for record in ctx.records:
            record.setdefault("steps", []).append([step, timestep])
        if step < self.start:
            return eps_cond
        return eps_uncond + ctx.guidance_scale * (eps_cond - eps_uncond)


def test_guidance_hook_replaces_the_combination_at_every_step(pipe):
    requests = plan_requests(PROMPTS[:1], 2, SETTINGS.seed)
    base, _ = run_batch(pipe, requests, Mitigation(), SETTINGS)
    late, ctx = run_batch(pipe, requests, Schedule(start=SETTINGS.num_inference_steps), SETTINGS)
    same, _ = run_batch(pipe, requests, Schedule(start=0), SETTINGS)
    assert ctx.records[0]["steps"] == [[i, t] for i, t in enumerate(ctx.timesteps)]
    assert all(np.array_equal(a, b) for a, b in zip(base, same))  # CFG written out == the loop's own
    assert all(np.abs(a.astype(int) - b.astype(int)).max() > 0 for a, b in zip(base, late))


class NoiseShift(Mitigation):
    """Adds a constant to x_T; checks it runs after edit_embeddings, on its embeddings."""

    name = "test_shift"
    shift: float = 0.0

    def edit_embeddings(self, pipe, prompt_embeds, negative_prompt_embeds, latents, ctx):
        return prompt_embeds * 0.5, negative_prompt_embeds

    def edit_latents(self, pipe, latents, prompt_embeds, negative_prompt_embeds, ctx):
        self.seen = (latents.clone(), prompt_embeds.clone())
        return latents + self.shift


def test_edit_latents_sees_edited_embeddings_and_changes_the_start(pipe):
    import torch

    requests = plan_requests(PROMPTS, 1, SETTINGS.seed)
    zero, one = NoiseShift(shift=0.0), NoiseShift(shift=1.0)
    a, _ = run_batch(pipe, requests, zero, SETTINGS)
    b, ctx = run_batch(pipe, requests, one, SETTINGS)
    with torch.no_grad():
        cond, _ = pipe.encode_prompt([r.prompt for r in requests], ctx.device, 1, True)
    torch.testing.assert_close(zero.seen[1], cond * 0.5)
    assert torch.equal(zero.seen[0], one.seen[0])  # same x_T drawn from the per-image generators
    assert torch.equal(ctx.prompt_embeds, cond * 0.5)
    assert all(np.abs(x.astype(int) - y.astype(int)).max() > 0 for x, y in zip(a, b))


class BadLatents(Mitigation):
    name = "test_bad_latents"

    def edit_latents(self, pipe, latents, prompt_embeds, negative_prompt_embeds, ctx):
        return latents[:1]


def test_edit_latents_shape_error_names_the_hook(pipe):
    with pytest.raises(MitigationError, match="edit_latents: returned"):
        run_batch(pipe, plan_requests(PROMPTS, 1, SETTINGS.seed), BadLatents(), SETTINGS)


class CountedSetup(Mitigation):
    """setup depends on ``k`` only; ``other`` is swept without repeating it."""

    name = "test_setup"
    setup_params = ("k",)
    calls = 0
    k: int = 1
    other: float = 0.0

    def setup(self, pipe):
        type(self).calls += 1
        return {"k": self.k}

    def edit_embeddings(self, pipe, prompt_embeds, negative_prompt_embeds, latents, ctx):
        for record in ctx.records:
            record["state_k"] = ctx.state["k"]
        return prompt_embeds, negative_prompt_embeds


def test_setup_runs_once_per_pipeline_and_setup_params(pipe, tmp_path):
    requests = plan_requests(PROMPTS, 3, SETTINGS.seed)  # 6 images: two batches of 4
    store = RunStore(tmp_path)
    for other in (0.0, 0.5):
        report = generate(pipe, requests, CountedSetup(k=1, other=other), SETTINGS, store, progress=False)
        assert report.new == 6
    assert CountedSetup.calls == 1
    report = generate(pipe, requests, CountedSetup(k=2), SETTINGS, store, progress=False)
    assert CountedSetup.calls == 2
    assert {store.record(key)["records"]["state_k"] for key in report.keys} == {2}


def test_unet_evaluations_are_counted_per_image(pipe):
    """Plain CFG: 2 rows per image per step; guidance off: 1."""
    import dataclasses

    requests = pad_batch(plan_requests(PROMPTS[:1], 1, SETTINGS.seed), 4)
    _, ctx = run_batch(pipe, requests, Mitigation(), SETTINGS)
    assert {r["unet_evals"] for r in ctx.records} == {2.0 * SETTINGS.num_inference_steps}
    _, ctx = run_batch(pipe, requests, Mitigation(), dataclasses.replace(SETTINGS, guidance_scale=1.0))
    assert {r["unet_evals"] for r in ctx.records} == {1.0 * SETTINGS.num_inference_steps}
