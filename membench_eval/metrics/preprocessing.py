"""Every image preprocessing step the metrics use, pinned and named in one place (clean-fid style).

Scores are only comparable when the pixels fed to the models are identical, so each step here has
a name that is recorded in result metadata, and the scorers call these functions rather than
building their own transforms.

SSCD (both backends), as MemBench runs it: ``transforms.Resize((288, 288))`` on a PIL image (a
square resize that ignores aspect ratio; torchvision delegates to PIL's bilinear filter with PIL's
built-in antialiasing), then for the TorchScript model ``ToTensor`` + ImageNet mean/std. The ONNX
model takes the resized uint8 pixels and normalises inside its graph.

CLIP and aesthetic scores use the open_clip transform bound to the model's pretrained tag
(resize shortest side, bicubic, centre crop, CLIP mean/std); :func:`describe_transform` records it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

ImageLike = Union[Image.Image, np.ndarray, str, os.PathLike]

SSCD_SIZE: tuple[int, int] = (288, 288)  # (width, height); square, as MemBench
SSCD_RESAMPLE = Image.Resampling.BILINEAR  # what torchvision's Resize uses on PIL images
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# Recorded with every SSCD score; change it whenever the pixels fed to SSCD change.
SSCD_PREPROCESSING = "sscd-v1:rgb,resize(288x288,pil-bilinear),uint8"


def to_rgb_image(image: ImageLike) -> Image.Image:
    """Any supported input as an RGB PIL image.

    Accepts a PIL image, a path, a uint8 array (H, W) or (H, W, 3|4), or a float array in [0, 1]
    (what diffusers returns with ``output_type="np"``), rounded to uint8 like PIL would save it.
    """
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        from membench_eval.fetch.image_files import open_image

        return open_image(image)
    if isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8:
            if not np.issubdtype(arr.dtype, np.floating):
                raise TypeError(f"image array of dtype {arr.dtype}: expected uint8 or float in [0, 1]")
            arr = (np.clip(arr, 0.0, 1.0) * 255.0).round().astype(np.uint8)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
            raise ValueError(f"image array of shape {arr.shape}: expected (H, W), (H, W, 3) or (H, W, 4)")
        return Image.fromarray(arr).convert("RGB")
    raise TypeError(f"unsupported image type {type(image).__name__}: expected PIL image, array or path")


def sscd_preprocess(image: ImageLike) -> np.ndarray:
    """The SSCD input pixels: RGB, resized to 288x288 exactly as torchvision's
    ``Resize((288, 288))`` does on a PIL image. Returns uint8 (288, 288, 3), shared by both backends."""
    return np.asarray(to_rgb_image(image).resize(SSCD_SIZE, SSCD_RESAMPLE), dtype=np.uint8)


def sscd_batch(images: Sequence[ImageLike]) -> np.ndarray:
    """:func:`sscd_preprocess` over a batch: uint8 NHWC (n, 288, 288, 3)."""
    return np.stack([sscd_preprocess(im) for im in images]) if len(images) else np.zeros((0, 288, 288, 3), np.uint8)


def imagenet_normalize(batch: np.ndarray, device: "torch.device", dtype: "torch.dtype") -> "torch.Tensor":
    """uint8 NHWC -> ``ToTensor`` + ImageNet mean/std, NCHW on ``device`` in ``dtype``.

    The arithmetic runs in fp32 (on the device) and is cast last, so fp16 inputs carry only the
    final rounding."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return ((x - mean) / std).to(dtype)


def describe_transform(transform: Any) -> str:
    """A one-line name for an open_clip/torchvision transform, recorded in result metadata."""
    return " ".join(repr(transform).split())
