"""SD3-medium and FLUX.1-dev at true widths (random weights) through the engine, on CPU.

Why: the tiny-config tests (``test_transformer_families.py``) run 32-wide models, so nothing else
executes SD3's 1536-wide, 24-head joint blocks on a 77 + 256 token text sequence with CLIP-L and
CLIP-G at full width (the 2048-d pooled vector), or FLUX's 3072-wide double- and single-stream
blocks with T5-XXL's 4096-d tokens and the guidance input.

Reductions, all deliberate (the CI budget is minutes, not hours): SD3 keeps 2 of its 24 joint
blocks (the second is the context-pre-only last block), CLIP-G 2 of its 32 layers (1280 wide, 20 heads, as SDXL's bigG
in ``test_real_architecture_unet_families.py``; the whole tower took 2.6 of the 3.3 s each
guidance encoding cost, and a run encodes once per method and detector), and runs without T5 (SD3
allows it; T5-XXL's 4.7B parameters do not fit the budget); FLUX keeps 1 of 19 double and 1 of 38 single blocks (12B
does not fit 24 GiB), T5 at full width with 1 of 24 layers, and a 256-token T5 sequence
(schnell's; dev's is 512). 64x64 pixels, 1 step, 1 image per method, one torch thread, fp32 (bf16
where the CPU has native bf16). Optimisation loops are capped through the methods' ClassVars, as
in ``test_real_architecture.py``. Full depth: ``bench/gpu_check.py``.

Per method: it runs through ``generation.batch.run_batch`` or refuses with its own message
(AMG and SAIL: their epsilon / v formulas do not apply to a flow velocity), images are finite and
not constant, and the denoiser rows per image are what the method's docstring counts. Ren and NeMo
act on SD's ``attn2`` cross-attention and are not run here (joint attention has none).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

# One large model at a time: the same group as test_real_architecture.py's SD 1.4 run.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("large_models")]

REPO = Path(__file__).resolve().parents[2]
SIZE, STEPS = 64, 1
PROMPT = "The No Limits Business Woman Podcast"
CAPS = {"wen": {"MAX_ITERATIONS": 1}, "wen_gated": {"MAX_ITERATIONS": 1}, "prss": {"MAX_ITERATIONS": 1},
        "anisotropy_embed": {"MAX_ITERATIONS": 1}}
CALIBRATION = ["a cup of coffee on a wooden table", "a cat sleeping on a sofa", "a mountain lake at sunrise"]
# Methods that refuse a flow model, with the words their refusal must contain.
REFUSE = {"amg": "epsilon", "sail": "prediction_type 'flow'"}
# Every bundled method runs on SD3 where its ``needs`` are offered (globbed: a new file runs here too);
# AMG and SAIL read n/a there, and their own guards must still refuse a flow model if run anyway.
METHOD_NAMES = sorted(p.stem for p in (REPO / "mitigations").glob("*.py"))
# FLUX runs no unconditional batch: methods on the guidance hook see eps_uncond None.
FLUX_METHODS = ["base", "gni", "rna", "rta", "wen", "amg"]
REFUSE_FLUX = {"amg": "needs classifier-free guidance"}


def _dtype():
    import torch

    native = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)()
    return torch.bfloat16 if native else torch.float32


def _method(name, tmp_path):
    from membench_eval.plugins.mitigations import load_mitigation

    params = {"wen_gated": {"calibration": str(tmp_path / "calibration.txt")}, "init_noise": {"adj_iters": "1"}}.get(name, {})
    (tmp_path / "calibration.txt").write_text("\n".join(CALIBRATION) + "\n")
    method = load_mitigation(REPO / "mitigations" / f"{name}.py", params=params)
    for attr, value in CAPS.get(name, {}).items():
        setattr(method, attr, value)
    return method


def _expected_rows(name, rec, plain):
    if name in ("base", "rna", "rta", "gni", "cfg_schedule"):
        return plain
    if name == "wen":
        return plain + 1 + rec["wen_iterations"] + 1
    if name == "wen_gated":
        return plain + 2 + (1 + rec["wen_iterations"] + 1 if rec["gate_flagged"] else 0)
    return None


def _run_methods(pipe, names, refuse, guidance, tmp_path, subtests):
    from membench_eval.errors import MitigationError
    from membench_eval.generation.batch import run_batch
    from membench_eval.generation.seeding import plan_requests
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.suites.types import Prompt

    settings = GenerationSettings(num_inference_steps=STEPS, height=SIZE, width=SIZE, seed=3, batch_size=1,
                                  guidance_scale=guidance)
    requests = plan_requests([Prompt("p0", PROMPT)], 1, settings.seed)
    plain = (2 if guidance > 1 and name_has_cfg(pipe) else 1) * STEPS
    for name in names:
        with subtests.test(method=name):
            start = time.process_time()
            method = _method(name, tmp_path)
            if name in refuse:
                with pytest.raises(MitigationError, match=refuse[name]):
                    run_batch(pipe, requests, method, settings)
                continue
            images, ctx = run_batch(pipe, requests, method, settings)
            rec = ctx.records[0]
            print(f"{name}: {time.process_time() - start:.1f} s CPU, rows/image {rec['unet_evals']}")
            assert images[0].shape == (SIZE, SIZE, 3) and images[0].std() > 0
            want = _expected_rows(name, rec, plain)
            if want is not None:
                assert rec["unet_evals"] == want, f"{name}: {rec}"


def name_has_cfg(pipe):
    from membench_eval.models import family_for

    return not family_for(pipe).guidance_embedded


def _detectors(pipe, guidance, subtests):
    """Wen's single-step and trajectory detectors: finite scores, a prompt above the empty one."""
    import torch

    from membench_eval.detector import DetectionContext, DetectionRequest
    from membench_eval.plugins.detectors import load_detector

    prompts = ["", PROMPT]
    ctx = DetectionContext(requests=[DetectionRequest(f"p{i}", p, i) for i, p in enumerate(prompts)],
                           prompts=prompts, num_inference_steps=STEPS, guidance_scale=guidance, height=SIZE,
                           width=SIZE, device=torch.device("cpu"), records=[{}, {}])
    for name in ("wen_single", "wen_trajectory"):
        with subtests.test(detector=name):
            params = {"images": 1} if name == "wen_trajectory" else {}
            scores = load_detector(REPO / "detectors" / f"{name}.py", params=params).score(pipe, ctx)
            assert all(np.isfinite(scores)) and scores[1] > scores[0]


