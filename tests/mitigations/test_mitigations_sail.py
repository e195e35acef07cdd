"""SAIL's initial-noise optimisation at the hook level, on an untrained tiny SD pipeline.

The loss is re-implemented here from the reference code (``local_model/pipe.py``, the ``miti``
branch) so the plugin is checked against the formula, not against itself.

Calibration on the miniature model (20 DDIM steps, t = 951; 16x16x16 latents, ||x_T|| ~ 64, so the
0.05 ||x|| term is ~3.2), raw x_T of 16 trigger prompts x 4 seeds and 30 general prompts x 4 seeds:
loss median 6.08 (min 4.18, max 9.84) on trigger prompts, 4.47 (3.87..7.57) on general ones.
8.2 accepts 98% of trigger and 100% of general raw samples at once, so at the paper's value SAIL
does almost nothing on mini. Both terms grow as sqrt(latent size): 8.2 x sqrt(4096/16384) = 4.1
is the same strictness on mini (accepts ~3% of trigger and ~25% of general samples at once; one
round of 10 Adam steps takes the trigger median from 6.08 to 4.05). Suggested mini sweep: the
SD1.4 sweep halved, 4.5, 4.3, 4.1, 3.9, 3.7 (below ~3.7 almost every image runs to the round cap).
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from membench_eval.errors import MitigationError  # noqa: E402
from membench_eval.generation.batch import count_unet_rows  # noqa: E402
from membench_eval.mitigation import ImageRequest  # noqa: E402
from tests.mitigation_files import hook_context, load_module  # noqa: E402

sail = load_module("sail")
A, B = "an astronaut riding a horse", "a cup of coffee"
STEPS = 4
KEYS = {"sail_steps", "sail_rounds", "sail_initial_loss", "sail_final_loss", "sail_threshold", "sail_accepted",
        "sail_unet_rows"}


def _inputs(pipe, images, padding=()):
    """images: (seed, prompt) per row; rows listed in ``padding`` are padding requests."""
    requests = [ImageRequest(f"p{s}", p, 0, seed=s, padding=k in padding) for k, (s, p) in enumerate(images)]
    ctx = hook_context(requests, STEPS)
    with torch.no_grad():
        cond, uncond = pipe.encode_prompt(ctx.prompts, ctx.device, 1, True)
    latents = torch.cat([torch.randn(1, 4, 16, 16, generator=g) for g in ctx.generators])
    return ctx, cond, uncond, latents


def _reference_loss(pipe, x, cond, uncond, v_prediction=False):
    """The reference's per-sample loss, written as in its code."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(STEPS)
    t = scheduler.timesteps[0]
    a = scheduler.alphas_cumprod[t]
    n = x.shape[0]
    embeds = torch.cat([uncond, cond])

    def difference(z):
        z2 = torch.cat([z, z])
        out = pipe.unet(z2, t, encoder_hidden_states=embeds).sample
        if v_prediction:
            out = -(torch.sqrt(a) * out - z2) / torch.sqrt(1 - a)
        u, c = out.chunk(2)
        return c - u

    with torch.no_grad():
        d = difference(x)
        d = d / d.view(n, -1).norm(dim=1)[:, None, None, None]
        weight = 0.01 if v_prediction else 0.05
        return (difference(x + d).view(n, -1).norm(dim=1) + weight * x.view(n, -1).norm(dim=1)).tolist()


def _raw_losses(pipe, images):
    ctx, cond, uncond, latents = _inputs(pipe, images)
    return _reference_loss(pipe, latents, cond, uncond)


def test_huge_threshold_changes_nothing_and_costs_one_evaluation(pipe):
    ctx, cond, uncond, latents = _inputs(pipe, [(3, A), (4, B)])
    with count_unet_rows(pipe) as counter:
        out = sail.SAIL(threshold=1e9).edit_latents(pipe, latents, cond, uncond, ctx)
    assert torch.equal(out, latents)
    assert counter.rows == 4 * 2  # two UNet calls on [uncond, cond] rows
    raw = _reference_loss(pipe, latents, cond, uncond)
    for record, loss in zip(ctx.records, raw):
        assert set(record) == KEYS
        assert (record["sail_steps"], record["sail_rounds"], record["sail_accepted"]) == (0, 1, True)
        assert record["sail_unet_rows"] == 4
        assert record["sail_initial_loss"] == record["sail_final_loss"] == pytest.approx(loss, rel=1e-5)


