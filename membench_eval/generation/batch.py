"""One batch of images: the mitigation's hooks around the explicit denoising loop.

Order (``membench_eval.mitigation`` documents each hook): ``setup`` (once per pipeline, cached),
``rewrite_prompt`` per image, ``generate`` (full override), prompt encoding, initial latents drawn per
image exactly as diffusers draws them, ``edit_embeddings``, ``edit_latents``, the
``cross_attention_processor`` installed on ``attn2`` for this batch only, then ``generation.denoise``
(``guidance`` and ``on_step_end`` at every step) and the VAE decode. UNet forward rows are counted
per batch (``unet_evals``, stored per image), so a method's cost is measured, not estimated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from membench_eval.errors import MitigationError
from membench_eval.generation.seeding import make_generator, make_rng
from membench_eval.generation.settings import GenerationSettings
from membench_eval.mitigation import BatchContext, ImageRequest, Mitigation
from membench_eval.models.family import family_for

if TYPE_CHECKING:
    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline

    from membench_eval.detector import Detector

    from membench_eval.plugins.source import MethodSource


def _where(reqs: Sequence[ImageRequest], i: int | None = None) -> str:
    if i is not None:
        return f"prompt {reqs[i].prompt_id!r}, image {reqs[i].image_index}"
    real = [r for r in reqs if not r.padding] or list(reqs)
    first = real[0]
    more = f" and {len(real) - 1} more image(s) in the batch" if len(real) > 1 else ""
    return f"prompt {first.prompt_id!r}, image {first.image_index}{more}"


def _method_error(m: Mitigation, hook: str, reqs: Sequence[ImageRequest], i: int | None, what: str) -> MitigationError:
    return MitigationError(f"method {m.label()!r}, {hook}: {what} ({_where(reqs, i)})")


def _call(m: Mitigation, hook: str, reqs: Sequence[ImageRequest], i: int | None, fn: Callable[[], Any]) -> Any:
    """Run a user hook; an exception becomes a MitigationError naming the hook, prompt and image,
    carrying the traceback of the user's own frames (``details``)."""
    from membench_eval.plugins.source import call_user_code

    return call_user_code(m, fn, lambda what: _method_error(m, hook, reqs, i, what))


def _execution_device(pipe: "StableDiffusionPipeline") -> "torch.device":
    try:
        return pipe._execution_device
    except AttributeError:
        return pipe.device


def build_context(
    pipe: "StableDiffusionPipeline", reqs: Sequence[ImageRequest], settings: GenerationSettings
) -> BatchContext:
    device = _execution_device(pipe)
    return BatchContext(
        requests=list(reqs), prompts=[r.prompt for r in reqs], num_inference_steps=settings.num_inference_steps,
        guidance_scale=settings.guidance_scale, height=settings.height, width=settings.width, device=device,
        generators=[make_generator(r.seed, device) for r in reqs], rngs=[make_rng(r.seed) for r in reqs],
        records=[{} for _ in reqs],
        do_classifier_free_guidance=settings.guidance_scale > 1 and not family_for(pipe).guidance_embedded,
        prediction_type=str(family_for(pipe).prediction_type),
    )


def initial_latents(pipe: "StableDiffusionPipeline", ctx: BatchContext, dtype: "torch.dtype") -> "torch.Tensor":
    """Unscaled initial noise, one row per generator, drawn exactly as diffusers' prepare_latents does."""
    return family_for(pipe).initial_latents(ctx.generators, ctx.height, ctx.width, dtype=dtype, device=ctx.device)


def encode_for_hooks(
    pipe: "StableDiffusionPipeline", prompts: Sequence[str], device: "torch.device", guidance: bool
) -> tuple["torch.Tensor", "torch.Tensor | None"]:
    """(prompt_embeds, negative_prompt_embeds) as the hooks receive them: the family's
    conditioning for generation, as tensors (the hook API of SD 1.x)."""
    cond, uncond = family_for(pipe).encode_for_guidance(prompts, device, guidance)
    return cond.embeds, (None if uncond is None else uncond.embeds)


