"""DeepFloyd IF stage I through the engine on CPU: at IF-I-XL's true widths, and every bundled
method and detector on the same architecture at narrow widths.

Why: IF is the one pixel-space family (no VAE), the one whose UNet predicts a learned variance (6
output channels, DDPM ``learned_range``) and whose text enters through added-KV attention; nothing
else executes those paths. In both tests base must equal ``IFPipeline.__call__`` byte for byte (on
the narrow model over two DDPM steps: the first adds noise with the learned variance, so the
variance the engine re-attaches is checked; at true width over one), and a plugin either runs with
its forward rows counted or reads n/a with the capability IF lacks (CLIP's BOS token, SD's
cross-attention).

Reductions (CI budget). True widths (``models.deepfloyd_if_random`` ``depth="reduced"``): the text
path at full width (T5's 4096-d tokens with 1 of its 24 layers, the 2816-d projection, 64-d heads)
and IF-I-XL's first two UNet levels at true width with 1 resnet each (UNet 0.50B of 4.3B; a third
level makes it 1.20B and this test ~300 CPU-seconds), 8x8 pixels, 1 step (detectors: 2), 1 image,
optimisation loops capped to one step as in ``test_real_architecture_unet_families.py``. A method
there costs a T5 pass of 77 tokens (30 GFLOP a prompt) plus its UNet rows; every bundled method and
detector runs at true width.
The narrow model (``build_tiny_if_pipeline``: the same classes at diffusers' IF-test widths) runs
them all again over two DDPM steps at 16 px, which the true-width model cannot afford: the paths of
the harness's DDPM subclass with the variance's noise in play (PRSS: steps without the variance
half, with per-image generators; the trajectory and latent-update detectors: without a generator,
the posterior mean). The full model runs in ``bench/gpu_families.py``. One model at a time; each
test frees its model.
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.models.test_real_architecture_unet_families import GUIDANCE, PROMPT, _run_every_detector, _run_every_method

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("large_models")]

# What IF lacks for each bundled plugin that cannot run on it (its T5 has no BOS sink; no attn2).
EXPECT_NA = {"ren": "clip_bos_token and cross_attention", "ren_entropy": "clip_bos_token and cross_attention",
             "nemo": "cross_attention", "bright_ending": "cross_attention"}


def _call_image(pipe: Any, size: int, steps: int) -> np.ndarray:
    """``IFPipeline.__call__``'s image for the request the engine's base run makes (uint8)."""
    from membench_eval.generation.seeding import make_generator, plan_requests
    from membench_eval.suites.types import Prompt

    (req,) = plan_requests([Prompt("p0", PROMPT)], 1, run_seed=0)
    call = pipe(prompt=[PROMPT], generator=[make_generator(req.seed)], num_inference_steps=steps,
                guidance_scale=GUIDANCE, height=size, width=size, output_type="np", clean_caption=False).images
    return (np.clip(call, 0, 1) * 255).round().astype(np.uint8)[0]


def _engine_image(pipe: Any, work: Path, size: int, steps: int) -> tuple[np.ndarray, float]:
    """The engine's base image and its UNet rows."""
    from membench_eval.generation.engine import generate
    from membench_eval.generation.seeding import plan_requests
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.store.run_store import RunStore
    from membench_eval.suites.types import Prompt

    settings = GenerationSettings(num_inference_steps=steps, guidance_scale=GUIDANCE, height=size, width=size,
                                  batch_size=1)
    store = RunStore(work / f"base{steps}")
    (key,) = generate(pipe, plan_requests([Prompt("p0", PROMPT)], 1, run_seed=0), None, settings, store,
                      progress=False).keys
    return np.asarray(store.get_image(key)), store.record(key)["records"]["unet_evals"]


def _check_plugins(pipe: Any, work: Path, size: int, subtests: Any) -> dict[str, Any]:
    runs = _run_every_method(pipe, work, size)
    for name, run in runs.items():
        with subtests.test(method=name):
            if name in EXPECT_NA:
                assert run.get("na", "") == f"n/a: {name} needs {EXPECT_NA[name]}; deepfloyd-if has none", run
                continue
            assert "na" not in run, run
            (image,), (rec,) = run["images"], run["records"]
            assert image.shape == (size, size, 3) and image.std() > 0, f"{name}: a constant image"
            assert rec["unet_evals"] >= 2  # CFG: [uncond, cond] rows per step at least
            if name in ("base", "rna", "rta", "gni", "cfg_schedule"):
                assert rec["unet_evals"] == 2, rec
    base = runs["base"]["images"][0].astype(int)
    for name in sorted({"rna", "gni", "wen"} & set(runs)):  # edits that always act: the pixels move
        with subtests.test(acted=name):
            assert np.abs(runs[name]["images"][0].astype(int) - base).max() > 0
    results = _run_every_detector(pipe, work, size)
    for name, res in results.items():
        with subtests.test(detector=name):
            if name in EXPECT_NA:
                assert res.not_applicable == f"n/a: {name} needs {EXPECT_NA[name]}; deepfloyd-if has none", res
                continue
            assert res.not_applicable is None and len(res.scores) == 1 and np.isfinite(res.scores[0]), res
            if name != "token_count":
                assert res.unet_rows[0] > 0
    return {**runs, **results}


