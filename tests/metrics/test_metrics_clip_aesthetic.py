"""CLIP score and aesthetic score plumbing on a tiny random open_clip model built from a config,
and the real LAION aesthetic head checked against a direct matrix computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from membench_eval.errors import MissingWeightsError
from membench_eval.metrics.aesthetic import AestheticScorer, load_aesthetic_head
from membench_eval.metrics.clip_score import ClipScorer

open_clip = pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def tiny_clip():
    """A 2-layer CLIP with the real BPE tokenizer and a 768-d embedding (the aesthetic head's width)."""
    torch.manual_seed(0)
    model = open_clip.CLIP(
        embed_dim=768,
        vision_cfg={"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    ).eval()
    preprocess = open_clip.image_transform(32, is_train=False)
    return model, preprocess, open_clip.get_tokenizer("ViT-g-14")


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)) for _ in range(3)]


@pytest.fixture(scope="module")
def head_path(shared_data_dir):
    return shared_data_dir / "membench" / "sac+logos+ava1-l14-linearMSE.pth"


def _manual_image_embedding(model, preprocess, imgs) -> np.ndarray:
    with torch.no_grad():
        feats = model.encode_image(torch.stack([preprocess(im) for im in imgs])).numpy()
    return feats / np.linalg.norm(feats, axis=1, keepdims=True)


def test_clip_score_is_the_raw_cosine(tiny_clip, images):
    model, preprocess, tokenizer = tiny_clip
    scorer = ClipScorer.from_open_clip(model, preprocess, tokenizer, name="tiny", batch_size=2)
    prompts = ["a photo of a cat", "an astronaut riding a horse", "a photo of a cat"]
    got = scorer.score(images, prompts)
    img = _manual_image_embedding(model, preprocess, images)
    with torch.no_grad():
        txt = model.encode_text(tokenizer(prompts)).numpy()
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    np.testing.assert_allclose(got, (img * txt).sum(axis=1), atol=1e-5)
    assert got.dtype == np.float32 and np.all(np.abs(got) <= 1.0)
    np.testing.assert_allclose(scorer.score(images, "a photo of a cat"), scorer.score(images, ["a photo of a cat"] * 3), atol=1e-6)
    assert scorer.metadata()["clip_model"] == "tiny"


def test_identical_embeddings_score_one_not_hundred(tiny_clip, images, monkeypatch):
    model, preprocess, tokenizer = tiny_clip
    scorer = ClipScorer.from_open_clip(model, preprocess, tokenizer)
    image_feats = model.encode_image(torch.stack([preprocess(im) for im in images])).detach()
    # text tower answers with (a positive multiple of) the image features: cosine must be exactly 1
    monkeypatch.setattr(model, "encode_text", lambda tokens: 3.0 * image_feats[: len(tokens)])
    np.testing.assert_allclose(scorer.score(images, ["x", "y", "z"]), 1.0, atol=1e-5)
    monkeypatch.setattr(model, "encode_text", lambda tokens: -image_feats[: len(tokens)])
    np.testing.assert_allclose(scorer.score(images, ["x", "y", "z"]), -1.0, atol=1e-5)  # not clamped


def test_long_prompts_are_truncated_explicitly(tiny_clip, images):
    model, preprocess, tokenizer = tiny_clip
    scorer = ClipScorer.from_open_clip(model, preprocess, tokenizer)
    long = " ".join(f"word{i}" for i in range(120))
    tokens, truncated = scorer.tokenize([long, "short prompt"])
    assert truncated.tolist() == [True, False]
    bpe = tokenizer.encode(long)
    expected = [tokenizer.sot_token_id, *bpe[:75], tokenizer.eot_token_id]
    assert tokens[0].tolist() == expected
    # words past the context cannot change the score
    longer = long + " and then many more words that the text tower never sees " * 5
    np.testing.assert_allclose(scorer.score(images[:1], [long]), scorer.score(images[:1], [longer]), atol=1e-6)


def test_missing_clip_checkpoint_names_model_and_how(tmp_path):
    with pytest.raises(MissingWeightsError, match=r"ViT-g-14.*pretrained=/path"):
        ClipScorer("ViT-g-14", pretrained=str(tmp_path / "open_clip_model.safetensors"), device="cpu")


def _numpy_mlp(state: dict, x: np.ndarray) -> np.ndarray:
    h = x.astype(np.float64)
    for i in (0, 2, 4, 6, 7):  # dropout layers sit between; no activations
        h = h @ state[f"layers.{i}.weight"].double().numpy().T + state[f"layers.{i}.bias"].double().numpy()
    return h[:, 0]


def test_real_aesthetic_head_equals_the_matrix_computation(head_path):
    state = torch.load(head_path, map_location="cpu", weights_only=True)
    head = load_aesthetic_head(head_path)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 768)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    with torch.no_grad():
        got = head(torch.from_numpy(x))[:, 0].numpy()
        again = head(torch.from_numpy(x))[:, 0].numpy()
    np.testing.assert_allclose(got, _numpy_mlp(state, x), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(got, again)  # eval mode: dropout off
    assert 2.0 < float(np.mean(got)) < 8.0  # LAION's scale (about 1 to 10), not a raw logit


def test_aesthetic_scorer_end_to_end_on_tiny_clip(tiny_clip, images, head_path):
    model, preprocess, _ = tiny_clip
    scorer = AestheticScorer.from_open_clip(model, preprocess, head=head_path, name="tiny", batch_size=2)
    state = torch.load(head_path, map_location="cpu", weights_only=True)
    expected = _numpy_mlp(state, _manual_image_embedding(model, preprocess, images))
    np.testing.assert_allclose(scorer.score(images), expected, rtol=1e-4, atol=1e-4)
    assert scorer.metadata()["aesthetic_head"] == str(head_path)


def test_missing_aesthetic_head_names_the_file(tiny_clip, tmp_path, monkeypatch):
    from membench_eval.errors import DataError

    def offline(name, *args, **kwargs):
        raise DataError(name, "not found (test: no download)")

    monkeypatch.setattr("membench_eval.fetch.download.resolve_file", offline)
    model, preprocess, _ = tiny_clip
    with pytest.raises(MissingWeightsError, match=r"sac\+logos\+ava1-l14-linearMSE.pth.*head=PATH"):
        AestheticScorer.from_open_clip(model, preprocess)
    bad = tmp_path / "bad.pth"
    torch.save({"layers.0.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(MissingWeightsError, match="not the LAION aesthetic MLP"):
        AestheticScorer.from_open_clip(model, preprocess, head=bad)
