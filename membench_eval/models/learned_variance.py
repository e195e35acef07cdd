"""DeepFloyd IF's DDPM scheduler, with a step for a prediction that comes without its variance half.

Why: IF's UNet predicts the noise and an interpolation weight for the variance (6 output channels,
``variance_type="learned_range"``); ``IFPipeline.__call__`` steps with both (the variance of the
conditional rows), and so does the engine's loop (``ModelFamily.step(..., variance=)``). The
other samplers in the harness (Wen's trajectory signal, the latent-update detector, PRSS's
re-sampling) are written as SD's loop and step with the noise prediction alone, which diffusers'
``DDPMScheduler`` refuses under a learned variance. This subclass lets such a step through:

- with a generator (a method's sampler, per-image generators): the posterior variance beta~_t,
  i.e. ``learned_range`` at the lower end of its range (as if the model had predicted -1; DDPM's
  "fixed_small"), noise drawn from the generator as diffusers draws it;
- without one (a detector's trajectory): the posterior mean, no noise, so the trajectory is
  reproducible, as DDIM's with eta 0 is on SD.

A step given the variance channels is diffusers' own, unchanged. Like ``models.flow`` it keeps
diffusers' class name: a saved pipeline loads with plain diffusers, and the scheduler's identity in
store keys is diffusers'.
"""

from __future__ import annotations

from typing import Any

from diffusers import DDPMScheduler as _DiffusersDDPM
from diffusers.schedulers.scheduling_ddpm import DDPMSchedulerOutput


class DDPMScheduler(_DiffusersDDPM):
    """diffusers' DDPM, plus a ``learned_range`` step on a prediction with the sample's channels."""

    def step(self, model_output: Any, timestep: Any, sample: Any, generator: Any = None,
             return_dict: bool = True) -> Any:
        import torch

        if self.config.variance_type != "learned_range" or model_output.shape[1] != sample.shape[1]:
            return super().step(model_output, timestep, sample, generator=generator, return_dict=return_dict)
        if generator is not None:
            lower_end = torch.full_like(model_output, -1.0)  # frac 0: the log posterior variance
            return super().step(torch.cat([model_output, lower_end], dim=1), timestep, sample,
                                generator=generator, return_dict=return_dict)
        prev, x0 = self._posterior_mean(model_output, timestep, sample)
        return DDPMSchedulerOutput(prev_sample=prev, pred_original_sample=x0) if return_dict else (prev,)

    def _posterior_mean(self, model_output: Any, t: Any, sample: Any) -> tuple[Any, Any]:
        """Steps 1-5 of diffusers' ``DDPMScheduler.step`` (x0, thresholding, the posterior mean's
        coefficients), without step 6's noise."""
        prev_t = self.previous_timestep(t)
        alpha_prod_t = self.alphas_cumprod[t]
        alpha_prod_t_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.one
        beta_prod_t, beta_prod_t_prev = 1 - alpha_prod_t, 1 - alpha_prod_t_prev
        current_alpha_t = alpha_prod_t / alpha_prod_t_prev
        kind = self.config.prediction_type
        if kind == "epsilon":
            x0 = (sample - beta_prod_t ** 0.5 * model_output) / alpha_prod_t ** 0.5
        elif kind == "v_prediction":
            x0 = alpha_prod_t ** 0.5 * sample - beta_prod_t ** 0.5 * model_output
        elif kind == "sample":
            x0 = model_output
        else:
            raise ValueError(f"DDPMScheduler: prediction_type {kind!r} is not epsilon, v_prediction or sample")
        if self.config.thresholding:
            x0 = self._threshold_sample(x0)
        elif self.config.clip_sample:
            x0 = x0.clamp(-self.config.clip_sample_range, self.config.clip_sample_range)
        x0_coeff = alpha_prod_t_prev ** 0.5 * (1 - current_alpha_t) / beta_prod_t
        sample_coeff = current_alpha_t ** 0.5 * beta_prod_t_prev / beta_prod_t
        return x0_coeff * x0 + sample_coeff * sample, x0


def with_harness_scheduler(pipe: Any) -> None:
    """Swap a pipeline's diffusers ``DDPMScheduler`` for this subclass (same config); the
    pipeline's record of its scheduler class stays diffusers'."""
    scheduler = pipe.scheduler
    if type(scheduler) is _DiffusersDDPM:
        pipe.scheduler = DDPMScheduler.from_config(scheduler.config)
    if type(pipe.scheduler) is DDPMScheduler:
        pipe.register_to_config(scheduler=("diffusers", "DDPMScheduler"))
