"""AMG (Chen et al. CVPR 2024): G_spe / G_dup / G_sim on the tiny pipeline with hand-made reference
sets and embedders, the real offline SSCD on the trained mini model (AMG lowers a copy's SSCD)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from membench_eval.generation.batch import run_batch  # noqa: E402
from membench_eval.generation.engine import generate, pad_batch  # noqa: E402
from membench_eval.generation.seeding import plan_requests  # noqa: E402
from membench_eval.generation.settings import GenerationSettings  # noqa: E402
from membench_eval.mitigation import ImageRequest, Mitigation  # noqa: E402
from membench_eval.errors import MitigationError  # noqa: E402
from membench_eval.suites.types import Prompt  # noqa: E402
from tests.mitigation_files import hook_context, load_module  # noqa: E402

amg = load_module("amg")
AMG = amg.AMG
SETTINGS = GenerationSettings(num_inference_steps=4, height=64, width=64, seed=1, batch_size=2)
PROMPTS = [Prompt("p0", "an astronaut in a spacesuit"), Prompt("p1", "a cup of coffee on a table")]
CAPTION = "a memorized caption"


class Injected(AMG):
    """AMG whose setup returns a state built by the test (no suite, no ONNX)."""

    name = "amg_test"

    def setup(self, pipe):
        return self.__dict__["_state"]


def _with(state, cls=Injected, **params):
    m = cls(**params)
    m.__dict__["_state"] = state
    return m


def _run(pipe, requests, method, settings=SETTINGS):
    pipe.__dict__.pop("_membench_setup", None)  # each test injects its own state
    return run_batch(pipe, requests, method, settings)


def pixel_embed(batch: np.ndarray) -> np.ndarray:
    """A small deterministic embedder: mean-removed 32x32 box-pooled pixels (uint8 NHWC -> rows)."""
    x = torch.as_tensor(np.asarray(batch, np.float32) / 255).permute(0, 3, 1, 2)
    v = torch.nn.functional.adaptive_avg_pool2d(x, 32).flatten(1)
    v = v - v.mean(1, keepdim=True)
    return (v / v.norm(dim=1, keepdim=True)).numpy()


def constant_embed(sims: list[float]) -> tuple:
    """Embedder whose cosine with the single reference is always sims[0] (mutable), whatever the image."""
    ref = np.array([[1.0, 0.0]], np.float32)

    def embed(batch):
        s = sims[0]
        return np.tile(np.array([s, math.sqrt(1 - s * s)], np.float32), (len(batch), 1))

    return ref, embed


def _noise_image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)


def _ctx(pipe, n=1, steps=SETTINGS.num_inference_steps, prompt=PROMPTS[0].text, state=None):
    requests = [ImageRequest("p0", prompt, i, seed=i) for i in range(n)]
    return hook_context(requests, steps, state=state)


def _tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 4, 16, 16, generator=g) for _ in range(3)]


def test_no_similarity_gives_plain_cfg(pipe):
    """sim <= 0 (the reference set is orthogonal to everything): no guidance, the base images."""
    ref, embed = constant_embed([0.0])
    state = amg.AMGState(pipe, ["m0"], [_noise_image(0)], [CAPTION], ref, embed)
    requests = plan_requests(PROMPTS, 1, SETTINGS.seed)
    base, _ = _run(pipe, requests, Mitigation())
    out, ctx = _run(pipe, requests, _with(state))
    assert all(np.array_equal(a, b) for a, b in zip(base, out))
    for r in ctx.records:
        assert (r["amg_steps_spe"], r["amg_steps_dup"], r["amg_steps_sim"], r["amg_max_sim"]) == (0, 0, 0, 0.0)
        assert r["unet_evals"] == 2 * SETTINGS.num_inference_steps


def test_despecification_formula_on_hand_made_tensors(pipe):
    assert AMG.despecify(0.2, 7.5) == pytest.approx(2.6)  # 13 sim
    assert AMG.despecify(0.6, 7.5) == 6.5 and AMG.despecify(-0.1, 7.5) == 0.0  # clipped to [0, g - 1]
    assert AMG.dedup_scale(0.1, 2.6, 7.5) == pytest.approx(3.9 / 0.3 * 0.1)
    assert AMG.dedup_scale(0.35, 4.55, 7.5) == pytest.approx(1.95)  # capped at g - 1 - s1
    ref, embed = constant_embed([0.1])  # below lambda_t (>= 0.3): G_spe only
    state = amg.AMGState(pipe, ["m0"], [_noise_image(0)], [CAPTION], ref, embed)
    x, e_u, e_c = _tensors()
    for scale, s1 in ((1.0, 1.3), (0.5, 0.65)):
        ctx = _ctx(pipe, state=state)
        eps = _with(state, scale=scale).guidance(pipe, 0, 501, x, e_u, e_c, ctx)
        torch.testing.assert_close(eps, e_u + (7.5 - s1) * (e_c - e_u))
        r = ctx.records[0]
        assert (r["amg_steps_spe"], r["amg_steps_dup"], r["amg_steps_sim"]) == (1, 0, 0)
        assert r["amg_max_sim"] == pytest.approx(0.1) and r["amg_nearest"] == "m0"


def test_lambda_gate_and_dup_window(pipe):
    """G_dup and G_sim only when sim > lambda_t; G_dup then stays on for 10 steps in all."""
    assert AMG.threshold(981) == pytest.approx(0.3007, abs=1e-4) and AMG.threshold(1) == pytest.approx(0.3995, abs=1e-4)
    sims = [0.35]
    ref, embed = constant_embed(sims)
    state = amg.AMGState(pipe, ["m0"], [_noise_image(0)], [CAPTION], ref, embed)
    x, e_u, e_c = _tensors()
    m = _with(state)
    ctx = _ctx(pipe, state=state)
    m.guidance(pipe, 0, 1, x, e_u, e_c, ctx)  # lambda_1 = 0.3995 > 0.35: neither
    assert (ctx.records[0]["amg_steps_dup"], ctx.records[0]["amg_steps_sim"]) == (0, 0)
    eps = m.guidance(pipe, 1, 901, x, e_u, e_c, ctx)  # lambda_901 = 0.301 < 0.35: both
    s1, s2 = AMG.despecify(0.35, 7.5), AMG.dedup_scale(0.35, AMG.despecify(0.35, 7.5), 7.5)
    e_dup = m._unet(pipe, state, x, 901, CAPTION)
    # constant embedder: SSCD's directional derivative is 0, so G_sim adds nothing here
    torch.testing.assert_close(eps, e_u + (7.5 - s1) * (e_c - e_u) + s2 * (e_u - e_dup))
    assert (ctx.records[0]["amg_steps_dup"], ctx.records[0]["amg_steps_sim"]) == (1, 1)
    sims[0] = 0.2  # below lambda from now on: G_dup runs out after 9 more steps, no G_sim
    for step in range(2, 15):
        m.guidance(pipe, step, 1, x, e_u, e_c, ctx)
    assert (ctx.records[0]["amg_steps_dup"], ctx.records[0]["amg_steps_sim"]) == (10, 1)
    assert ctx.records[0]["amg_steps_spe"] == 15


def test_own_prompt_caption_reuses_eps_cond(pipe):
    """When y_N is the image's own prompt, eps(y_N) = eps_c: no extra UNet row."""
    ref, embed = constant_embed([0.35])
    state = amg.AMGState(pipe, ["m0"], [_noise_image(0)], [PROMPTS[0].text], ref, embed)
    x, e_u, e_c = _tensors()
    eps = _with(state).guidance(pipe, 0, 901, x, e_u, e_c, _ctx(pipe, state=state))
    s1 = AMG.despecify(0.35, 7.5)
    torch.testing.assert_close(eps, e_u + (7.5 - s1) * (e_c - e_u) + AMG.dedup_scale(0.35, s1, 7.5) * (e_u - e_c))


