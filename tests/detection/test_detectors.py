"""The bundled detectors (detectors/*.py): direction on controlled UNets, cost, independence, mini AUC.

Controlled UNets, built on the untrained tiny pipeline (``build_random_tiny_pipeline(seed=0)``):

* ``MarkedUNet``: eps(x, t, p) = tiny_unet(x, t, p) + a(p) tanh(x), with a(p) set per prompt by the
  test (0 for the empty prompt), so eps_c - eps_u = (the random UNet's own difference) + a tanh(x):
  the text-conditional push grows with a and has a Jacobian (a sech^2(x)), as a memorized prompt's
  would. Wen's, BE's and SAIL's scores must grow with a.
* ``controlled_attention``: every cross-attention layer's logits over the 77 tokens are set
  directly: BOS (an attention sink) L = 6, the prompt's first four word tokens ("trigger tokens")
  a(p), the rest 0. A larger a moves attention off BOS onto the trigger tokens, which is how Ren et
  al. describe memorization; the entropy (their score, unnegated) is then known in closed form.

The miniature-model AUCs (16 trigger vs 30 general prompts, run seed 0 per-prompt seeds, the
suite's 20 DDIM steps, g 7.5, 64x64) were measured with this file's code; the test asserts each
with a margin below the measured value (and, where the measured value is below 0.5, above it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from membench_eval.detector import DetectionContext, DetectionRequest  # noqa: E402
from membench_eval.plugins.detectors import load_detector  # noqa: E402
from membench_eval.errors import DetectorError  # noqa: E402
from membench_eval.generation.batch import count_unet_rows  # noqa: E402

DETECTORS = Path(__file__).resolve().parents[2] / "detectors"
STEPS = 4
UNMARKED = ["a red car parked on a street", "two dogs running on a beach", "a bowl of fruit on a kitchen table",
            "a mountain lake at sunrise", "an old man reading a newspaper", "a city skyline at night"]
MARKED = ["an astronaut floating above the earth", "a cup of coffee with latte art", "a tabby cat with green eyes",
          "a rocket on the launch pad", "a painting of a sunflower field", "a vintage camera on a wooden desk"]
STRENGTHS = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]  # a per MARKED prompt
BOS_LOGIT = 6.0
TRIGGERS = 4


def load(name: str, **params):
    return load_detector(DETECTORS / f"{name}.py", params=params)


def context(prompts, steps: int = STEPS, seeds=None, guidance_scale: float = 7.5, size: int = 64) -> DetectionContext:
    seeds = seeds or [1000 + 7 * i for i in range(len(prompts))]
    reqs = [DetectionRequest(f"p{i}", p, s) for i, (p, s) in enumerate(zip(prompts, seeds))]
    return DetectionContext(requests=reqs, prompts=list(prompts), num_inference_steps=steps,
                            guidance_scale=guidance_scale, height=size, width=size, device=torch.device("cpu"),
                            generators=[torch.Generator().manual_seed(s) for s in seeds], records=[{} for _ in reqs])


def run(det, pipe, prompts, **kw) -> np.ndarray:
    return np.array(det.score(pipe, context(prompts, **kw)))


class _Strengths:
    """a(p) per row of encoder_hidden_states, by exact match against the embeddings of known prompts."""

    def __init__(self, pipe, strengths: dict[str, float]):
        with torch.no_grad():
            self.embeds = pipe.encode_prompt(list(strengths), "cpu", 1, False)[0]
        self.values = torch.tensor(list(strengths.values()))

    def __call__(self, ehs: "torch.Tensor") -> "torch.Tensor":
        dist = (ehs.detach()[:, None].float() - self.embeds[None]).pow(2).flatten(2).sum(-1)  # (rows, known)
        best, idx = dist.min(dim=1)
        return torch.where(best < 1e-6, self.values[idx], torch.zeros_like(best))


class MarkedUNet(torch.nn.Module):
    """eps = inner(x, t, p) + a(p) tanh(x) (see the module docstring); config and processors are the inner UNet's."""

    def __init__(self, inner, strength: _Strengths):
        super().__init__()
        self.inner, self.strength = inner, strength

    config = property(lambda self: self.inner.config)
    dtype = property(lambda self: self.inner.dtype)
    device = property(lambda self: self.inner.device)
    attn_processors = property(lambda self: self.inner.attn_processors)

    def set_attn_processor(self, processors) -> None:
        self.inner.set_attn_processor(processors)

    def forward(self, sample, timestep, encoder_hidden_states, return_dict=True, **kwargs):
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        out = self.inner(sample, timestep, encoder_hidden_states=encoder_hidden_states, **kwargs).sample
        a = self.strength(encoder_hidden_states).to(sample.dtype).view(-1, 1, 1, 1)
        eps = out + a * torch.tanh(sample)
        return UNet2DConditionOutput(sample=eps) if return_dict else (eps,)  # as the UNet's own forward


