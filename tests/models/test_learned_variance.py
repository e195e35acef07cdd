"""IF's DDPM scheduler subclass (``models.learned_variance``): diffusers' step where the variance
channels come with the prediction; the posterior variance or the posterior mean where they do not."""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler as DiffusersDDPM

from membench_eval.models.deepfloyd_if_random import SCHEDULER
from membench_eval.models.learned_variance import DDPMScheduler


def _schedulers(**changes: object) -> tuple[DDPMScheduler, DiffusersDDPM]:
    ours, theirs = DDPMScheduler(**SCHEDULER), DiffusersDDPM(**{**SCHEDULER, **changes})
    for s in (ours, theirs):
        s.set_timesteps(4)
    return ours, theirs


def test_with_variance_channels_the_step_is_diffusers_own() -> None:
    ours, theirs = _schedulers()
    x, out = torch.randn(2, 3, 8, 8), torch.randn(2, 6, 8, 8)
    t = ours.timesteps[1]
    a = ours.step(out, t, x, generator=torch.Generator().manual_seed(1)).prev_sample
    b = theirs.step(out, t, x, generator=torch.Generator().manual_seed(1)).prev_sample
    assert torch.equal(a, b)


def test_noise_alone_steps_with_the_posterior_variance_or_its_mean() -> None:
    """With a generator: diffusers' "fixed_small_log" step (sqrt of the posterior variance times
    the same noise); without one: that step minus its noise, so two calls agree exactly."""
    ours, fixed = _schedulers(variance_type="fixed_small_log")
    x, eps = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    t = ours.timesteps[1]
    drawn = ours.step(eps, t, x, generator=torch.Generator().manual_seed(2)).prev_sample
    assert torch.allclose(drawn, fixed.step(eps, t, x, generator=torch.Generator().manual_seed(2)).prev_sample,
                          atol=1e-6)
    mean = ours.step(eps, t, x).prev_sample
    noise = torch.randn(eps.shape, generator=torch.Generator().manual_seed(2))
    sigma = fixed._get_variance(t)  # fixed_small_log: the posterior standard deviation
    assert torch.allclose(mean, drawn - sigma * noise, atol=1e-5)
    assert torch.equal(mean, ours.step(eps, t, x).prev_sample) and not torch.equal(mean, drawn)
