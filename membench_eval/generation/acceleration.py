"""The GPU path: memory layout, VAE slicing, torch.compile and batch size from free memory.

All of it is off on CPU (where images must stay byte-identical to ``StableDiffusionPipeline``'s
own and to the stored mini images). On CUDA ``load_pipeline`` calls ``prepare_for_cuda`` (``models.cuda``):
bf16 weights (``runtime.select_dtype``), SDPA attention (``models.sd.use_sdpa``), channels_last
UNet and VAE, and the VAE decoding one image at a time (its peak memory no longer grows with the
batch, and decoded pixels no longer depend on the batch shape). Each of these can change float
rounding, so ``compute_flags`` (``models.cuda``) names the active ones and they enter the image key (only when
set). On CPU the one such option is torch's intra-op thread count: reductions are split by thread,
so pixels move with it (measured: 2 of 10 mini PNGs differ between 1 and 2 threads); it enters the
key when it is not 1, so one-thread keys (every test's, and stores made so) are unchanged.

``fit_batch_size`` picks the images per call from free GPU memory (``--batch-size auto``): a
probe batch measures the peak memory per image, then the largest entry of ``BATCH_LADDER`` that
fits is used. A fixed ladder, not any integer, so runs on similar GPUs share batch shapes (the
shape is part of the key) and trigger prompts of 10 images pack whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from membench_eval.models.family import family_for

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline

    from membench_eval.generation.settings import GenerationSettings

BATCH_LADDER = (10, 20, 40, 80, 160)
# Share of free memory a batch may plan to use, and the headroom factor on the measured peak
# per image (methods with gradients or extra UNet calls need more than base sampling).
FREE_MEMORY_SHARE = 0.8
PEAK_HEADROOM = 2.0
_FIT_ATTR = "_membench_batch_fit"


def fit_batch_size(pipe: "StableDiffusionPipeline", settings: "GenerationSettings") -> int:
    """Images per call for ``--batch-size auto``: ``settings.batch_size`` off CUDA; on CUDA the
    largest ``BATCH_LADDER`` entry whose measured peak fits in free memory (probed once per
    pipeline and image size)."""
    import torch

    device = family_for(pipe).device
    if device.type != "cuda":
        return settings.batch_size
    cache: dict[tuple, int] = pipe.__dict__.setdefault(_FIT_ATTR, {})
    key = (settings.height, settings.width, settings.guidance_scale > 1)
    if key not in cache:
        per_image = _probe_bytes_per_image(pipe, settings)
        free, _total = torch.cuda.mem_get_info(device)
        fits = [b for b in BATCH_LADDER if b * per_image * PEAK_HEADROOM <= free * FREE_MEMORY_SHARE]
        cache[key] = max(fits) if fits else BATCH_LADDER[0]
    return cache[key]


def _probe_bytes_per_image(pipe: "StableDiffusionPipeline", settings: "GenerationSettings") -> float:
    """Peak CUDA memory above the weights per image, from one 1-step base batch of 2 images."""
    import torch

    from membench_eval.generation.batch import run_batch
    from membench_eval.mitigation import ImageRequest, Mitigation

    device = family_for(pipe).device
    probe = settings.replace(num_inference_steps=1)
    reqs = [ImageRequest(prompt_id="__membench_probe__", prompt="a photo", image_index=i, seed=i) for i in range(2)]
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    run_batch(pipe, reqs, Mitigation(), probe)
    torch.cuda.synchronize(device)
    return max(torch.cuda.max_memory_allocated(device) - base, 1) / len(reqs)
