"""The explicit denoising loop: the model family's prediction, scheduler step and decode, with the guidance hook.

Why not ``StableDiffusionPipeline.__call__``: methods such as the guidance schedule (Jain et al.),
PRSS (Chen et al.) and AMG (Chen et al.) replace the classifier-free-guidance combination
``eps_u + s (eps_c - eps_u)`` at each step, which ``__call__`` does not expose. This loop is
``__call__``'s own (diffusers 0.3x, text-to-image path: given embeddings and latents, no IP-adapter,
``guidance_rescale`` 0, no safety checker) written out, with ``Mitigation.guidance`` in place of the
combination. With a method that overrides nothing it gives the same pixels as ``__call__`` (tested
byte for byte on CPU: ``tests/generation/test_generation_denoise.py``). The model's internals (UNet keyword
arguments, VAE decode) are the family's (``membench_eval.models``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from membench_eval.models.family import family_for

if TYPE_CHECKING:
    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline

    from membench_eval.mitigation import BatchContext, Mitigation


def guidance_scale_condition(pipe: "StableDiffusionPipeline", ctx: "BatchContext", dtype: "torch.dtype") -> "torch.Tensor | None":
    """``timestep_cond`` for guidance-distilled denoisers, else None (SD 1.x)."""
    return family_for(pipe).timestep_condition(ctx.guidance_scale, len(ctx.requests), ctx.device, dtype)


def _int_step(scheduler: Any) -> bool:
    """DDIM indexes its tables by the timestep: an int keeps that on the host. Other schedulers
    look the step up by value in their (device) timesteps: they get the tensor, as in diffusers."""
    from diffusers import DDIMScheduler

    return isinstance(scheduler, DDIMScheduler)


def denoise(
    pipe: "StableDiffusionPipeline",
    latents: "torch.Tensor",
    prompt_embeds: "torch.Tensor",
    negative_prompt_embeds: "torch.Tensor | None",
    ctx: "BatchContext",
    method: "Mitigation",
) -> list["np.ndarray"]:
    """Sample from scaled initial ``latents``; return float HxWx3 images in [0, 1] (``output_type="np"``).

    Per step, as ``__call__``: scale the model input, one denoiser call on ``[uncond, cond]`` rows (CFG)
    or ``cond`` rows, combine (``method.guidance`` if overridden), ``scheduler.step`` with the
    per-image generators, then ``on_step_end`` (its ``prompt_embeds`` is the concatenated batch,
    as in diffusers)."""
    import torch

    family = family_for(pipe)
    scheduler = pipe.scheduler
    do_cfg = ctx.do_classifier_free_guidance
    family.set_timesteps(scheduler, ctx.num_inference_steps, ctx.device, ctx.height, ctx.width)
    timesteps = scheduler.timesteps
    # Python ints, read once: no device->host sync inside the loop (the UNet gets the device
    # tensor, the scheduler and the hooks the int: DDIM's arithmetic is the same either way).
    ctx.timesteps = [int(t) for t in timesteps.cpu()]
    extra_step_kwargs = family.step_kwargs(ctx.generators, 0.0)
    timestep_cond = guidance_scale_condition(pipe, ctx, latents.dtype)
    if do_cfg:
        if negative_prompt_embeds is None:
            raise ValueError("classifier-free guidance needs negative_prompt_embeds")
        prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
    guided = method.overrides("guidance")
    stepped = method.overrides("on_step_end")
    callback_inputs = list(getattr(pipe, "_callback_tensor_inputs", ["latents", "prompt_embeds", "negative_prompt_embeds"]))

    with torch.no_grad():
        for i, (t, t_int) in enumerate(zip(timesteps, ctx.timesteps)):
            model_input = torch.cat([latents] * 2) if do_cfg else latents
            model_input = scheduler.scale_model_input(model_input, t)
            prediction = family.predict(model_input, t, prompt_embeds, timestep_cond=timestep_cond)
            noise_pred = prediction.sample
            if do_cfg:
                eps_uncond, eps_cond = noise_pred.chunk(2)
            else:
                eps_uncond, eps_cond = None, noise_pred
            if guided:
                noise_pred = method.guidance(pipe, i, t_int, latents, eps_uncond, eps_cond, ctx)
                if tuple(noise_pred.shape) != tuple(eps_cond.shape):
                    raise ValueError(f"guidance returned shape {tuple(noise_pred.shape)}, expected {tuple(eps_cond.shape)}")
            elif do_cfg:
                noise_pred = eps_uncond + ctx.guidance_scale * (eps_cond - eps_uncond)
            learned = {} if prediction.variance is None else {  # IF: the conditional rows' variance, as __call__
                "variance": prediction.variance.chunk(2)[1] if do_cfg else prediction.variance}
            latents = family.step(scheduler, noise_pred, t_int if _int_step(scheduler) else t, latents,
                                  **extra_step_kwargs, **learned)
            if stepped:
                values: dict[str, Any] = {"latents": latents, "prompt_embeds": prompt_embeds,
                                          "negative_prompt_embeds": negative_prompt_embeds}
                callback_kwargs = {k: values[k] for k in callback_inputs if k in values}
                out = method.on_step_end(pipe, i, t_int, callback_kwargs, ctx)
                out = callback_kwargs if out is None else out
                latents = out.pop("latents", latents)
                prompt_embeds = out.pop("prompt_embeds", prompt_embeds)
                negative_prompt_embeds = out.pop("negative_prompt_embeds", negative_prompt_embeds)
        images = family.decode(latents, ctx.generators)
    return images
