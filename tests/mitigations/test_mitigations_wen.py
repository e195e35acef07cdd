"""Wen et al.'s embedding optimisation at the hook level, on an untrained tiny SD pipeline."""

from __future__ import annotations


import pytest

torch = pytest.importorskip("torch")

from membench_eval.errors import MitigationError  # noqa: E402
from membench_eval.mitigation import ImageRequest  # noqa: E402
from tests.mitigation_files import hook_context, load_module  # noqa: E402

wen = load_module("wen")
PROMPTS = {"p0": "an astronaut in a spacesuit", "p1": "a cup of coffee on a table"}
IMAGES = 2
STEPS = 10


def _inputs(pipe):
    requests = [ImageRequest(pid, text, i, seed=10 * k + i) for k, (pid, text) in enumerate(PROMPTS.items()) for i in range(IMAGES)]
    ctx = hook_context(requests, STEPS)
    with torch.no_grad():
        cond, uncond = pipe.encode_prompt(ctx.prompts, ctx.device, 1, True)
    latents = torch.cat([torch.randn(1, 4, 16, 16, generator=g) for g in ctx.generators])
    return ctx, cond, uncond, latents


def _noise_norm(pipe, cond, uncond, latents, ctx) -> float:
    """The loss as defined: one plain L2 norm over the prompt's images at the first step (no rescale)."""
    pipe.scheduler.set_timesteps(ctx.num_inference_steps)
    t = pipe.scheduler.timesteps[0]
    with torch.no_grad():
        d = pipe.unet(latents, t, encoder_hidden_states=cond).sample - pipe.unet(latents, t, encoder_hidden_states=uncond).sample
    return d.norm().item()


def test_loose_target_leaves_embeddings_untouched(pipe):
    ctx, cond, uncond, latents = _inputs(pipe)
    out_cond, out_uncond = wen.WenEmbeddingOptimization(l=1e9).edit_embeddings(pipe, cond, uncond, latents, ctx)
    torch.testing.assert_close(out_cond, cond)
    assert out_uncond is uncond
    assert [r["wen_iterations"] for r in ctx.records] == [0] * 4


def test_unreachable_target_hits_the_iteration_cap_and_lowers_the_norm(pipe):
    ctx, cond, uncond, latents = _inputs(pipe)
    out_cond, out_uncond = wen.WenEmbeddingOptimization(l=0.0).edit_embeddings(pipe, cond, uncond, latents, ctx)
    torch.testing.assert_close(out_uncond, uncond)
    for k, pid in enumerate(PROMPTS):
        rows = slice(IMAGES * k, IMAGES * (k + 1))
        records = ctx.records[rows]
        # One embedding per prompt, shared by its images (as the reference), token 0 (BOS) kept.
        assert all(r == records[0] for r in records)
        assert records[0]["wen_iterations"] == wen.WenEmbeddingOptimization.MAX_ITERATIONS
        torch.testing.assert_close(out_cond[rows][0], out_cond[rows][1])
        torch.testing.assert_close(out_cond[rows, 0], cond[rows, 0])
        assert not torch.allclose(out_cond[rows, 1:], cond[rows, 1:])
        # The recorded losses are the norms of the embeddings before and after.
        initial = _noise_norm(pipe, cond[rows], uncond[rows], latents[rows], ctx)
        final = _noise_norm(pipe, out_cond[rows], uncond[rows], latents[rows], ctx)
        assert records[0]["wen_initial_loss"] == pytest.approx(initial, rel=1e-4)
        assert records[0]["wen_final_loss"] == pytest.approx(final, rel=1e-4)
        assert final < initial


def test_final_loss_is_below_l_or_the_cap_is_reported(pipe):
    ctx, cond, uncond, latents = _inputs(pipe)
    wen.WenEmbeddingOptimization(l=0.0).edit_embeddings(pipe, cond, uncond, latents, ctx)
    # A target between the start and what ten steps reach: met before the cap.
    target = (ctx.records[0]["wen_initial_loss"] + ctx.records[0]["wen_final_loss"]) / 2
    ctx, cond, uncond, latents = _inputs(pipe)
    wen.WenEmbeddingOptimization(l=target).edit_embeddings(pipe, cond, uncond, latents, ctx)
    first = ctx.records[0]
    assert 0 < first["wen_iterations"] < wen.WenEmbeddingOptimization.MAX_ITERATIONS
    assert first["wen_final_loss"] <= target < first["wen_initial_loss"]
    for record in ctx.records:
        assert record["wen_final_loss"] <= target or record["wen_iterations"] == wen.WenEmbeddingOptimization.MAX_ITERATIONS


def test_works_inside_inference_mode_and_does_not_touch_the_pipeline_scheduler(pipe):
    ctx, cond, uncond, latents = _inputs(pipe)
    pipe.scheduler.set_timesteps(3)
    with torch.inference_mode():
        out_cond, _ = wen.WenEmbeddingOptimization(l=0.0).edit_embeddings(pipe, cond, uncond, latents, ctx)
    assert len(pipe.scheduler.timesteps) == 3
    assert not torch.allclose(out_cond, cond)
    assert all(p.grad is None for p in pipe.unet.parameters())


def test_negative_l_is_rejected():
    with pytest.raises(MitigationError, match="l must be >= 0"):
        wen.WenEmbeddingOptimization(l=-1.0)


def test_without_guidance_the_loss_still_compares_with_the_empty_prompt(pipe):
    ctx, cond, uncond, latents = _inputs(pipe)
    out_cond, out_uncond = wen.WenEmbeddingOptimization(l=0.0).edit_embeddings(pipe, cond, None, latents, ctx)
    assert out_uncond is None
    rows = slice(0, IMAGES)
    assert ctx.records[0]["wen_initial_loss"] == pytest.approx(_noise_norm(pipe, cond[rows], uncond[rows], latents[rows], ctx), rel=1e-4)
    assert ctx.records[0]["wen_final_loss"] < ctx.records[0]["wen_initial_loss"]
