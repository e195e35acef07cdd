"""The 2025-2026 methods at the hook level on the untrained tiny pipeline with a marked UNet.

``MarkedUNet`` (tests/detection/test_detectors.py): eps = tiny_unet + a(p) tanh(x), so a marked
prompt has a large, x-dependent guidance vector, as a memorized one. Asserted: Han et al.'s
initial-noise adjustment moves x_T and lowers ||eps_c - eps_u|| at t0 in both modes (the
per-sample mode against the code's own formula: AdamW on ||D(x)||), and delays CFG in batch_wise
mode; the anisotropy-guided embedding adaptation lowers the anisotropy score it targets and leaves
BOS and padding rows alone.
"""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from membench_eval.mitigation import ImageRequest  # noqa: E402
from tests.detection.test_detectors import MarkedUNet, _Strengths  # noqa: E402
from tests.mitigation_files import hook_context, load_module  # noqa: E402

init_noise = load_module("init_noise")
aniso = load_module("anisotropy_embed")
MARKED = "an astronaut floating above the earth"
STEPS = 4


@pytest.fixture(scope="module")
def marked(make_tiny_pipeline):
    pipe = make_tiny_pipeline(seed=0)
    pipe.unet = MarkedUNet(pipe.unet, _Strengths(pipe, {MARKED: 3.0}))
    return pipe


def _inputs(pipe, seeds, padding=()):
    requests = [ImageRequest("p", MARKED, k, seed=s, padding=k in padding) for k, s in enumerate(seeds)]
    ctx = hook_context(requests, STEPS)
    with torch.no_grad():
        cond, uncond = pipe.encode_prompt(ctx.prompts, ctx.device, 1, True)
    latents = torch.cat([torch.randn(1, 4, 16, 16, generator=g) for g in ctx.generators])
    return ctx, cond, uncond, latents


def _guidance_norm(pipe, x, cond, uncond):
    """||eps_c - eps_u|| at the first of STEPS DDIM timesteps, written out here (not the plugin's)."""
    scheduler = copy.deepcopy(pipe.scheduler)
    scheduler.set_timesteps(STEPS)
    t = scheduler.timesteps[0]
    with torch.no_grad():
        out = pipe.unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample
    u, c = out.chunk(2)
    return (c - u).flatten(1).norm(dim=1)


@pytest.mark.parametrize("params", [dict(mode="batch_wise"), dict(mode="per_sample", target_loss=0.0, max_iterations=6,
                                                                  lr=0.05)])
def test_init_noise_moves_x_T_and_lowers_the_guidance_norm(marked, params):
    m = init_noise.InitialNoiseAdjustment(**params)
    ctx, cond, uncond, latents = _inputs(marked, [3, 4, 5], padding=(2,))
    out = m.edit_latents(marked, latents, cond, uncond, ctx)
    before, after = _guidance_norm(marked, latents, cond, uncond), _guidance_norm(marked, out, cond, uncond)
    for i in (0, 1):
        assert (out[i] - latents[i]).norm() > 0.05 * latents[i].norm()
        assert after[i] < 0.95 * before[i], (params, before, after)
        assert ctx.records[i]["init_noise_final_norm"] == pytest.approx(float(after[i]), rel=1e-3)
    assert torch.equal(out[2], latents[2]) and ctx.records[2] == {}  # padding untouched


def test_init_noise_per_sample_stops_at_target_and_delays_cfg_only_batch_wise(marked):
    ctx, cond, uncond, latents = _inputs(marked, [7])
    target = 0.9 * float(_guidance_norm(marked, latents, cond, uncond)[0])
    m = init_noise.InitialNoiseAdjustment(mode="per_sample", target_loss=target, lr=0.05, max_iterations=30)
    m.edit_latents(marked, latents, cond, uncond, ctx)
    rec = ctx.records[0]
    assert 0 < rec["init_noise_iterations"] < 30 and rec["init_noise_final_norm"] <= target
    eu, ec = torch.zeros(1, 4, 2, 2), torch.ones(1, 4, 2, 2)
    bw = init_noise.InitialNoiseAdjustment(mode="batch_wise", apply_cfg_step=1)
    assert torch.equal(bw.guidance(marked, 1, 0, eu, eu, ec, ctx), eu)
    assert torch.equal(bw.guidance(marked, 2, 0, eu, eu, ec, ctx), 7.5 * ec)
    assert torch.equal(m.guidance(marked, 0, 0, eu, eu, ec, ctx), 7.5 * ec)


def test_anisotropy_embedding_adaptation_lowers_its_score(marked):
    ctx, cond, uncond, latents = _inputs(marked, [3, 4], padding=(1,))
    m = aniso.AnisotropyEmbeddingAdaptation(l=-2.0)  # unreachable: runs all 10 steps
    out, neg = m.edit_embeddings(marked, cond, uncond, latents, ctx)
    rec = ctx.records[0]
    assert rec["aniso_iterations"] == 10 and rec["aniso_final_score"] < 0.9 * rec["aniso_initial_score"], rec
    assert torch.equal(out[0, 0], cond[0, 0]) and not torch.equal(out[0, 1:], cond[0, 1:])  # BOS frozen
    assert torch.equal(out[1], cond[1]) and neg is uncond  # padding and the uncond embedding untouched
