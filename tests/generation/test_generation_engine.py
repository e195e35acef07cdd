"""The generation engine: hook order, cross-attention install/restore, output checks, reuse."""

from __future__ import annotations

import math

import numpy as np
import pytest

from membench_eval.errors import MitigationError
from membench_eval.generation.engine import generate, make_batches, request_keys
from membench_eval.generation.seeding import make_generator, plan_requests
from membench_eval.generation.settings import GenerationSettings
from membench_eval.mitigation import Mitigation
from membench_eval.store.run_store import RunStore
from membench_eval.suites.types import Prompt

PROMPTS = [Prompt("p0", "a photo of an astronaut"), Prompt("p1", "a cup of coffee")]
SETTINGS = GenerationSettings(num_inference_steps=2, height=32, width=32, seed=3, batch_size=2)


@pytest.fixture(scope="module")
def pipe(make_tiny_pipeline):
    return make_tiny_pipeline(seed=2, sample_size=32)


def test_same_images_as_a_bare_diffusers_call_and_rerun_reuses(pipe, tmp_path):
    requests = plan_requests(PROMPTS, 2, SETTINGS.seed)
    store = RunStore(tmp_path)
    report = generate(pipe, requests, None, SETTINGS, store, progress=False)
    assert (report.new, report.reused) == (4, 0)
    bare = pipe(
        prompt=[r.prompt for r in requests], generator=[make_generator(r.seed) for r in requests],
        num_inference_steps=2, guidance_scale=7.5, height=32, width=32, output_type="np",
    ).images
    for r, key, expected in zip(requests, report.keys, bare):
        got = np.asarray(store.get_image(key), dtype=np.int16)
        assert np.abs(got - (expected * 255).round()).max() <= 1
        row = store.record(key)
        assert (row["prompt_id"], row["image_index"], row["seed"], row["method"]) == (r.prompt_id, r.image_index, r.seed, "base")
        assert row["prompt"] == row["prompt_used"] == r.prompt and row["model"] == "in-memory"
    again = generate(pipe, requests, Mitigation(), SETTINGS, RunStore(tmp_path), progress=False)
    assert (again.new, again.reused, again.keys) == (0, 4, report.keys)
    assert request_keys(pipe, requests, Mitigation(), SETTINGS) == report.keys


