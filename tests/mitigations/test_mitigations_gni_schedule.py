"""GNI (noisy text embeddings) and the guidance schedule (Jain et al.), at the hook level and
through the engine, on an untrained tiny SD pipeline."""

from __future__ import annotations


import numpy as np
import pytest

torch = pytest.importorskip("torch")

from membench_eval.errors import MitigationError  # noqa: E402
from membench_eval.generation.batch import run_batch  # noqa: E402
from membench_eval.generation.seeding import plan_requests  # noqa: E402
from membench_eval.generation.settings import GenerationSettings  # noqa: E402
from membench_eval.mitigation import ImageRequest, Mitigation  # noqa: E402
from membench_eval.suites.types import Prompt  # noqa: E402
from tests.mitigation_files import hook_context, load_module  # noqa: E402

gni = load_module("gni")
cfg_schedule = load_module("cfg_schedule")
SETTINGS = GenerationSettings(num_inference_steps=4, height=64, width=64, seed=1, batch_size=2)
PROMPTS = [Prompt("p0", "an astronaut in a spacesuit"), Prompt("p1", "a cup of coffee on a table")]


def _ctx(seeds, guidance_scale=7.5):
    return hook_context([ImageRequest(f"p{s}", "a prompt", 0, seed=s) for s in seeds], 4, guidance_scale)


# --- GNI ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("lam", [0.1, 1.0])
def test_gni_embeddings_differ_from_base_by_the_configured_scale(lam):
    cond, uncond = torch.randn(3, 77, 64), torch.randn(3, 77, 64)
    ctx = _ctx([5, 6, 7])
    new_cond, new_uncond = gni.GaussianNoiseInference(lam=lam).edit_embeddings(None, cond, uncond, None, ctx)
    for new, old in ((new_cond, cond), (new_uncond, uncond)):  # both halves, as the reference
        diff = new - old
        assert diff.std().item() == pytest.approx(lam, rel=0.03)
        assert abs(diff.mean().item()) < 0.03 * lam
        assert (diff != 0).float().mean() > 0.999  # every token, BOS included, every channel
    assert [r["gni_noise_std"] for r in ctx.records] == pytest.approx([lam] * 3, rel=0.05)
    assert not torch.equal(new_cond[0] - cond[0], new_cond[1] - cond[1])  # its own noise per image


def test_gni_noise_depends_on_the_image_seed_only():
    cond, uncond = torch.zeros(2, 77, 8), torch.zeros(2, 77, 8)
    a, _ = gni.GaussianNoiseInference(lam=0.5).edit_embeddings(None, cond, uncond, None, _ctx([1, 2]))
    b, _ = gni.GaussianNoiseInference(lam=0.5).edit_embeddings(None, cond, uncond, None, _ctx([2, 1]))
    assert torch.equal(a[0], b[1]) and torch.equal(a[1], b[0])
    zero, _ = gni.GaussianNoiseInference(lam=0.0).edit_embeddings(None, cond, uncond, None, _ctx([1, 2]))
    assert torch.equal(zero, cond)
    with pytest.raises(MitigationError, match="lam must be >= 0"):
        gni.GaussianNoiseInference(lam=-1.0)


# --- guidance schedule --------------------------------------------------------------------------


def test_static_schedule_uses_no_guidance_before_its_timestep():
    method = cfg_schedule.GuidanceSchedule(transition=500)
    ctx = _ctx([1, 2])
    eps_u, eps_c, x = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    assert torch.equal(method.guidance(None, 0, 981, x, eps_u, eps_c, ctx), eps_u)  # unconditional only
    assert torch.equal(method.guidance(None, 1, 521, x, eps_u, eps_c, ctx), eps_u)
    torch.testing.assert_close(method.guidance(None, 2, 500, x, eps_u, eps_c, ctx), eps_u + 7.5 * (eps_c - eps_u))
    assert ctx.records[0] == {"schedule_transition_step": 2, "schedule_transition_timestep": 500}
    opposite = cfg_schedule.GuidanceSchedule(transition=650, before=-2.0)
    torch.testing.assert_close(opposite.guidance(None, 0, 981, x, eps_u, eps_c, _ctx([1, 2])), eps_u - 2.0 * (eps_c - eps_u))


def test_dynamic_schedule_starts_cfg_after_the_first_local_minimum_per_image():
    """Image 0's norm dips at step 2 (seen at step 3): CFG from step 3. Image 1 only falls: never."""
    method = cfg_schedule.GuidanceSchedule(mode="dynamic")
    ctx = _ctx([1, 2])
    norms = [(5.0, 5.0), (4.0, 4.0), (3.0, 3.0), (3.5, 2.0), (4.0, 1.0)]
    eps_u = torch.zeros(2, 1, 1, 1)
    for step, (a, b) in enumerate(norms):
        eps_c = torch.tensor([a, b]).view(2, 1, 1, 1)
        out = method.guidance(None, step, 900 - 100 * step, eps_c, eps_u, eps_c, ctx).flatten()
        expected_scale_0 = 7.5 if step >= 3 else 1.0
        assert out.tolist() == pytest.approx([expected_scale_0 * a, b]), step
    assert ctx.records[0]["schedule_transition_step"] == 3 and ctx.records[0]["schedule_transition_timestep"] == 600
    assert ctx.records[1]["schedule_transition_step"] is None


def test_schedule_through_the_engine(pipe):
    requests = plan_requests(PROMPTS, 1, SETTINGS.seed)
    base, _ = run_batch(pipe, requests, Mitigation(), SETTINGS)
    always, _ = run_batch(pipe, requests, cfg_schedule.GuidanceSchedule(transition=1000), SETTINGS)
    late, ctx = run_batch(pipe, requests, cfg_schedule.GuidanceSchedule(transition=200), SETTINGS)
    assert all(np.array_equal(a, b) for a, b in zip(base, always))  # CFG from step 0 == base
    assert all(np.abs(a.astype(int) - b.astype(int)).max() > 0 for a, b in zip(base, late))
    assert ctx.records[0]["schedule_transition_timestep"] <= 200 < ctx.timesteps[ctx.records[0]["schedule_transition_step"] - 1]
    with pytest.raises(MitigationError, match="mode must be one of"):
        cfg_schedule.GuidanceSchedule(mode="sometimes")