class _Ones(torch.nn.Module):
    """to_q: a query of ones at every position."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, h):
        return torch.ones(*h.shape[:-1], self.dim, dtype=h.dtype, device=h.device)


class _Logits(torch.nn.Module):
    """to_k: keys that make q.k * scale = the chosen logit of each token (BOS L, triggers a, rest 0)."""

    def __init__(self, dim: int, head_dim: int, scale: float, strength: _Strengths):
        super().__init__()
        self.dim, self.factor, self.strength = dim, 1.0 / (scale * head_dim), strength

    def forward(self, enc):
        z = torch.zeros(enc.shape[:2], dtype=enc.dtype, device=enc.device)
        z[:, 0] = BOS_LOGIT
        z[:, 1:1 + TRIGGERS] = self.strength(enc).to(enc.dtype)[:, None]
        return (z * self.factor)[..., None].expand(*z.shape, self.dim)


def expected_entropy(a: float) -> float:
    z = np.zeros(77)
    z[0], z[1:1 + TRIGGERS] = BOS_LOGIT, a
    p = np.exp(z) / np.exp(z).sum()
    return float(-(p * np.log(p)).sum())


@pytest.fixture(scope="module")
def tiny(make_tiny_pipeline):
    return make_tiny_pipeline(seed=0)


@pytest.fixture(scope="module")
def marked(make_tiny_pipeline):
    pipe = make_tiny_pipeline(seed=0)
    pipe.unet = MarkedUNet(pipe.unet, _Strengths(pipe, dict(zip(MARKED, STRENGTHS))))
    return pipe


@pytest.fixture(scope="module")
def controlled_attention(make_tiny_pipeline):
    from diffusers.models.attention_processor import Attention

    pipe = make_tiny_pipeline(seed=0)
    strength = _Strengths(pipe, dict(zip(MARKED, [0.5, 1.0, 2.0, 3.0, 4.0, 5.0])))
    for name, module in pipe.unet.named_modules():
        if isinstance(module, Attention) and name.endswith("attn2"):
            dim = module.to_q.out_features
            module.to_q = _Ones(dim)
            module.to_k = _Logits(dim, dim // module.heads, module.scale, strength)
    return pipe, strength


# --- direction: each score moves the way its paper says ---------------------------------------


@pytest.mark.parametrize("name,params", [
    ("wen_single", {}),
    ("wen_single", {"seed": -1}),
    ("wen_trajectory", {"images": 1}),
    ("bright_ending", {"images": 1}),
    ("bright_ending", {"images": 1, "steps": 0}),
    ("sail_sharpness", {"images": 1}),
])
def test_score_grows_with_the_conditional_push(marked, name, params):
    scores = run(load(name, **params), marked, UNMARKED + MARKED)
    base, pushed = scores[: len(UNMARKED)], scores[len(UNMARKED):]
    assert np.all(np.isfinite(scores))
    assert pushed.min() > base.max(), (base, pushed)
    assert np.all(np.diff(pushed) > 0), pushed  # ordered like a


@pytest.mark.parametrize("mode", ["E", "D"])
def test_ren_entropy_rises_when_attention_leaves_the_bos_sink(controlled_attention, mode):
    pipe, strength = controlled_attention
    ctx = context(UNMARKED + MARKED)
    scores = np.array(load("ren_entropy", mode=mode, layer=-1 if mode == "D" else 0).score(pipe, ctx))
    want = [expected_entropy(0.0)] * len(UNMARKED) + [expected_entropy(float(a)) for a in strength.values]
    # Static attention (no dependence on x or t): D's padding-entropy change is 0, so D = E = H.
    np.testing.assert_allclose(scores, want, rtol=1e-4)
    assert np.all(np.diff(scores[len(UNMARKED):]) > 0) and scores[len(UNMARKED):].min() > scores[0]
    assert ctx.records[0]["ren_tokens"] == len(pipe.tokenizer(UNMARKED[0]).input_ids)
    if mode == "D":
        assert abs(ctx.records[0]["ren_padding_change"]) < 1e-5


# --- cost and per-prompt independence ---------------------------------------------------------


@pytest.mark.parametrize("name,params,rows", [
    ("wen_single", {}, lambda n: n + 1),
    ("wen_single", {"seed": -1}, lambda n: 2 * n),
    ("wen_trajectory", {"images": 2}, lambda n: n * 2 * 2 * STEPS),
    ("ren_entropy", {"layer": 0}, lambda n: n),
    ("ren_entropy", {"mode": "D"}, lambda n: n * 2 * STEPS),
    ("sail_sharpness", {"images": 2}, lambda n: n * 4 * 2),
    ("sail_sharpness", {"images": 1, "steps": 2}, lambda n: n * 4 * 2),
    ("bright_ending", {"images": 2}, lambda n: n * 2 * 2 * STEPS),
])
def test_cost_and_independence(tiny, name, params, rows):
    det = load(name, **params)
    prompts = [UNMARKED[0], MARKED[0], UNMARKED[1]]
    seeds = [11, 12, 13]
    with count_unet_rows(tiny) as counter:
        together = run(det, tiny, prompts, seeds=seeds)
    assert counter.rows == rows(3)
    alone = run(det, tiny, prompts[1:2], seeds=seeds[1:2])
    swapped = run(det, tiny, prompts[::-1], seeds=seeds[::-1])
    np.testing.assert_allclose(alone, together[1:2], rtol=1e-4)
    np.testing.assert_allclose(swapped, together[::-1], rtol=1e-4)


def test_ren_layer_out_of_range_and_bad_params(tiny):
    with pytest.raises(DetectorError, match="cross-attention layers"):
        load("ren_entropy", layer=4).score(tiny, context(UNMARKED[:1]))  # the tiny UNet has 4 attn2 layers
    for name, params in [("ren_entropy", {"mode": "X"}), ("wen_trajectory", {"images": 0}),
                         ("bright_ending", {"steps": -1}), ("sail_sharpness", {"seed": -2}),
                         ("token_count", {"jaccard": 0.0})]:
        with pytest.raises(DetectorError):
            load(name, **params)


def test_token_count(tmp_path):
    det = load("token_count")
    assert det.needs_model is False
    prompts = ["a cat", "official nasa portrait of astronaut eileen collins", "word " * 100]
    ctx = context(prompts)
    assert det.score(None, ctx) == [2.0, 7.0, 75.0]  # BOS/EOS not counted; truncated at 77
    assert [r["tokens"] for r in ctx.records] == [2, 7, 75]
    captions = tmp_path / "captions.txt"
    captions.write_text("A cat.\na cat\na black cat\nofficial NASA portrait of astronaut Eileen Collins\n", encoding="utf-8")
    dup = load("token_count", captions=str(captions))
    assert dup.score(None, context(prompts)) == [0.5, 0.25, 0.0]


# --- the miniature model ----------------------------------------------------------------------

# (detector, params, measured AUC, margin). Settings lighter than the defaults where the default
# costs over ~10 s here; the defaults' measured AUCs are in the comments.
MINI_AUCS = [
    ("wen_single", {}, 0.952, 0.03),
    ("wen_trajectory", {"images": 1}, 0.177, 0.08),  # inverted on mini, as measured (images=4: see README)
    ("ren_entropy", {}, 0.777, 0.05),  # mode E, layer 3
    ("ren_entropy", {"mode": "D"}, 0.871, 0.05),
    ("sail_sharpness", {}, 0.883, 0.05),  # images=4
    ("bright_ending", {"images": 1}, 0.865, 0.05),  # images=4 (default): 0.931
    ("token_count", {}, 0.197, 0.05),  # trigger prompts are shorter than general ones on mini
]


@pytest.mark.slow
def test_mini_auc():
    from sklearn.metrics import roc_auc_score

    from membench_eval.models.loading import load_pipeline
    from membench_eval.generation.seeding import image_seed
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.suites import get_suite

    torch.set_num_threads(1)
    suite = get_suite("mini")
    pipe = load_pipeline(suite.model, device="cpu")
    settings = GenerationSettings.for_suite(suite)
    prompts = list(suite.trigger.prompts) + list(suite.general.prompts)
    labels = [1] * len(suite.trigger.prompts) + [0] * len(suite.general.prompts)
    for name, params, measured, margin in MINI_AUCS:
        det = load(name, **params)
        ctx = DetectionContext(
            requests=[DetectionRequest(p.prompt_id, p.text, image_seed(0, p.prompt_id, 0)) for p in prompts],
            prompts=[p.text for p in prompts], num_inference_steps=settings.num_inference_steps,
            guidance_scale=settings.guidance_scale, height=settings.height, width=settings.width,
            device=torch.device("cpu"), records=[{} for _ in prompts],
        )
        auc = roc_auc_score(labels, det.score(pipe if det.needs_model else None, ctx))
        if measured >= 0.5:
            assert auc >= measured - margin, (det.label(), auc)
        else:  # an inverted detector stays inverted
            assert auc <= measured + margin, (det.label(), auc)
