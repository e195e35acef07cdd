"""The GPU layout of a loaded pipeline: channels_last, VAE slicing and torch.compile.

Here, below ``generation``, because ``models.loading.load_pipeline`` applies them; the flags they
leave on the pipeline enter image keys (``compute_flags``).
All of it is off on CPU, where images must stay byte-identical to diffusers' own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline

# Set on the UNet once its forward is compiled (read by compute_flags: part of the image key).
COMPILED_ATTR = "_membench_compiled"


def _denoiser(pipe: Any) -> Any:
    """The UNet, or a transformer family's transformer (``ModelFamily.denoiser``)."""
    from membench_eval.models.family import family_for

    return family_for(pipe).denoiser


def prepare_for_cuda(pipe: "StableDiffusionPipeline") -> None:
    """channels_last UNet/VAE and one-image VAE slices; a no-op off CUDA."""
    import torch

    denoiser = _denoiser(pipe)
    if denoiser.device.type != "cuda":
        return
    denoiser.to(memory_format=torch.channels_last)
    vae = getattr(pipe, "vae", None)  # None: a pixel-space family (DeepFloyd IF)
    if vae is not None:
        vae.to(memory_format=torch.channels_last)
        vae.enable_slicing()


def compile_unet(pipe: "StableDiffusionPipeline", *, mode: str | None = None) -> None:
    """``torch.compile`` the UNet's forward in place (the module, its hooks and its attention
    processors stay: a method's processor is traced on first use and guarded, so swapping
    processors recompiles instead of running stale code). The first batches are slow (compiling)."""
    import torch

    unet = _denoiser(pipe)
    if getattr(unet, COMPILED_ATTR, False):
        return
    unet.forward = torch.compile(unet.forward, mode=mode, dynamic=False)
    setattr(unet, COMPILED_ATTR, True)


def compute_flags(pipe: "StableDiffusionPipeline") -> dict[str, Any]:
    """The non-default compute options of ``pipe`` that can move pixels (empty on one CPU thread)."""
    import torch

    flags: dict[str, Any] = {}
    denoiser = _denoiser(pipe)
    if denoiser.device.type == "cpu" and torch.get_num_threads() != 1:
        flags["cpu_threads"] = torch.get_num_threads()
    if getattr(denoiser, COMPILED_ATTR, False):
        flags["compiled"] = True
    if getattr(getattr(pipe, "vae", None), "use_slicing", False):
        flags["vae_slicing"] = True
    weight = next((p for p in denoiser.parameters() if p.dim() == 4), None)
    if weight is not None and weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous():
        flags["channels_last"] = True
    return flags
