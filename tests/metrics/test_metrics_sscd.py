"""SSCD: the real offline model (disc_mixup_onnx) on real photos, the shared preprocessing, the
TorchScript (disc_large) plumbing on a small scripted stand-in, and the reference-embedding cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from membench_eval.errors import MissingWeightsError
from membench_eval.metrics.preprocessing import IMAGENET_MEAN, IMAGENET_STD, sscd_preprocess
from membench_eval.metrics.sscd import load_sscd, reference_embeddings, similarity_matrix, stack_embeddings

skdata = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def onnx_model():
    return load_sscd("disc_mixup_onnx")


@pytest.fixture(scope="module")
def origin(memorized_pair) -> Image.Image:
    return Image.open(memorized_pair[0]).convert("RGB")


def _unrelated() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 512).astype(np.uint8)
    gradient = np.stack([np.tile(ramp, (512, 1)), np.tile(ramp[:, None], (1, 512)), np.full((512, 512), 128, np.uint8)], -1)
    return {
        "astronaut": skdata.astronaut(),
        "coffee": skdata.coffee(),
        "chelsea": skdata.chelsea(),
        "noise": rng.integers(0, 256, (512, 512, 3), dtype=np.uint8),
        "gradient": gradient,
    }


def _crop_flip_jitter(img: Image.Image) -> Image.Image:
    w, h = img.size
    out = ImageOps.mirror(img.crop((int(0.1 * w), int(0.05 * h), int(0.85 * w), int(0.9 * h))))
    out = ImageEnhance.Color(out).enhance(1.5)
    out = ImageEnhance.Brightness(out).enhance(1.2)
    return ImageEnhance.Contrast(out).enhance(0.8)


def test_memorized_pair_is_a_copy(onnx_model, memorized_pair):
    emb = onnx_model.embed(list(memorized_pair))
    assert emb.shape == (2, 512) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert float(emb[0] @ emb[1]) >= 0.85


def test_unrelated_images_score_low_and_an_augmented_copy_high(onnx_model, origin):
    others = _unrelated()
    emb = onnx_model.embed([origin, _crop_flip_jitter(origin), *others.values()])
    sims = similarity_matrix(emb[:1], emb[1:])[0]
    unrelated = dict(zip(others, sims[1:]))
    assert max(unrelated.values()) <= 0.2, unrelated
    assert sims[0] >= 0.6 and sims[0] - max(unrelated.values()) >= 0.4, (sims[0], unrelated)


def test_embeddings_do_not_depend_on_batch_size(onnx_model, memorized_pair, origin):
    base = [origin, Image.open(memorized_pair[1]), *_unrelated().values(), _crop_flip_jitter(origin)]
    images = [base[i % len(base)] for i in range(16)]
    images[9] = origin.rotate(10)  # not every repeat identical
    ref = onnx_model.embed(images, batch_size=1)
    for bs in (7, 16):
        np.testing.assert_allclose(onnx_model.embed(images, batch_size=bs), ref, atol=1e-4)
    np.testing.assert_allclose(onnx_model.embed_one(images[3]), ref[3], atol=1e-4)


def test_preprocessing_matches_torchvision_resize_on_pil():
    from torchvision import transforms

    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (300, 517, 3), dtype=np.uint8))  # not square
    expected = np.asarray(transforms.Resize((288, 288))(img))
    np.testing.assert_array_equal(sscd_preprocess(img), expected)
    # grayscale, RGBA and float [0, 1] inputs end as the same RGB pixels
    gray = Image.fromarray(rng.integers(0, 256, (64, 80), dtype=np.uint8))
    np.testing.assert_array_equal(sscd_preprocess(gray), sscd_preprocess(gray.convert("RGB")))
    rgb = np.asarray(img)
    np.testing.assert_array_equal(sscd_preprocess(rgb.astype(np.float32) / 255.0), expected)
    with pytest.raises(ValueError, match="shape"):
        sscd_preprocess(np.zeros((4, 4, 2), np.uint8))


def _scripted_channel_means(path: Path) -> None:
    """A TorchScript stand-in for disc_large whose output shows exactly what pixels it was fed."""
    import torch

    class ChannelMeans(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert x.shape[1:] == (3, 288, 288)
            return x.mean(dim=(2, 3))

    torch.jit.script(ChannelMeans()).save(str(path))


def test_disc_large_backend_feeds_imagenet_normalised_pixels(tmp_path):
    weights = tmp_path / "standin.torchscript.pt"
    _scripted_channel_means(weights)
    model = load_sscd("disc_large", weights=weights, device="cpu")
    assert model.backend == "disc_large" and model.dim == 3
    color = (200, 30, 90)
    emb = model.embed([Image.new("RGB", (100, 60), color)])
    expected = (np.array(color) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(emb[0], expected / np.linalg.norm(expected), atol=1e-5)
    meta = model.metadata()
    assert meta["sscd_backend"] == "disc_large" and meta["sscd_weights"] == str(weights)


def test_disc_large_missing_or_foreign_file_names_how_to_get_it(tmp_path, monkeypatch):
    from membench_eval.errors import DataError

    def offline(name, *args, **kwargs):
        raise DataError(name, "not found (test: no download)")

    monkeypatch.setattr("membench_eval.fetch.download.resolve_file", offline)
    with pytest.raises(MissingWeightsError, match="sscd_disc_large.torchscript.pt.*dl.fbaipublicfiles.com.*weights=PATH"):
        load_sscd("disc_large")
    with pytest.raises(MissingWeightsError, match="not found"):
        load_sscd("disc_large", weights=tmp_path / "absent.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torchscript archive")
    with pytest.raises(MissingWeightsError, match="not a TorchScript"):
        load_sscd("disc_large", weights=junk)
    with pytest.raises(ValueError, match="unknown SSCD backend"):
        load_sscd("disc_small")


def test_reference_embeddings_are_computed_once_and_keyed_by_content(onnx_model, memorized_pair, tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    a, b = refs / "a.png", refs / "b.png"
    shutil.copy(memorized_pair[0], a)
    shutil.copy(memorized_pair[1], b)
    dup = refs / "a_copy.png"
    shutil.copy(a, dup)
    cache = tmp_path / "cache"
    calls: list[int] = []
    real = onnx_model._embed_pixels

    def counting(batch):
        calls.append(len(batch))
        return real(batch)

    onnx_model._embed_pixels = counting
    try:
        first = reference_embeddings(onnx_model, {"ma": a, "mb": b, "ma2": dup}, cache)
        assert sum(calls) == 2  # identical files are embedded once
        np.testing.assert_allclose(first["ma"], onnx_model.embed([memorized_pair[0]])[0], atol=1e-6)
        np.testing.assert_array_equal(first["ma"], first["ma2"])
        calls.clear()
        again = reference_embeddings(onnx_model, {"ma": a, "mb": b}, cache)
        assert calls == []  # served from disk
        np.testing.assert_array_equal(again["mb"], first["mb"])
        # a changed file misses the cache; a corrupt cache entry is recomputed
        Image.fromarray(skdata.coffee()).save(b)
        next(iter((cache / "sscd").glob("*/*.npy"))).write_bytes(b"garbage")
        changed = reference_embeddings(onnx_model, {"ma": a, "mb": b}, cache)
        assert sum(calls) >= 1
        assert float(changed["ma"] @ changed["mb"]) < 0.3
        np.testing.assert_allclose(changed["ma"], first["ma"], atol=1e-6)
    finally:
        del onnx_model._embed_pixels
    matrix = stack_embeddings(changed, ["mb", "ma"])
    assert matrix.shape == (2, 512)
    np.testing.assert_array_equal(matrix[1], changed["ma"])
    assert not list((cache / "sscd").glob("*/.tmp-*"))  # writes are atomic