def test_sd3_medium_widths_every_applicable_method(tmp_path, subtests):
    import torch

    from membench_eval.models import family_for
    from membench_eval.models.transformers_random import build_sd3_pipeline

    torch.set_num_threads(1)
    pipe = build_sd3_pipeline(_dtype(), image_size=SIZE, num_layers=2, clip_g_layers=2)
    family = family_for(pipe)
    cond = family.encode([PROMPT])
    assert tuple(cond.embeds.shape) == (1, 77 + 256 + 1, 4096) and tuple(cond.pooled.shape) == (1, 2048)
    layers = family.attention_layers()
    assert [(layer.role, layer.module.heads) for layer in layers] == [("joint", 24)] * 2
    clip_g = pipe.text_encoder_2  # 104.3M of 694.7M: every width, 2 of 32 layers
    assert sum(p.numel() for p in clip_g.parameters()) == pytest.approx(104.34e6, rel=1e-3)
    assert (clip_g.config.hidden_size, clip_g.config.num_attention_heads, clip_g.config.num_hidden_layers) == (1280, 20, 2)
    from membench_eval.models.capabilities import not_applicable

    na = {n for n in METHOD_NAMES if not_applicable(_method(n, tmp_path), family) is not None}
    assert {"ren", "nemo", "amg", "sail"} <= na  # cross-attention / epsilon / diffusion-score methods
    _run_methods(pipe, [n for n in METHOD_NAMES if n not in na] + sorted(REFUSE), REFUSE, 5.0, tmp_path, subtests)
    _detectors(pipe, 5.0, subtests)


def test_flux_dev_widths_every_applicable_method(tmp_path, subtests):
    import torch

    from membench_eval.models import family_for
    from membench_eval.models.transformers_random import build_flux_pipeline

    torch.set_num_threads(1)
    pipe = build_flux_pipeline(_dtype(), image_size=SIZE, num_layers=1, num_single_layers=1, t5_layers=1)
    family = family_for(pipe)
    family.max_sequence_length = 256
    cond = family.encode([PROMPT])
    assert tuple(cond.embeds.shape) == (1, 256 + 1, 4096) and tuple(cond.pooled.shape) == (1, 768)
    assert [layer.module.heads for layer in family.attention_layers()] == [24, 24]
    assert pipe.transformer.config.guidance_embeds and family.guidance_embedded
    _run_methods(pipe, FLUX_METHODS, REFUSE_FLUX, 3.5, tmp_path, subtests)
    _detectors(pipe, 3.5, subtests)