def run_batch(
    pipe: "StableDiffusionPipeline", reqs: Sequence[ImageRequest], mitigation: Mitigation, settings: GenerationSettings
) -> tuple[list["np.ndarray"], BatchContext]:
    """Generate one batch: uint8 HxWx3 arrays (one per request) and the context (with records).
    Every record gets ``unet_evals``: UNet forward rows of this call per image in it (padding
    included; one row = one sample through the UNet, so plain CFG sampling costs 2 x steps). The
    method's ``setup`` (cached per pipeline) runs before the count starts."""
    m = mitigation
    ctx = build_context(pipe, reqs, settings)
    # ``setup`` is model-level preparation, cached across batches (a detector's calibration, say):
    # outside the count, as in the detection runner, so no batch is charged for it.
    if m.overrides("setup"):
        ctx.state = _call(m, "setup", reqs, None, lambda: cached_setup(pipe, m))
    with count_unet_rows(pipe) as counter:
        images = _hooks_and_sampling(pipe, reqs, m, settings, ctx)
    evals = counter.rows / len(reqs)
    for record in ctx.records:
        record.setdefault("unet_evals", evals)
    return images, ctx


def _hooks_and_sampling(
    pipe: "StableDiffusionPipeline", reqs: Sequence[ImageRequest], m: Mitigation, settings: GenerationSettings,
    ctx: BatchContext,
) -> list["np.ndarray"]:
    import torch

    from membench_eval.generation.denoise import denoise
    if m.overrides("rewrite_prompt"):
        for i, r in enumerate(reqs):
            text = _call(m, "rewrite_prompt", reqs, i, lambda r=r, i=i: m.rewrite_prompt(r.prompt, ctx.rngs[i]))
            if not isinstance(text, str):
                raise _method_error(m, "rewrite_prompt", reqs, i, f"returned {type(text).__name__}, expected str")
            ctx.prompts[i] = text

    if m.overrides("generate"):
        images = _call(m, "generate", reqs, None, lambda: m.generate(pipe, ctx))
        if images is not None:
            return _check_images(images, m, "generate", reqs, settings)

    with torch.no_grad():
        cond, uncond = encode_for_hooks(pipe, ctx.prompts, ctx.device, ctx.do_classifier_free_guidance)
    latents = initial_latents(pipe, ctx, cond.dtype) * pipe.scheduler.init_noise_sigma
    if m.overrides("edit_embeddings"):
        out = _call(m, "edit_embeddings", reqs, None, lambda: m.edit_embeddings(pipe, cond, uncond, latents, ctx))
        if not (isinstance(out, tuple) and len(out) == 2):
            raise _method_error(m, "edit_embeddings", reqs, None, "must return (prompt_embeds, negative_prompt_embeds)")
        new_cond, new_uncond = out
        if tuple(new_cond.shape) != tuple(cond.shape) or (
            uncond is not None and (new_uncond is None or tuple(new_uncond.shape) != tuple(uncond.shape))
        ):
            raise _method_error(
                m, "edit_embeddings", reqs, None,
                f"returned shapes {tuple(new_cond.shape)}/{None if new_uncond is None else tuple(new_uncond.shape)}, "
                f"expected {tuple(cond.shape)}/{None if uncond is None else tuple(uncond.shape)}",
            )
        if not all(bool(torch.isfinite(t).all()) for t in (new_cond, new_uncond) if t is not None):
            raise _method_error(m, "edit_embeddings", reqs, None, "returned NaN or infinite embeddings")
        cond, uncond = new_cond.detach(), (None if new_uncond is None else new_uncond.detach())
    if m.overrides("edit_latents"):
        new = _call(m, "edit_latents", reqs, None, lambda: m.edit_latents(pipe, latents, cond, uncond, ctx))
        if not hasattr(new, "shape") or tuple(new.shape) != tuple(latents.shape):
            got = tuple(new.shape) if hasattr(new, "shape") else type(new).__name__
            raise _method_error(m, "edit_latents", reqs, None, f"returned {got}, expected latents of shape {tuple(latents.shape)}")
        if not bool(torch.isfinite(new).all()):
            raise _method_error(m, "edit_latents", reqs, None, "returned NaN or infinite latents")
        latents = new.detach().to(latents.dtype)
    ctx.prompt_embeds, ctx.negative_prompt_embeds = cond, uncond

    processor = None
    if m.overrides("cross_attention_processor"):
        processor = _call(m, "cross_attention_processor", reqs, None, lambda: m.cross_attention_processor(pipe, ctx))
    hooked = m.overrides("on_step_end") or m.overrides("guidance") or processor is not None
    with cross_attention(pipe, processor):
        if hooked:
            images = _call(m, "sampling (guidance / on_step_end / cross-attention processor)", reqs, None,
                           lambda: denoise(pipe, latents, cond, uncond, ctx, m))
        else:
            images = denoise(pipe, latents, cond, uncond, ctx, m)
    # NaN pixels after sampling: name the hooks that ran in it (a plain pipeline's NaN is the model's).
    ran = [h for h in ("guidance", "on_step_end") if m.overrides(h)] + (["cross_attention_processor"] if processor else [])
    where = f"pipeline output (after {', '.join(ran)})" if ran else "pipeline output"
    return _check_images(images, m, where, reqs, settings)


