"""SD 2 (768-v) and SDXL at their true widths with random weights, through the engine, on CPU.

Why: every other test runs SD's tiny 32-wide pipeline, so nothing else executes SD 2's v-prediction
(the guidance vector and DDIM's step on v), its OpenCLIP-H 1024-d tokens, or SDXL's two encoders,
pooled embedding and size ids. Per family: base must equal diffusers' own ``__call__`` byte for
byte (so the engine's loop, guidance vector included, is the pipeline's), then every bundled method
and detector: applicable ones run and their forward rows per image are counted, the others read n/a
with the capability they lack (AMG and SAIL's sharpness detector on the v model).

Reductions (CI budget): 128x128 pixels for SD 2, 96x96 for SDXL (``SIZES``), 1 DDIM step, 1 image, one thread; the
methods' optimisation loops capped to one step (the initial-noise adjustment: ``adj_iters=1``). Both
keep every width and head count with fewer blocks (``depth="reduced"``): SD 2 (``models.sd2``) UNet
584M of 866M (1 resnet and attention per down level, 2 per up level), OpenCLIP-H 2 of 23 layers at
its full 1024 width, the VAE whole; SDXL (``models.sdxl_random``) UNet 436M of 2.57B, bigG 2 of 32
layers. What the depth adds is SD 1.x's: ``test_real_architecture.py`` runs every method on the whole
860M SD 1.4 UNet, the same diffusers class. Measured for SD 2 on one thread: a [uncond, cond] UNet
call 2.75 -> 1.88 s, a prompt's encoding 1.34 -> 0.12 s. Both full sizes run in ``bench/gpu_check.py``.
One model at a time: both tests are one xdist group and free their model.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("large_models")]

REPO = Path(__file__).resolve().parents[2]
STEPS, GUIDANCE = 1, 7.5
# NeMo compares images by SSIM on latents (11x11 window): 16x16 latents for SD 2 (4 levels: a
# multiple of 8 latents), 12x12 for SDXL (3 levels).
SIZES = {"sd2": 128, "sdxl": 96}
PROMPT = "The No Limits Business Woman Podcast"
GENERAL = ["a cup of coffee on a wooden table", "a cat sleeping on a sofa", "a mountain lake at sunrise"]
CAPS: dict[str, dict[str, Any]] = {"wen": {"MAX_ITERATIONS": 1}, "wen_gated": {"MAX_ITERATIONS": 1},
                                   "prss": {"MAX_ITERATIONS": 1}, "sail": {"MAX_STEPS": 1, "MAX_ROUNDS": 1},
                                   "anisotropy_embed": {"MAX_ITERATIONS": 1}}


def _params(name: str, work: Path) -> list[str]:
    prompts = work / "general.txt"
    prompts.write_text("\n".join(GENERAL) + "\n")
    return {"nemo": [f"stats_prompts={prompts}"], "wen_gated": [f"calibration={prompts}"], "amg": ["suite=mini"],
            "sail": ["threshold=0"], "init_noise": ["adj_iters=1"]}.get(name, [])


def _run_every_method(pipe: Any, work: Path, size: int) -> dict[str, Any]:
    """name -> {"images", "records"} or {"na": reason}; errors propagate (a crash fails the test)."""
    from membench_eval.generation.engine import generate
    from membench_eval.generation.seeding import plan_requests
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.models import family_for
    from membench_eval.models.capabilities import not_applicable
    from membench_eval.plugins.mitigations import find_class, load_mitigations
    from membench_eval.store.run_store import RunStore
    from membench_eval.suites.types import Prompt

    store = RunStore(work / "store")
    settings = GenerationSettings(num_inference_steps=STEPS, guidance_scale=GUIDANCE, height=size, width=size,
                                  batch_size=1)
    requests = plan_requests([Prompt("p0", PROMPT)], 1, run_seed=0)
    out: dict[str, Any] = {}
    for path in sorted((REPO / "mitigations").glob("*.py")):
        name = path.stem
        cls = find_class(path)
        items = (["strongest"] if getattr(cls, "strongest", None) else []) + _params(name, work)
        (method,) = load_mitigations(path, param_items=items)
        for attr, value in CAPS.get(name, {}).items():
            setattr(type(method), attr, value)
        why = not_applicable(method, family_for(pipe))
        if why is not None:
            out[name] = {"na": why}
            continue
        report = generate(pipe, requests, method, settings, store, progress=False)
        out[name] = {"images": [np.asarray(store.get_image(k)) for k in report.keys],
                     "records": [store.record(k)["records"] for k in report.keys]}
    return out


def _run_every_detector(pipe: Any, work: Path, size: int) -> dict[str, Any]:
    from membench_eval.detection.run import score_prompts
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.plugins.detectors import load_detector
    from membench_eval.store.detections import DetectionStore
    from membench_eval.suites.types import Prompt

    settings = GenerationSettings(num_inference_steps=2, guidance_scale=GUIDANCE, height=size, width=size)
    small = {"wen_trajectory": {"images": 1}, "sail_sharpness": {"images": 1}, "bright_ending": {"images": 1},
             "ren_entropy": {"last_steps": 1}}
    out = {}
    for path in sorted((REPO / "detectors").glob("*.py")):
        det = load_detector(path, params=small.get(path.stem, {}))
        res = score_prompts(det, [Prompt("p0", PROMPT)], settings, DetectionStore(work / "det"),
                            pipe=pipe if det.needs_model else None)
        out[path.stem] = res
    return out


def _bare_call(pipe: Any, size: int) -> np.ndarray:
    from membench_eval.generation.seeding import make_generator, plan_requests
    from membench_eval.suites.types import Prompt

    (req,) = plan_requests([Prompt("p0", PROMPT)], 1, run_seed=0)
    image = pipe(prompt=[PROMPT], generator=[make_generator(req.seed)], num_inference_steps=STEPS,
                 guidance_scale=GUIDANCE, height=size, width=size, output_type="np").images
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def _check_family(pipe: Any, work: Path, size: int, expect_na: dict[str, str], subtests: Any) -> None:
    runs = _run_every_method(pipe, work, size)
    with subtests.test("base equals the diffusers pipeline's __call__ byte for byte"):
        assert np.abs(runs["base"]["images"][0].astype(int) - _bare_call(pipe, size)[0].astype(int)).max() == 0
    for name, run in runs.items():
        with subtests.test(method=name):
            if name in expect_na:
                assert run.get("na", "").startswith(f"n/a: {name} needs {expect_na[name]}"), run
                continue
            assert "na" not in run, run
            (image,), (rec,) = run["images"], run["records"]
            assert image.shape == (size, size, 3) and image.std() > 0, f"{name}: a constant image"
            assert rec["unet_evals"] >= 2 * STEPS  # CFG: [uncond, cond] rows per step at least
            if name in ("base", "rna", "rta", "gni", "cfg_schedule", "ren"):
                assert rec["unet_evals"] == 2 * STEPS, rec
    base = runs["base"]["images"][0].astype(int)
    for name in ("rna", "gni", "ren", "wen"):  # edits that always act: the pixels move
        with subtests.test(acted=name):
            assert np.abs(runs[name]["images"][0].astype(int) - base).max() > 0
    for name, res in _run_every_detector(pipe, work, size).items():
        with subtests.test(detector=name):
            if name in expect_na:
                assert (res.not_applicable or "").startswith(f"n/a: {name} needs {expect_na[name]}"), res
                continue
            assert res.not_applicable is None and len(res.scores) == 1 and np.isfinite(res.scores[0]), res
            if name != "token_count":
                assert res.unet_rows[0] > 0


def test_sd2_v_prediction_every_method(tmp_path: Path, subtests: Any) -> None:
    import torch

    from membench_eval.models import family_for
    from membench_eval.models.sd2 import build_sd2_pipeline

    torch.set_num_threads(1)
    size = SIZES["sd2"]
    pipe = build_sd2_pipeline(image_size=size, depth="reduced")
    family = family_for(pipe)
    assert family.prediction_type == "v_prediction" and family.native_size == size
    cond = family.encode([PROMPT])
    assert tuple(cond.embeds.shape) == (1, 77, 1024)
    epsilon_only = ("amg", "sail_sharpness", "anisotropy", "early_curvature")
    _check_family(pipe, tmp_path, size, dict.fromkeys(epsilon_only, "epsilon"), subtests)
    del pipe, family
    gc.collect()


def test_sdxl_every_method(tmp_path: Path, subtests: Any) -> None:
    import torch

    from membench_eval.models import family_for
    from membench_eval.models.sdxl_random import build_sdxl_pipeline

    torch.set_num_threads(1)
    size = SIZES["sdxl"]
    pipe = build_sdxl_pipeline(image_size=size, depth="reduced")
    family = family_for(pipe)
    assert family.name == "stable-diffusion-xl" and family.prediction_type == "epsilon"
    cond, uncond = family.encode_for_guidance([PROMPT])
    assert tuple(cond.embeds.shape) == (1, 78, 2048)  # 77 tokens + the packed pooled row
    assert float(uncond.embeds.abs().max()) == 0.0  # SDXL's zero unconditional embedding
    assert torch.equal(cond.embeds[0, 77, :1280], cond.pooled[0])
    assert family.time_ids(torch.zeros(1, 4, 12, 12)).tolist() == [[96, 96, 0, 0, 96, 96]]
    _check_family(pipe, tmp_path, size, {}, subtests)
    del pipe, family
    gc.collect()
