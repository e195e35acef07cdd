"""The image size each known hub model was trained at, and the warning for a suite that differs.

Why: SD 2's 768-v model at 512 (or SDXL at 512) gives degraded images, so its memorization numbers
are not the model's; the loader cannot tell from weights alone (the UNet runs at any size), so a
suite naming one of these models at another size warns with the size it was trained at.
"""

from __future__ import annotations

import warnings

# Hub id -> trained square size in pixels (the size of the images its model card samples at).
TRAINED_SIZES: dict[str, int] = {
    "CompVis/stable-diffusion-v1-4": 512,
    "runwayml/stable-diffusion-v1-5": 512,
    "stable-diffusion-v1-5/stable-diffusion-v1-5": 512,
    "SG161222/Realistic_Vision_V5.1_noVAE": 512,
    "stabilityai/stable-diffusion-2-base": 512,
    "stabilityai/stable-diffusion-2-1-base": 512,
    "stabilityai/stable-diffusion-2": 768,  # v-prediction
    "stabilityai/stable-diffusion-2-1": 768,  # v-prediction
    "stabilityai/stable-diffusion-xl-base-1.0": 1024,
    "DeepFloyd/IF-I-XL-v1.0": 64,  # stage I; stage II upsamples to 256
    "DeepFloyd/IF-I-L-v1.0": 64,
    "DeepFloyd/IF-I-M-v1.0": 64,
}


class ImageSizeWarning(UserWarning):
    """A suite generates a known model at another size than it was trained at."""


def size_mismatch(model: str, height: int | None, width: int | None) -> str | None:
    """The warning text when ``model`` is known and (height, width) is not its trained size."""
    size = TRAINED_SIZES.get(model)
    h, w = height or 512, width or 512
    if size is None or (h, w) == (size, size):
        return None
    return (f"{model} was trained at {size}x{size}; generating at {h}x{w} measures a degraded model "
            f"(set [generation] height = width = {size})")


def warn_size_mismatch(where: str, model: str, height: int | None, width: int | None) -> None:
    why = size_mismatch(model, height, width)
    if why is not None:
        warnings.warn(f"{where}: {why}", ImageSizeWarning, stacklevel=3)