class NoSim(Injected):
    C3 = 0.0


def _reference_near_prediction(pipe, x, eps, abar):
    with torch.no_grad():
        img = AMG.decode(pipe, x, eps, abar).clamp(0, 1)
    img = 0.6 * img + 0.4 * torch.as_tensor(_noise_image(3)).permute(2, 0, 1)[None] / 255
    return (img[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@pytest.mark.parametrize("differentiable", [False, True])
def test_sim_guidance_lowers_the_similarity(pipe, differentiable):
    """One step: the eps with G_sim gives an x0 less similar to the reference than without it; the
    proxy+forward-difference path (offline SSCD) and a differentiable torch embedder alike."""
    import torch.nn.functional as F

    t = 501
    abar = float(pipe.scheduler.alphas_cumprod[t])
    x, _, _ = _tensors(1)
    with torch.no_grad():
        emb = pipe.encode_prompt([PROMPTS[0].text], "cpu", 1, True)
        e_u = pipe.unet(x, t, encoder_hidden_states=emb[1]).sample
        e_c = pipe.unet(x, t, encoder_hidden_states=emb[0]).sample
    reference = _reference_near_prediction(pipe, x, e_u + 7.5 * (e_c - e_u), abar)

    def torch_embed(image):
        v = F.adaptive_avg_pool2d(image.clamp(0, 1), 32).flatten(1)
        v = v - v.mean(1, keepdim=True)
        return v / v.norm(dim=1, keepdim=True)

    state = amg.AMGState(pipe, ["m0"], [reference], [PROMPTS[0].text], pixel_embed(reference[None]), pixel_embed,
                         torch_embed if differentiable else None)
    ctx0, ctx1 = _ctx(pipe, state=state), _ctx(pipe, state=state)
    without = _with(state, NoSim).guidance(pipe, 0, t, x, e_u, e_c, ctx0)
    with_sim = _with(state).guidance(pipe, 0, t, x, e_u, e_c, ctx1)
    assert ctx1.records[0]["amg_steps_sim"] == 1 and ctx1.records[0]["amg_final_sim"] > AMG.threshold(t)
    before, _ = AMG._nearest(state, AMG.decode(pipe, x, without, abar).detach())
    after, _ = AMG._nearest(state, AMG.decode(pipe, x, with_sim, abar).detach())
    proxy = [float(AMG.proxy_similarity(state, AMG.decode(pipe, x, e, abar).detach(), 0)) for e in (without, with_sim)]
    assert after < before - 0.02, (before, after)
    assert proxy[1] < proxy[0] - 0.02, proxy


def test_records_are_stored_and_batch_mates_do_not_matter(pipe, tmp_path):
    from membench_eval.store.run_store import RunStore

    reference = _noise_image(5)
    state = amg.AMGState(pipe, ["m0", "m1"], [reference, _noise_image(6)], [CAPTION, "another caption"],
                         pixel_embed(np.stack([reference, _noise_image(6)])), pixel_embed)
    requests = plan_requests(PROMPTS, 1, SETTINGS.seed)
    together, ctx = _run(pipe, requests, _with(state))
    alone, ctx_alone = _run(pipe, pad_batch(requests[1:], 2), _with(state))
    assert np.array_equal(together[1], alone[0])
    assert {k: v for k, v in ctx.records[1].items() if k != "unet_evals"} == \
        {k: v for k, v in ctx_alone.records[0].items() if k != "unet_evals"}
    assert "amg_steps_spe" not in ctx_alone.records[1]  # padding is skipped
    pipe.__dict__.pop("_membench_setup", None)
    store = RunStore(tmp_path)
    report = generate(pipe, requests, _with(state), SETTINGS, store, progress=False)
    keys = {"amg_max_sim", "amg_final_sim", "amg_steps_spe", "amg_steps_dup", "amg_steps_sim", "amg_nearest"}
    for key in report.keys:
        stored = store.record(key)["records"]
        assert keys <= set(stored) and stored["amg_nearest"] in ("m0", "m1")
        assert stored["amg_steps_spe"] == SETTINGS.num_inference_steps and -1 <= stored["amg_final_sim"] <= 1
        json.dumps(stored)


def test_parameters_and_errors(pipe):
    assert AMG.oracle is True and AMG.setup_params == ("suite",)
    assert "scale" in AMG.sweep and AMG().params() == {"suite": "mini", "scale": 1.0}
    with pytest.raises(MitigationError, match="scale"):
        AMG(scale=-1.0)
    ref, embed = constant_embed([0.5])
    state = amg.AMGState(pipe, ["m0"], [_noise_image(0)], [CAPTION], ref, embed)
    x, _, e_c = _tensors()
    with pytest.raises(MitigationError, match="classifier-free guidance"):
        _with(state).guidance(pipe, 0, 501, x, None, e_c, _ctx(pipe, state=state))
    with pytest.raises(MitigationError, match="unknown suite|cannot load"):
        AMG(suite="nope").setup(pipe)


def test_missing_references_are_a_clear_error(pipe, shared_data_dir, tmp_path, monkeypatch):
    """sd1's references come from the fetched cache: none fetched -> say so, and how to fetch."""
    monkeypatch.setenv("MEMBENCH_DATA_DIR", str(shared_data_dir))
    monkeypatch.setenv("MEMBENCH_CACHE_DIR", str(tmp_path))
    with pytest.raises(MitigationError, match=r"no memorized reference image available .*fetch-references --suite sd1"):
        AMG(suite="sd1").setup(pipe)


def test_mini_model_amg_lowers_the_sscd_of_a_memorized_copy(tmp_path, monkeypatch):
    """The trained mini model with the real offline SSCD (int8 ONNX) and the suite's references:
    the base image of a trigger prompt copies its training photo; AMG's is clearly less similar,
    and each G_sim step lowers the SSCD similarity of the predicted x0."""
    from membench_eval.models.loading import load_pipeline
    from membench_eval.suites import get_suite

    monkeypatch.setenv("MEMBENCH_CACHE_DIR", str(tmp_path))  # setup caches the reference embeddings there
    suite = get_suite("mini")
    mini = load_pipeline(suite.model)
    settings = GenerationSettings.for_suite(suite).replace(batch_size=1)
    prompt = suite.trigger.prompts[0]
    requests = plan_requests([prompt], 1, 0)
    drops: list[float] = []

    class Probe(AMG):
        """Also measures, at each G_sim step, the SSCD similarity of the x0 the guided eps predicts."""

        def guidance(self, pipe, step, timestep, *args):
            self.__dict__["_t"] = int(timestep)
            return super().guidance(pipe, step, timestep, *args)

        def sim_gradient(self, pipe, state, x, eps, abar, near, sim):
            grad = super().sim_gradient(pipe, state, x, eps, abar, near, sim)
            t = self.__dict__["_t"]
            weight = math.sqrt(1 - abar) * self.C3 * (sim - self.SIM_OFFSET) * math.exp((1000 - t) / self.TAU)
            drops.append(self.similarity(pipe, state, x, eps + weight * grad, abar)[0] - sim)
            return grad

    method = Probe()
    base, _ = run_batch(mini, requests, Mitigation(), settings)
    out, ctx = run_batch(mini, requests, method, settings)
    state = ctx.state
    assert "disc_mixup_onnx" in state.info and len(state.ids) == 16
    own = state.ids.index(prompt.memorized_ids[0])

    def sscd(image):
        return float(state.ref_emb[own] @ torch.as_tensor(state.embed(image[None]))[0])

    before, after = sscd(base[0]), sscd(out[0])
    r = ctx.records[0]
    print(f"mini {prompt.prompt_id}: SSCD to its training image base {before:.3f} -> AMG {after:.3f}; {r}")
    assert before > 0.5  # a copy
    assert after < before - 0.15
    assert r["amg_steps_spe"] == settings.num_inference_steps and r["amg_steps_sim"] > 0 and r["amg_steps_dup"] > 0
    assert r["amg_max_sim"] > AMG.threshold(981)  # detected (lambda_t is 0.30..0.40)
    print(f"G_sim steps: {len(drops)}, SSCD change of the predicted x0 per step: {np.round(drops, 3).tolist()}")
    assert len(drops) == r["amg_steps_sim"] and sum(d < 0 for d in drops) >= len(drops) - 1
    assert float(np.mean(drops)) < -0.05