class Recorder(Mitigation):
    """Every hook, recording the order it was called in and what it saw."""

    name = "recorder"
    strength: float = 0.5

    def __post_init__(self):
        self.calls: list[str] = []

    def rewrite_prompt(self, prompt, rng):
        self.calls.append("rewrite_prompt")
        return f"{prompt} {rng.randrange(100000)}"

    def edit_embeddings(self, pipe, prompt_embeds, negative_prompt_embeds, latents, ctx):
        self.calls.append("edit_embeddings")
        assert latents.shape[0] == prompt_embeds.shape[0] == negative_prompt_embeds.shape[0] == len(ctx.requests)
        for i, rec in enumerate(ctx.records):
            rec["latent_mean"] = float(latents[i].mean())
        return prompt_embeds * self.strength, negative_prompt_embeds

    def on_step_end(self, pipe, step, timestep, callback_kwargs, ctx):
        self.calls.append(f"step{step}")
        return callback_kwargs

    def cross_attention_processor(self, pipe, ctx):
        from diffusers.models.attention_processor import AttnProcessor

        self.calls.append("processor")
        outer = self

        class Tagged(AttnProcessor):
            def __call__(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
                outer.calls.append("attn2" if encoder_hidden_states is not None else "self-attn!")
                return super().__call__(attn, hidden_states, encoder_hidden_states, *args, **kwargs)

        self.tagged = Tagged()
        return self.tagged


def test_hooks_run_in_documented_order_and_records_are_stored(pipe, tmp_path):
    requests = plan_requests(PROMPTS[:1], 2, SETTINGS.seed)
    before = dict(pipe.unet.attn_processors)
    method = Recorder()
    store = RunStore(tmp_path)
    report = generate(pipe, requests, method, SETTINGS, store, progress=False)
    calls = [c for c in method.calls if c not in ("attn2",)]
    assert calls == ["rewrite_prompt", "rewrite_prompt", "edit_embeddings", "processor", "step0", "step1"]
    assert "attn2" in method.calls and "self-attn!" not in method.calls  # installed on attn2 only
    assert dict(pipe.unet.attn_processors) == before  # restored
    rows = [store.record(k) for k in report.keys]
    assert all(row["prompt_used"].startswith(row["prompt"] + " ") for row in rows)
    assert all(math.isfinite(row["records"]["latent_mean"]) for row in rows)
    assert rows[0]["params"] == {"strength": 0.5} and rows[0]["label"] == "recorder strength=0.5"
    # The method and its parameters are in the key: base images are stored under other keys.
    assert set(report.keys).isdisjoint(request_keys(pipe, requests, Mitigation(), SETTINGS))
    assert set(report.keys).isdisjoint(request_keys(pipe, requests, Recorder(strength=0.6), SETTINGS))


class FailsOnSecondPrompt(Mitigation):
    name = "fails"

    def rewrite_prompt(self, prompt, rng):
        if "coffee" in prompt:
            raise RuntimeError("boom")
        return prompt


class RaisesInProcessor(Mitigation):
    name = "bad_processor"

    def cross_attention_processor(self, pipe, ctx):
        class Broken:
            def __call__(self, *args, **kwargs):
                raise ValueError("bad attention")

        return Broken()


class WrongCount(Mitigation):
    name = "wrong_count"

    def generate(self, pipe, ctx):
        return [np.zeros((32, 32, 3), np.float32)] * (len(ctx.requests) - 1)


class NaNImage(Mitigation):
    name = "nan_image"

    def generate(self, pipe, ctx):
        images = [np.full((32, 32, 3), 0.5, np.float32) for _ in ctx.requests]
        images[1][3, 3, 0] = np.nan
        return images


def test_method_errors_name_method_prompt_and_image_and_keep_done_work(pipe, tmp_path):
    requests = plan_requests(PROMPTS, 2, SETTINGS.seed)  # batch 1 = p0 images, batch 2 = p1 images
    store = RunStore(tmp_path)
    with pytest.raises(MitigationError, match=r"method 'fails'.*rewrite_prompt.*boom.*prompt 'p1', image 0") as info:
        generate(pipe, requests, FailsOnSecondPrompt(), SETTINGS, store, progress=False)
    assert isinstance(info.value.__cause__, RuntimeError)
    done = RunStore(tmp_path).records()
    assert sorted((r["prompt_id"], r["image_index"]) for r in done) == [("p0", 0), ("p0", 1)]

    before = dict(pipe.unet.attn_processors)
    with pytest.raises(MitigationError, match=r"method 'bad_processor'.*bad attention.*prompt 'p0', image 0"):
        generate(pipe, requests, RaisesInProcessor(), SETTINGS, store, progress=False)
    assert dict(pipe.unet.attn_processors) == before  # restored even on error

    with pytest.raises(MitigationError, match=r"method 'wrong_count'.*returned 1 images for 2 requests"):
        generate(pipe, requests, WrongCount(), SETTINGS, store, progress=False)
    with pytest.raises(MitigationError, match=r"method 'nan_image'.*NaN.*prompt 'p0', image 1"):
        generate(pipe, requests, NaNImage(), SETTINGS, store, progress=False)
    assert len(RunStore(tmp_path).records()) == 2


def test_full_override_images_are_stored_as_returned(pipe, tmp_path):
    class Gray(Mitigation):
        name = "gray"
        level: int = 128

        def generate(self, pipe, ctx):
            from PIL import Image

            return [Image.new("RGB", (ctx.width, ctx.height), (self.level,) * 3) for _ in ctx.requests]

    store = RunStore(tmp_path)
    report = generate(pipe, plan_requests(PROMPTS, 1, 0), Gray(level=77), SETTINGS, store, progress=False)
    assert all(np.all(np.asarray(store.get_image(k)) == 77) for k in report.keys)


def test_batches_mix_prompts_unless_method_asks_by_prompt():
    requests = plan_requests([Prompt(f"p{i}", "x") for i in range(3)], 3, 0)
    assert make_batches(requests, set(range(9)), 4, by_prompt=False) == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]
    assert make_batches(requests, set(range(9)), 4, by_prompt=True) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert make_batches(requests, set(range(9)), 6, by_prompt=True) == [[0, 1, 2, 3, 4, 5], [6, 7, 8]]
    # Resuming a by-prompt method regenerates a partly stored prompt whole (only missing ones are stored).
    assert make_batches(requests, {2, 7}, 10, by_prompt=True) == [[0, 1, 2, 6, 7, 8]]
    assert make_batches(requests, {2, 7}, 10, by_prompt=False) == [[2, 7]]


class NaNEmbeddings(Mitigation):
    name = "nan_embeddings"

    def edit_embeddings(self, pipe, cond, uncond, latents, ctx):
        return cond * float("nan"), uncond


def test_nan_from_a_hook_names_the_hook_and_a_deleted_png_is_reported(pipe, tmp_path):
    """Issue 33, case 10: NaN embeddings were blamed on "pipeline output"; a deleted PNG was
    regenerated without a word."""
    requests = plan_requests(PROMPTS[:1], 2, SETTINGS.seed)
    store = RunStore(tmp_path)
    with pytest.raises(MitigationError, match=r"method 'nan_embeddings', edit_embeddings: returned NaN"):
        generate(pipe, requests, NaNEmbeddings(), SETTINGS, store, progress=False)
    report = generate(pipe, requests, None, SETTINGS, store, progress=False)
    store.image_path(report.keys[0]).unlink()
    again = RunStore(tmp_path)
    assert generate(pipe, requests, None, SETTINGS, again, progress=False).new == 1
    assert [p for p in again.problems if "PNG missing" in p and report.keys[0] in p]
