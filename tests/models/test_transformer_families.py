"""SD3 and FLUX families (``models/sd3.py``, ``models/flux.py``) through the engine, on tiny
random-weight pipelines: the explicit loop gives each pipeline's ``__call__`` output, and the
hooks act on these families (pooled embeddings ride with the token embeddings, the guidance hook
sees flow velocities, processors land on the joint attention with the text slice)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from membench_eval.generation.batch import run_batch
from membench_eval.generation.seeding import make_generator, plan_requests
from membench_eval.generation.settings import GenerationSettings
from membench_eval.mitigation import Mitigation
from membench_eval.models import family_for
from membench_eval.suites.types import Prompt

PROMPTS = [Prompt("p0", "a photo of an astronaut"), Prompt("p1", "a cup of coffee")]
SETTINGS = GenerationSettings(num_inference_steps=3, height=32, width=32, seed=3, batch_size=4, guidance_scale=5.0)


@pytest.fixture(scope="module")
def sd3():
    import torch

    from membench_eval.models.tiny_transformers import build_random_tiny_sd3_pipeline

    torch.set_num_threads(1)
    return build_random_tiny_sd3_pipeline(seed=1)


@pytest.fixture(scope="module")
def flux():
    import torch

    from membench_eval.models.tiny_transformers import build_random_tiny_flux_pipeline

    torch.set_num_threads(1)
    return build_random_tiny_flux_pipeline(seed=1)


def _call(pipe, requests, settings, **kwargs):
    images = pipe(prompt=[r.prompt for r in requests], generator=[make_generator(r.seed) for r in requests],
                  num_inference_steps=settings.num_inference_steps, guidance_scale=settings.guidance_scale,
                  height=settings.height, width=settings.width, output_type="np", **kwargs).images
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8)


def _max_diff(a, b):
    return int(np.abs(np.stack(a).astype(int) - np.stack(b).astype(int)).max())


def test_sd3_loop_equals_pipeline_call_byte_for_byte(sd3):
    requests = plan_requests(PROMPTS, 2, SETTINGS.seed)
    images, ctx = run_batch(sd3, requests, Mitigation(), SETTINGS)
    assert _max_diff(images, _call(sd3, requests, SETTINGS)) == 0
    assert ctx.do_classifier_free_guidance and ctx.prediction_type == "flow"
    assert ctx.records[0]["unet_evals"] == 2 * SETTINGS.num_inference_steps  # [uncond, cond] rows per step
    assert family_for(sd3).offers_here == {"cfg", "joint_attention", "clip_bos_token", "prompt_embeddings",
                                           "pooled_embeddings"}


def test_flux_loop_matches_pipeline_call(flux):
    """dev-like FLUX: guidance is an input, no unconditional batch. Within 1/255: the engine
    batches exactly as ``__call__`` but FLUX's packing runs through reshapes on a
    non-contiguous view, whose matmul blocking may round differently (measured max 1)."""
    settings = dataclasses.replace(SETTINGS, guidance_scale=3.5)
    requests = plan_requests(PROMPTS, 2, settings.seed)
    images, ctx = run_batch(flux, requests, Mitigation(), settings)
    expected = _call(flux, requests, settings, max_sequence_length=family_for(flux).max_sequence_length)
    assert _max_diff(images, expected) <= 1
    assert not ctx.do_classifier_free_guidance
    assert ctx.records[0]["unet_evals"] == settings.num_inference_steps


class Probe(Mitigation):
    """Halves the hooks' embedding tensor (tokens and pooled vector), writes CFG out in the
    guidance hook and records what each hook saw."""

    name = "test_probe"
    scale: float = 1.0

    def edit_embeddings(self, pipe, prompt_embeds, negative_prompt_embeds, latents, ctx):
        return prompt_embeds * self.scale, negative_prompt_embeds

    def guidance(self, pipe, step, timestep, latents, eps_uncond, eps_cond, ctx):
        ctx.records[0].setdefault("kinds", []).append(ctx.prediction_type)
        return eps_uncond + ctx.guidance_scale * (eps_cond - eps_uncond)

    def cross_attention_processor(self, pipe, ctx):
        from diffusers.models.attention_processor import JointAttnProcessor2_0

        inner, seen = JointAttnProcessor2_0(), ctx.records[0].setdefault("text_tokens", [])

        def spy(attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
            seen.append(int(encoder_hidden_states.shape[1]))
            return inner(attn, hidden_states, encoder_hidden_states, *args, **kwargs)

        return spy


def test_sd3_hooks_act_on_tokens_pooled_and_joint_attention(sd3):
    import torch

    family = family_for(sd3)
    requests = plan_requests(PROMPTS[:1], 2, SETTINGS.seed)
    base, _ = run_batch(sd3, requests, Mitigation(), SETTINGS)
    same, ctx = run_batch(sd3, requests, Probe(), SETTINGS)
    assert _max_diff(base, same) == 0  # CFG written out in the hook, spy processor: base's pixels
    assert ctx.records[0]["kinds"] == ["flow"] * SETTINGS.num_inference_steps
    layers = family.attention_layers()
    assert [layer.role for layer in layers] == ["joint"]
    assert ctx.records[0]["text_tokens"] == [family.text_length] * SETTINGS.num_inference_steps
    assert layers[0].text_tokens == slice(-family.text_length, None)
    # The hooks' tensor is [text sequence | pooled pseudo-tokens]: 77 CLIP + 256 zero-T5 + 2 (64 pooled / 32 wide).
    assert tuple(ctx.prompt_embeds.shape) == (2, family.text_length + 2, 32)
    pooled = family.encode([PROMPTS[0].text]).pooled
    assert torch.allclose(ctx.prompt_embeds[:1, -2:].flatten(1), pooled.detach(), atol=1e-5)
    halved, _ = run_batch(sd3, requests, Probe(scale=0.5), SETTINGS)
    assert _max_diff(base, halved) > 0


def test_wen_single_step_score_runs_on_sd3(sd3):
    """Wen's first-step signal (``detection.signal``) on a flow model: conditional minus
    unconditional velocity at x_T, larger for a prompt than for the empty prompt itself."""
    from membench_eval.detection.signal import single_step_scores

    scores = single_step_scores(sd3, ["", "a photo of an astronaut", "a cup of coffee"], height=32, width=32)
    assert scores[0] < 1e-6 * scores[1] and scores[1] > 0 and scores[2] > 0 and scores[1] != scores[2]


def test_coco_suites_for_sd3_and_flux(shared_data_dir):
    """The general-prompt suites: COCO's 5000 captions on each model at its pipeline defaults."""
    from membench_eval.suites import get_suite

    for name, model, guidance in (("coco_sd3", "stabilityai/stable-diffusion-3-medium-diffusers", 7.0),
                                  ("coco_flux", "black-forest-labs/FLUX.1-dev", 3.5)):
        suite = get_suite(name, shared_data_dir)
        assert suite.model == model and suite.trigger is None and len(suite.general) == 5000
        assert suite.generation_defaults == {"height": 1024, "width": 1024, "num_inference_steps": 28,
                                             "guidance_scale": guidance}


def test_sd3_saved_without_t5_loads_and_runs_through_the_engine_store(sd3, tmp_path):
    """A folder saved without T5 (``text_encoder_3`` null) loads into the family (diffusers'
    scheduler class in ``model_index.json``), and ``engine.generate`` stores its images with
    keys of its own: the same pixels as the in-memory pipeline's."""
    from membench_eval.generation.engine import generate
    from membench_eval.models import load_pipeline
    from membench_eval.store.run_store import RunStore

    sd3.save_pretrained(tmp_path / "model")
    loaded = load_pipeline(str(tmp_path / "model"), device="cpu")
    assert family_for(loaded).name == "sd3" and loaded.text_encoder_3 is None
    requests = plan_requests(PROMPTS[:1], 2, SETTINGS.seed)
    store = RunStore(tmp_path / "store")
    report = generate(loaded, requests, None, SETTINGS, store, progress=False)
    stored = [np.asarray(store.get_image(k)) for k in report.keys]
    expected, _ = run_batch(sd3, requests, Mitigation(), SETTINGS)
    assert _max_diff(stored, expected) == 0
    assert [store.record(k)["records"]["unet_evals"] for k in report.keys] == [2 * SETTINGS.num_inference_steps] * 2