def method_source(mitigation: "Mitigation | Detector") -> "MethodSource":
    """The fingerprint of the method's (or detector's) code (``membench_eval.plugins.source``), as
    a usage error when it has no source file."""
    from membench_eval.plugins.source import fingerprint_method

    try:
        return fingerprint_method(mitigation)
    except ValueError as exc:
        raise MitigationError(str(exc)) from None


# ``setup(None)`` results of plugins that run without a pipeline (text-only detectors).
_NO_PIPE_SETUP: dict[tuple, Any] = {}


def cached_setup(pipe: "StableDiffusionPipeline | None", m: "Mitigation | Detector") -> Any:
    """``m.setup(pipe)``, once per pipeline object, plugin class and source, and the values of
    ``m.setup_params``: a sweep over other parameters reuses it (NeMo's statistics, say). Works
    for mitigations and detectors alike; ``pipe`` None (a text-only detector) has one cache."""
    cache: dict[tuple, Any] = _NO_PIPE_SETUP if pipe is None else pipe.__dict__.setdefault("_membench_setup", {})
    key = (type(m).__module__, type(m).__qualname__, method_source(m).sha256,
           tuple((name, getattr(m, name)) for name in m.setup_params))
    if key not in cache:
        cache[key] = m.setup(pipe)
    return cache[key]


class count_unet_rows:
    """Context manager: counts sample rows through the model's denoiser (the UNet; a forward
    pre-hook), gradients or not: a CFG call on 2N rows adds 2N."""

    def __init__(self, pipe: "StableDiffusionPipeline"):
        self.unet, self.rows, self.handle = family_for(pipe).denoiser, 0, None

    def _count(self, module: Any, args: tuple, kwargs: dict) -> None:
        sample = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))  # UNet / transformer
        self.rows += int(sample.shape[0]) if hasattr(sample, "shape") else 1

    def __enter__(self) -> "count_unet_rows":
        self.handle = self.unet.register_forward_pre_hook(self._count, with_kwargs=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.remove()


class cross_attention:
    """Context manager: ``processor`` on every text (cross-)attention layer of the model
    (``ModelFamily.attention_layers``; SD's ``attn2``), originals restored. None: nothing changes."""

    def __init__(self, pipe: "StableDiffusionPipeline", processor: Any | None):
        self.pipe, self.processor = pipe, processor
        self._installed: Any = None

    def __enter__(self) -> "cross_attention":
        if self.processor is not None:
            self._installed = family_for(self.pipe).attention_processors(lambda layer, current: self.processor)
            self._installed.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed is not None:
            self._installed.__exit__(None, None, None)


def _check_images(
    images: Any, m: Mitigation, hook: str, reqs: Sequence[ImageRequest], settings: GenerationSettings
) -> list["np.ndarray"]:
    """Exactly one finite HxWx3 image per request, as uint8 (diffusers' rounding)."""
    import numpy as np

    try:
        items = list(images)
    except TypeError:
        raise _method_error(m, hook, reqs, None, f"returned {type(images).__name__}, expected a list of images") from None
    if len(items) != len(reqs):
        raise _method_error(m, hook, reqs, None, f"returned {len(items)} images for {len(reqs)} requests")
    out = []
    for i, item in enumerate(items):
        arr = _to_array(item)
        if arr is None:
            raise _method_error(m, hook, reqs, i, f"image is a {type(item).__name__}, expected a PIL image or an array")
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[:2] != (settings.height, settings.width):
            raise _method_error(
                m, hook, reqs, i, f"image has shape {arr.shape}, expected ({settings.height}, {settings.width}, 3)"
            )
        if arr.dtype != np.uint8:
            arr = arr.astype(np.float32)
            if not np.isfinite(arr).all():
                raise _method_error(m, hook, reqs, i, "image contains NaN or infinite values")
            arr = (np.clip(arr, 0.0, 1.0) * 255).round().astype(np.uint8)
        out.append(arr)
    return out


def _to_array(item: Any) -> "np.ndarray | None":
    import numpy as np

    if hasattr(item, "convert") and hasattr(item, "size"):  # PIL image
        return np.asarray(item.convert("RGB"))
    if hasattr(item, "detach"):  # torch tensor, CHW or HWC in [0, 1]
        t = item.detach().float().cpu()
        if t.ndim == 3 and t.shape[0] == 3 and t.shape[-1] != 3:
            t = t.permute(1, 2, 0)
        return t.numpy()
    if isinstance(item, np.ndarray):
        return item
    return None