def test_threshold_below_the_raw_loss_moves_the_latents_until_accepted(pipe):
    images = [(3, A), (4, B)]
    threshold = min(_raw_losses(pipe, images)) - 0.1
    ctx, cond, uncond, latents = _inputs(pipe, images)
    method = sail.SAIL(threshold=threshold)
    out = method.edit_latents(pipe, latents, cond, uncond, ctx)
    assert out.shape == latents.shape and out.dtype == latents.dtype
    recomputed = _reference_loss(pipe, out, cond, uncond)
    exact, _ = method.loss_function(pipe, STEPS, torch.device("cpu"), torch.cat([uncond, cond]))
    with torch.no_grad():
        exact = exact(out).tolist()
    for i, record in enumerate(ctx.records):
        assert not torch.equal(out[i], latents[i])
        assert record["sail_accepted"] and record["sail_rounds"] == 1
        assert 0 < record["sail_steps"] <= sail.SAIL.MAX_STEPS
        assert record["sail_final_loss"] <= threshold == record["sail_threshold"] < record["sail_initial_loss"]
        # The recorded loss is the loss of the latent returned (same batch shape: bit for bit).
        assert record["sail_final_loss"] == exact[i]
        assert record["sail_final_loss"] == pytest.approx(recomputed[i], rel=1e-5)
        assert record["sail_unet_rows"] == 4 * (record["sail_steps"] + record["sail_rounds"])
    assert ctx.records[0]["sail_steps"] != ctx.records[1]["sail_steps"]  # different path lengths


@pytest.mark.parametrize("rounds, final_threshold", [(3, 0.0), (4, 0.1), (6, 0.1), (7, 0.2)])
def test_threshold_rises_by_a_tenth_after_every_three_failures(pipe, rounds, final_threshold):
    class Capped(sail.SAIL):
        MAX_STEPS = 0
        MAX_ROUNDS = rounds

    ctx, cond, uncond, latents = _inputs(pipe, [(3, A), (4, B)])
    with count_unet_rows(pipe) as counter:
        Capped(threshold=0.0).edit_latents(pipe, latents, cond, uncond, ctx)  # unreachable: the loss is > 0
    assert counter.rows == 4 * 2 * rounds
    for record in ctx.records:
        assert (record["sail_rounds"], record["sail_steps"], record["sail_accepted"]) == (rounds, 0, False)
        assert record["sail_threshold"] == pytest.approx(final_threshold)


def test_a_failed_round_restarts_from_a_fresh_draw_of_the_images_own_generator(pipe):
    class TwoDraws(sail.SAIL):
        MAX_STEPS = 0
        MAX_ROUNDS = 2

    images = [(3, A), (4, B)]
    ctx, cond, uncond, latents = _inputs(pipe, images)
    fresh = torch.cat([_second_draw(s) for s, _ in images])
    out = TwoDraws(threshold=0.0).edit_latents(pipe, latents.clone(), cond, uncond, ctx)
    raw_loss = _reference_loss(pipe, latents, cond, uncond)
    fresh_loss = _reference_loss(pipe, fresh, cond, uncond)
    for i, record in enumerate(ctx.records):
        assert not torch.equal(fresh[i], latents[i])  # no same-seed duplicate
        keep = fresh[i] if fresh_loss[i] < raw_loss[i] else latents[i]
        assert torch.equal(out[i], keep)  # a capped image keeps its lowest-loss latent
        assert record["sail_final_loss"] == pytest.approx(min(raw_loss[i], fresh_loss[i]), rel=1e-5)
        assert record["sail_initial_loss"] == pytest.approx(raw_loss[i], rel=1e-5)


