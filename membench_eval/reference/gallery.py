"""A local image-search reference: retrieve, for each prompt, the k gallery images the suite's CLIP
model ranks highest for the prompt's text, and score them like a method's generations.

Why: MemBench's reference row (Top-1 SSCD 0.088, CLIP 0.310 on SD 1.4) scores real web images
found by Google image search for each trigger prompt: what a non-memorizing "model" that returns
real, fitting images would score. Suites without web access (mini) get the same kind of row from
a local gallery of non-memorized images. Caveat, stated in the row's label: retrieval uses the
same CLIP model that scores the CLIP column, so the reference's CLIP is an upper-biased proxy
(it picks what that model likes best); its SSCD is unbiased.

The gallery is a folder of images with ``manifest.json`` (file -> sha256, checked on load); for
mini it is written by ``benchmark_data/mini/build.py --stage gallery`` (general training images
and bundled photos the model never saw; no memorized photo).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from membench_eval.errors import DataError, MissingWeightsError
from membench_eval.fetch.download import file_sha256
from membench_eval.fetch.image_files import open_image

# A retrieved image whose best SSCD to any memorized image exceeds this is counted as a copy of it
# (MemBench's own "SSCD > 0.5" copy threshold).
COPY_THRESHOLD = 0.5


@dataclass(frozen=True)
class Gallery:
    folder: Path
    files: tuple[Path, ...]

    @staticmethod
    def label(model: str) -> str:
        return f"reference (local gallery, {model} retrieval)"


def load_gallery(folder: str | Path) -> Gallery:
    """The gallery's files, each checked against the sha256 in ``manifest.json``."""
    root = Path(folder)
    manifest = root / "manifest.json"
    if not manifest.is_file():
        raise MissingWeightsError(f"{manifest}: reference gallery manifest missing (for mini: "
                                  "`python benchmark_data/mini/build.py --stage gallery`)")
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError) as exc:
        raise DataError(manifest, f"not a gallery manifest ({exc})") from None
    out = []
    for name, digest in sorted(files.items()):
        path = root / name
        if not path.is_file():
            raise DataError(manifest, f"gallery image {name} is missing", field=name)
        if file_sha256(path) != digest:
            raise DataError(manifest, f"gallery image {name} does not match its sha256 {digest[:16]}...", field=name)
        out.append(path)
    if not out:
        raise DataError(manifest, "the gallery lists no image")
    return Gallery(root, tuple(out))


def retrieve(clip: Any, gallery: Gallery, texts: list[str], k: int) -> list[list[int]]:
    """Indices of the ``k`` gallery images with the highest CLIP cosine to each text (ties by
    file order: deterministic)."""
    if k > len(gallery.files):
        raise DataError(gallery.folder, f"gallery has {len(gallery.files)} images, fewer than k = {k}")
    images = []
    for path in gallery.files:
        images.append(open_image(path, what="gallery image"))
    sims = np.asarray(clip.embed_texts(texts)) @ np.asarray(clip.embed_images(images)).T
    return [list(np.argsort(-row, kind="stable")[:k]) for row in sims]
