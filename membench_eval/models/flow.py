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
    """Also: ``config.prediction_type`` reads "flow" (methods that check it, written for epsilon or
    v, refuse with their own message instead of applying an epsilon formula to a velocity), and a
    dynamic-shifting schedule set without ``mu`` (a method's own copy of the scheduler) is shifted
    as at the longest sequence the config names (``max_shift``: FLUX's native 1024 px). Wen's and
    SAIL's first step is sigma 1 under every shift."""

    init_noise_sigma = 1.0

    @property
    def config(self) -> Any:
        """diffusers' config plus ``prediction_type: "flow"`` (what is saved stays diffusers')."""
        from diffusers.configuration_utils import FrozenDict

        return FrozenDict({**self._internal_dict, "prediction_type": "flow"})

    @classmethod
    def extract_init_dict(cls, config_dict: Any, **kwargs: Any) -> Any:
        """A copy made ``from_config(scheduler.config)`` takes the added key silently."""
        return super().extract_init_dict({k: v for k, v in dict(config_dict).items() if k != "prediction_type"},
                                         **kwargs)

    def set_timesteps(self, num_inference_steps: Any = None, device: Any = None, sigmas: Any = None,
                      mu: float | None = None, timesteps: Any = None) -> None:
        if mu is None and self.config.get("use_dynamic_shifting", False):
            mu = float(self.config.get("max_shift", 1.15))
        super().set_timesteps(num_inference_steps, device=device, sigmas=sigmas, mu=mu, timesteps=timesteps)

    def scale_model_input(self, sample: Any, timestep: Any = None) -> Any:
        """The flow pipelines feed the sample unscaled."""
        return sample


def with_harness_scheduler(pipe: Any) -> None:
    """Swap a pipeline's diffusers flow-matching scheduler for this subclass (same config). The
    pipeline's own record of its scheduler class stays diffusers', so ``save_pretrained`` writes a
    ``model_index.json`` that loads without this package."""
    scheduler = pipe.scheduler
    if type(scheduler) is _DiffusersFlowMatch:
        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(scheduler.config)
    if type(pipe.scheduler) is FlowMatchEulerDiscreteScheduler:
        pipe.register_to_config(scheduler=("diffusers", "FlowMatchEulerDiscreteScheduler"))
