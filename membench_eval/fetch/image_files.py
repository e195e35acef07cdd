"""The one checked way the harness opens an image file: local references, galleries, stored PNGs.

Why: the URL fetcher capped images at 64 Mpx, but local files went straight to PIL, so a 255 KB
9000x9000 PNG took 5 GB of memory and a 40000x40000 one ended in an "internal error"; a text file
named as a reference surfaced as an OSError (exit 3, the store/environment code). Here the header is
read first (PIL decodes nothing yet), the size checked against the same limit as the fetcher, and
every failure is a ``DataError`` (exit 2) naming the file.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from membench_eval.errors import DataError

if TYPE_CHECKING:
    from PIL import Image

# The fetcher's default too (``fetch.settings.FetchSettings.max_pixels``): below PIL's
# decompression-bomb limit, above any real photo a benchmark uses.
MAX_IMAGE_PIXELS = 64_000_000


class ImageFileError(DataError):
    """An image file that is not a decodable image within the pixel limit (exit status 2)."""


def check_image_header(path: str | os.PathLike, *, what: str = "image",
                       max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """(width, height) of the image file ``path`` from its header alone (nothing decoded)."""
    from PIL import Image

    with _named_errors(path, what), Image.open(path) as im:
        return _checked_size(im, path, what, max_pixels)


def open_image(source: str | os.PathLike | bytes, *, what: str = "image", name: object = None,
               max_pixels: int = MAX_IMAGE_PIXELS) -> "Image.Image":
    """The image at ``source`` (a path, or PNG/JPEG ``bytes`` named ``name``) decoded as RGB."""
    from PIL import Image

    where = name if name is not None else source
    with _named_errors(where, what), Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
        _checked_size(im, where, what, max_pixels)
        im.load()
        return im.convert("RGB")


@contextmanager
def _named_errors(where: object, what: str) -> Iterator[None]:
    """PIL's and the OS's failures on an image file as one ``ImageFileError`` naming the file."""
    from PIL import Image

    try:
        yield
    except DataError:
        raise
    except FileNotFoundError:
        raise ImageFileError(where, f"{what} file not found") from None
    except (Image.DecompressionBombError, Image.UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageFileError(where, f"{what} is not a readable image ({type(exc).__name__}: {exc})") from None


def _checked_size(im: "Image.Image", where: object, what: str, max_pixels: int) -> tuple[int, int]:
    width, height = im.size
    if width * height > max_pixels:
        raise ImageFileError(where, f"{what} has too many pixels: {width}x{height} > limit {max_pixels}")
    return width, height
