"""Extraction from unconditional models (SIDE): clustering, the stage cache, classifier guidance,
the shared AMS/UMS implementation, cache reuse, and one-line errors on bad input.

The runner tests use the bundled ``mini-uncond`` model at 5 DDIM steps and 4 images (seconds)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from membench_eval.errors import DataError, ExtractionError
from membench_eval.extraction.cache import StageCache
from membench_eval.extraction.clustering import cluster_embeddings, cluster_near_copies
from membench_eval.extraction.suite import UNCOND_DIR, get_uncond_suite

REPO = Path(__file__).resolve().parents[2]


def _fast_suite(tmp_path: Path, steps: int = 5) -> Path:
    toml = tmp_path / "fast.toml"
    toml.write_text(f'name = "fast-uncond"\nmodel = "{UNCOND_DIR / "model"}"\n'
                    f'training_images = "{UNCOND_DIR / "train"}"\nnum_inference_steps = {steps}\n')
    return toml


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    from membench_eval.extraction.run import ExtractionSettings, Runner

    tmp = tmp_path_factory.mktemp("extract")
    suite = get_uncond_suite(str(_fast_suite(tmp)))
    return Runner(suite, ExtractionSettings(n_generated=4, seeds=1), tmp / "store")


# ------------------------------------------------------------------ clustering


def test_clustering_is_deterministic_and_numbered_by_size():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    sizes = [5, 12, 8]
    x = np.concatenate([c + 0.05 * rng.normal(size=(s, 16)) for c, s in zip(centres, sizes)])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    a = cluster_embeddings(x, 3, seed=0)
    b = cluster_embeddings(x[::-1].copy(), 3, seed=0)[::-1]  # same rows, other order
    assert (a == cluster_embeddings(x, 3, seed=0)).all()
    assert (a == b).all()
    # label 0 is the largest cluster (12 rows), then 8, then 5; every blob is one cluster
    assert np.bincount(a).tolist() == [12, 8, 5]
    assert len(set(a[:5])) == len(set(a[5:17])) == len(set(a[17:])) == 1
    # near-copy grouping finds the same three groups without being told k
    c = cluster_near_copies(x, 0.4)
    assert (c == a).all() and (c == cluster_near_copies(x, 0.4)).all()


def test_clustering_rejects_bad_k():
    with pytest.raises(ExtractionError, match="clusters=9"):
        cluster_embeddings(np.eye(4), 9, seed=0)


# ------------------------------------------------------------------ stage cache


def test_stage_cache_reuses_and_recomputes_damaged_entries(tmp_path):
    cache = StageCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"x": np.arange(5)}

    first = cache.get_or_compute("pool", {"n": 5}, compute)
    again = cache.get_or_compute("pool", {"n": 5}, compute)
    assert len(calls) == 1 and (again["x"] == first["x"]).all()
    cache.get_or_compute("pool", {"n": 6}, compute)  # other fields: another entry
    assert len(calls) == 2
    for f in (tmp_path / "extraction" / "pool").glob("*.npz"):  # damage every stored file
        f.write_bytes(f.read_bytes()[:-3] + b"xyz")
    fresh = StageCache(tmp_path)
    assert (fresh.get_or_compute("pool", {"n": 5}, compute)["x"] == np.arange(5)).all()
    assert len(calls) == 3 and fresh.problems and "sha256" in fresh.problems[0]


# ------------------------------------------------------------------ guidance


def test_classifier_guidance_moves_samples_toward_the_target_cluster(runner):
    """Train the time-dependent classifier on two training photos (jittered copies), then sample the
    bundled model from the same x_T toward each: every image ends nearer the photo it was aimed at."""
    import torch

    from membench_eval.extraction.classifier import guidance, train_classifier
    from membench_eval.extraction.sampling import ddim_sample
    from PIL import Image

    files = [UNCOND_DIR / "train" / "photo-brick.png", UNCOND_DIR / "train" / "photo-chelsea.png"]
    photos = torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("RGB"), np.float32) / 127.5 - 1)
                          .permute(2, 0, 1) for f in files])
    gen = torch.Generator().manual_seed(0)
    x0 = (photos.repeat(32, 1, 1, 1) + 0.05 * torch.randn((64, 3, 32, 32), generator=gen)).clamp(-1, 1)
    labels = torch.arange(64) % 2
    clf, _ = train_classifier(x0, labels, runner.pipe.scheduler_config, n_classes=2, steps=80, seed=0,
                              batch_size=32)
    dist = {}
    for target in (0, 1):
        guide = guidance(clf, torch.full((4,), target), runner.pipe.scheduler_config, scale=10.0)
        imgs = ddim_sample(runner.pipe, 4, seed=3, steps=8, guide=guide)
        dist[target] = torch.stack([((imgs - p) ** 2).mean(dim=(1, 2, 3)) for p in photos], dim=1)  # (4, 2)
    # aimed at photo 0: nearer photo 0 than when aimed at photo 1 (and vice versa), on average
    assert dist[0][:, 0].mean() < dist[1][:, 0].mean(), dist
    assert dist[1][:, 1].mean() < dist[0][:, 1].mean(), dist


# ------------------------------------------------------------------ runner: shared AMS/UMS, cache reuse


def test_runner_scores_with_the_shared_memorization_module_and_reuses_its_cache(runner, monkeypatch):
    import membench_eval.extraction.run as run_mod
    from membench_eval.extraction.run import resolve_method
    from membench_eval.metrics import memorization

    calls = []

    def spy(sim, bands, reference_ids):
        calls.append(sim.shape)
        return memorization.memorization_scores(sim, bands, reference_ids)

    monkeypatch.setattr(run_mod, "memorization_scores", spy)
    plain = resolve_method("plain")
    first = runner.run(plain)
    assert calls == [(4, len(runner.reference_ids))]
    # the table's numbers are that module's AMS/UMS of this very matrix
    scores = first.per_seed[0].scores
    assert sum(scores.ams.values()) == pytest.approx(1.0)
    assert first.summary()["ams"]["high"]["mean"] == scores.ams["high"]

    generated = []
    original = type(plain).generate
    monkeypatch.setattr(type(plain), "generate", lambda self, pipe, ctx: generated.append(1) or original(self, pipe, ctx))
    second = runner.run(plain)
    assert generated == [] and second.cache["computed"] == {}  # a second run does no work
    assert second.per_seed[0].scores.as_dict() == scores.as_dict()


def test_side_stages_are_cached_and_reused_across_guidance_scales(runner):
    from membench_eval.extraction.run import resolve_method

    small = ["pool=8", "clusters=2", "classifier_steps=5"]
    a = runner.run(resolve_method("side", small + ["scale=1.0"]))
    assert {"side-pool", "side-pool_sscd", "side-clusters", "side-classifier"} <= set(a.cache["computed"])
    b = runner.run(resolve_method("side", small + ["scale=2.0"]))  # new scale: only new generations
    assert set(b.cache["computed"]) == {"generated", "sscd"}
    assert {"side-pool", "side-clusters", "side-classifier"} <= set(b.cache["reused"])
    assert a.per_seed[0].records["cluster_sizes"] == b.per_seed[0].records["cluster_sizes"]


# ------------------------------------------------------------------ bad input


def test_bad_inputs_give_one_line_errors(tmp_path, runner):
    from membench_eval.extraction.run import resolve_method
    from membench_eval.models.uncond import load_uncond_pipeline
    from membench_eval.extraction.table import render_markdown

    with pytest.raises(ExtractionError, match="unknown extraction method 'nope'"):
        resolve_method("nope")
    with pytest.raises(ExtractionError, match="no parameter 'bogus'"):
        resolve_method("side", ["bogus=1"])
    with pytest.raises(ExtractionError, match="unknown unconditional suite"):
        get_uncond_suite("no-such-suite")
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "m"\ntraining_images = "t"\ncolour = 3\n')
    with pytest.raises(DataError, match="colour"):
        get_uncond_suite(str(bad))
    with pytest.raises(ExtractionError, match="not an unconditional diffusers pipeline"):
        load_uncond_pipeline(tmp_path)
    model = tmp_path / "model"
    shutil.copytree(UNCOND_DIR / "model", model)
    cfg = model / "scheduler" / "scheduler_config.json"
    cfg.write_text(cfg.read_text().replace("}", ' , "x": 1}'))
    with pytest.raises(ExtractionError, match="sha256 differs"):
        load_uncond_pipeline(model)
    wrong = tmp_path / "wrong.py"
    wrong.write_text("from membench_eval.extraction_method import ExtractionMethod\n\n"
                     "class Wrong(ExtractionMethod):\n    name = 'wrong'\n\n"
                     "    def generate(self, pipe, ctx):\n        return ctx.sample(pipe, ctx.n - 1, seed=ctx.seed)\n")
    with pytest.raises(ExtractionError, match="returned images of shape"):
        runner.run(resolve_method(str(wrong)))
    a = runner.run(resolve_method("plain"))
    b = type(a)(**{**a.__dict__, "n_generated": 5})
    with pytest.raises(ExtractionError, match="equal N"):
        render_markdown([a, b])


def test_cli_reports_a_bad_suite_in_one_line(capsys):
    from membench_eval.cli import main

    assert main(["extract", "--suite", "nope", "--method", "plain"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown unconditional suite 'nope'" in err