def _second_draw(seed):
    g = torch.Generator().manual_seed(seed)
    torch.randn(1, 4, 16, 16, generator=g)
    return torch.randn(1, 4, 16, 16, generator=g)


def test_a_rows_result_does_not_depend_on_the_other_rows_and_padding_is_untouched(pipe):
    class Short(sail.SAIL):
        MAX_STEPS = 2
        MAX_ROUNDS = 2

    a, b, pad = (1, A), (2, B), (9, "")
    method = Short(threshold=_raw_losses(pipe, [a])[0] - 0.1)  # a reaches it in round 1, b never
    results = {}
    for order in ([a, b], [b, a], [a, pad]):
        ctx, cond, uncond, latents = _inputs(pipe, order, padding=(1,) if pad in order else ())
        out = method.edit_latents(pipe, latents.clone(), cond, uncond, ctx)
        for k, image in enumerate(order):
            results.setdefault(image, []).append((out[k], ctx.records[k], latents[k]))
    a_runs, b_runs = results[a], results[b]
    assert a_runs[0][1]["sail_accepted"] and a_runs[0][1]["sail_rounds"] == 1
    assert not b_runs[0][1]["sail_accepted"] and b_runs[0][1]["sail_rounds"] == 2
    for runs in (a_runs, b_runs):
        for out, record, _ in runs[1:]:
            assert torch.equal(out, runs[0][0])
            assert record == runs[0][1]
    (pad_out, pad_record, pad_in), = results[pad]
    assert torch.equal(pad_out, pad_in) and pad_record == {}


def test_v_prediction_uses_the_score_difference_and_weight_001(make_tiny_pipeline):
    from diffusers import DDIMScheduler

    vpipe = make_tiny_pipeline(seed=0)
    vpipe.scheduler = DDIMScheduler.from_config(vpipe.scheduler.config, prediction_type="v_prediction")
    ctx, cond, uncond, latents = _inputs(vpipe, [(3, A), (4, B)])
    sail.SAIL(threshold=1e9).edit_latents(vpipe, latents, cond, uncond, ctx)
    expected = _reference_loss(vpipe, latents, cond, uncond, v_prediction=True)
    eps_reading = _reference_loss(vpipe, latents, cond, uncond)
    for record, loss, other in zip(ctx.records, expected, eps_reading):
        assert record["sail_initial_loss"] == pytest.approx(loss, rel=1e-5)
        assert not math.isclose(loss, other, rel_tol=1e-3)


def test_without_guidance_the_loss_uses_the_empty_prompt(pipe):
    ctx, cond, uncond, latents = _inputs(pipe, [(3, A), (4, B)])
    sail.SAIL(threshold=1e9).edit_latents(pipe, latents, cond, None, ctx)
    for record, loss in zip(ctx.records, _reference_loss(pipe, latents, cond, uncond)):
        assert record["sail_initial_loss"] == pytest.approx(loss, rel=1e-5)


def test_works_inside_inference_mode_and_leaves_the_pipeline_alone(pipe):
    images = [(1, A), (2, A)]
    threshold = min(_raw_losses(pipe, images)) - 0.1
    ctx, cond, uncond, latents = _inputs(pipe, images)
    pipe.scheduler.set_timesteps(3)
    with torch.inference_mode():
        out = sail.SAIL(threshold=threshold).edit_latents(pipe, latents, cond, uncond, ctx)
    assert len(pipe.scheduler.timesteps) == 3
    assert not torch.equal(out, latents) and not out.requires_grad
    assert all(r["sail_accepted"] for r in ctx.records)
    assert all(p.grad is None for p in pipe.unet.parameters())


def test_bad_threshold_is_rejected():
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(MitigationError, match="threshold must be"):
            sail.SAIL(threshold=bad)
    assert sail.SAIL().threshold == 8.2
    assert sail.SAIL.strongest["threshold"] == min(sail.SAIL.sweep["threshold"])