def test_deepfloyd_if_true_widths(tmp_path: Path, subtests: Any) -> None:
    import torch

    from membench_eval.models import family_for
    from membench_eval.models.deepfloyd_if_random import build_if_pipeline

    torch.set_num_threads(1)
    size = 8  # two levels: 8, 4 px
    pipe = build_if_pipeline(image_size=size)
    family = family_for(pipe)
    assert family.name == "deepfloyd-if" and family.prediction_type == "epsilon" and family.native_size == size
    layers = family.attention_layers()
    assert len(layers) == 4 and {layer.role for layer in layers} == {"added_kv"}
    assert [layer.module.heads for layer in layers] == [22, 22, 22, 22]  # 64-d heads at 1408: down, mid, up x 2
    assert all(layer.module.added_kv_proj_dim == 2816 for layer in layers)
    cond, uncond = family.encode_for_guidance([PROMPT])
    assert tuple(cond.embeds.shape) == (1, 77, 4096) and not torch.equal(cond.embeds, uncond.embeds)
    with torch.no_grad():
        pred = family.predict(torch.zeros(1, 3, size, size), torch.tensor(500), cond)
    assert tuple(pred.sample.shape) == tuple(pred.variance.shape) == (1, 3, size, size)
    ran = _check_plugins(pipe, tmp_path, size, subtests)
    assert set(EXPECT_NA) <= set(ran) and len(ran) > 20  # every bundled method and detector
    with subtests.test("base equals IFPipeline.__call__ byte for byte (1 step; 2 on the narrow model)"):
        assert np.array_equal(ran["base"]["images"][0], _call_image(pipe, size, 1))
    freed = weakref.ref(pipe)
    del pipe, family, layers, cond, uncond, pred
    gc.collect()
    assert freed() is None, "the 3 GB model outlived its test (the next large model would meet it)"


def test_deepfloyd_if_every_method_narrow(tmp_path: Path, subtests: Any) -> None:
    import torch

    from membench_eval.models import family_for
    from membench_eval.models.deepfloyd_if_random import build_tiny_if_pipeline

    torch.set_num_threads(1)
    size = 16
    pipe = build_tiny_if_pipeline()
    assert {layer.role for layer in family_for(pipe).attention_layers()} == {"added_kv"}
    with subtests.test("base equals IFPipeline.__call__ byte for byte (2 DDPM steps, learned variance)"):
        image, rows = _engine_image(pipe, tmp_path, size, 2)
        assert np.array_equal(image, _call_image(pipe, size, 2)) and rows == 4  # [uncond, cond] x 2 steps
    ran = _check_plugins(pipe, tmp_path, size, subtests)
    assert set(EXPECT_NA) <= set(ran) and len(ran) > 20  # every bundled method and detector


def test_saved_if_pipeline_loads_into_its_family_and_gives_the_same_pixels(tmp_path: Path) -> None:
    """``load_pipeline`` on a saved IF folder: the family by ``model_index.json``'s ``IFPipeline``,
    diffusers' scheduler class recorded (the harness's subclass swapped back in on load), no safety
    checker or watermarker, and the engine's image identical to the in-memory pipeline's."""
    import json

    from membench_eval.models import family_for, load_pipeline
    from membench_eval.models.deepfloyd_if_random import build_tiny_if_pipeline
    from membench_eval.models.learned_variance import DDPMScheduler

    pipe = build_tiny_if_pipeline(seed=3)
    pipe.save_pretrained(tmp_path / "model")
    index = json.loads((tmp_path / "model" / "model_index.json").read_text())
    assert index["_class_name"] == "IFPipeline" and index["scheduler"] == ["diffusers", "DDPMScheduler"]
    loaded = load_pipeline(str(tmp_path / "model"), device="cpu")
    assert family_for(loaded).name == "deepfloyd-if" and type(loaded.scheduler) is DDPMScheduler
    assert loaded.safety_checker is None and loaded.watermarker is None
    mine, _ = _engine_image(pipe, tmp_path / "a", 16, 2)
    theirs, _ = _engine_image(loaded, tmp_path / "b", 16, 2)
    assert np.array_equal(mine, theirs)
