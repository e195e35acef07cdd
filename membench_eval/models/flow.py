"""The flow-matching Euler scheduler of SD3 / FLUX, with the two members the harness's samplers call.

Why: every sampler in the harness (the engine's loop, Wen's signal, the guidance-vector methods)
is written as diffusers' SD loop: ``latents * scheduler.init_noise_sigma`` and
``scheduler.scale_model_input(x, t)`` before each denoiser call. diffusers'
``FlowMatchEulerDiscreteScheduler`` has neither, because its pipelines use the noise and the
sample as they are (sigma_max is 1 and the model input is unscaled). This subclass adds exactly
that (1.0 and the identity), so those samplers run on flow models unchanged; stepping is
diffusers' own. It keeps diffusers' class name, so a pipeline saved with it loads back with the
diffusers class, and the scheduler's identity in store keys is the diffusers one.
"""

from __future__ import annotations

from typing import Any

from diffusers import FlowMatchEulerDiscreteScheduler as _DiffusersFlowMatch


class FlowMatchEulerDiscreteScheduler(_DiffusersFlowMatch):
    init_noise_sigma = 1.0

    def scale_model_input(self, sample: Any, timestep: Any = None) -> Any:
        """The flow pipelines feed the sample unscaled."""
        return sample


def with_harness_scheduler(pipe: Any) -> None:
    """Swap a pipeline's diffusers flow-matching scheduler for this subclass (same config and state)."""
    scheduler = pipe.scheduler
    if type(scheduler) is _DiffusersFlowMatch:
        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(scheduler.config)
