"""mini's local image-search reference: a checked gallery of non-memorized images, retrieved by
the mini CLIP and scored like a method (the leaderboard's computed reference row)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from membench_eval.errors import DataError, MissingWeightsError
from membench_eval.reference.gallery import COPY_THRESHOLD, load_gallery, retrieve

GALLERY = Path(__file__).resolve().parents[2] / "benchmark_data" / "mini" / "gallery"


def test_gallery_is_checked_on_load(tmp_path: Path):
    gallery = load_gallery(GALLERY)
    assert len(gallery.files) >= 100
    copy = tmp_path / "g"
    shutil.copytree(GALLERY, copy)
    victim = sorted(copy.glob("*.png"))[3]
    Image.new("RGB", (64, 64), (9, 9, 9)).save(victim)
    with pytest.raises(DataError, match=rf"gallery image {victim.name} does not match its sha256"):
        load_gallery(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(MissingWeightsError, match="manifest missing"):
        load_gallery(copy)


def test_gallery_holds_no_memorized_image():
    """Real SSCD of every gallery image to every mini reference stays below the copy threshold, so
    the reference row measures real, non-copied images (as MemBench's web images are meant to)."""
    from membench_eval.metrics.sscd import load_sscd

    sscd = load_sscd("disc_mixup_onnx", device="cpu")
    refs = sorted((GALLERY.parent / "references").glob("*.png"))
    gal = load_gallery(GALLERY).files
    emb_r = sscd.embed([Image.open(p).convert("RGB") for p in refs])
    emb_g = sscd.embed([Image.open(p).convert("RGB") for p in gal])
    best = (np.asarray(emb_g) @ np.asarray(emb_r).T).max()
    assert best < COPY_THRESHOLD, best


def test_retrieval_by_the_mini_clip_finds_fitting_images():
    import torch

    from membench_eval.metrics.clip_score import ClipScorer
    from membench_eval.metrics.mini_clip import MINI_CLIP_WEIGHTS

    torch.set_num_threads(1)
    clip = ClipScorer("mini-clip", str(MINI_CLIP_WEIGHTS), "cpu")
    gallery = load_gallery(GALLERY)
    texts = ["a red circle on a blue background in the center", "official nasa portrait of astronaut eileen collins"]
    picks = retrieve(clip, gallery, texts, 5)
    assert picks == retrieve(clip, gallery, texts, 5) and all(len(p) == 5 for p in picks)
    # The retrieved images fit their text better (by CLIP) than the gallery's average image.
    images = [Image.open(p).convert("RGB") for p in gallery.files]
    sims = clip.embed_texts(texts) @ clip.embed_images(images).T
    for row, chosen in zip(sims, picks):
        assert row[chosen].mean() > row.mean() + 0.1
    with pytest.raises(DataError, match="fewer than k"):
        retrieve(clip, gallery, texts, len(gallery.files) + 1)
    assert json.loads((GALLERY / "manifest.json").read_text())["excludes"] == "memorized photos"
