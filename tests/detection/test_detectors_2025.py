"""The 2025-2026 detectors: direction on controlled UNets, the anisotropy score's alignment term, and
the latent-update norm's separation on the miniature model.

* ``MarkedUNet`` (test_detectors.py): eps = tiny_unet + a(p) tanh(x); every new detector's score must
  grow with a.
* ``AlignedUNet``: eps_c = eps_u + k * unit(alpha(p) u_hat + (1 - alpha(p)) q_hat), with u_hat the
  unconditional prediction and q_hat a fixed random field, both normalised per latent pixel over
  channels: the guidance norm is k for every prompt, its alignment with eps_u grows with alpha.
  The anisotropy score's norm term must stay at k and its cosine term (and the score) must rise.

Mini (16 trigger vs 30 general prompts, shared latent seed 0, 20 DDIM steps, g 7.5, 64x64),
measured with this code: latent_update (steps 1) AUC 0.967; trigger median 0.1201 vs general
median 0.0749 (first update norm per element).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from membench_eval.detection.roc import detection_metrics  # noqa: E402
from tests.detection.test_detectors import MARKED, UNMARKED, _Strengths, context, load, marked, run  # noqa: E402,F401

ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]
K = 3.0


@pytest.mark.parametrize("name", ["anisotropy", "early_curvature", "latent_update"])
def test_scores_grow_with_the_text_conditional_push(marked, name):  # noqa: F811
    det = load(name)
    scores = run(det, marked, MARKED)
    assert np.all(np.diff(scores) > 0), (name, scores)
    assert scores.min() > run(det, marked, UNMARKED).max(), name


class AlignedUNet(torch.nn.Module):
    """eps_c = eps_u + K unit(alpha u_hat + (1 - alpha) q_hat) (module docstring); alpha by prompt row."""

    def __init__(self, inner, empty: "torch.Tensor", alphas: _Strengths):
        super().__init__()
        self.inner, self.empty, self.alphas = inner, empty, alphas  # alphas: alpha + 1 per prompt, 0 = unknown

    config = property(lambda self: self.inner.config)
    dtype = property(lambda self: self.inner.dtype)
    device = property(lambda self: self.inner.device)

    def forward(self, sample, timestep, encoder_hidden_states, return_dict=True, **kwargs):
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        eps_u = self.inner(sample, timestep, encoder_hidden_states=self.empty.expand(sample.shape[0], -1, -1)).sample
        q = torch.randn(sample.shape[1:], generator=torch.Generator().manual_seed(5))[None]
        unit = lambda v: v / v.norm(dim=1, keepdim=True).clamp_min(1e-8)  # noqa: E731
        out = []
        for i, code in enumerate(self.alphas(encoder_hidden_states).tolist()):
            if code == 0:  # the empty prompt
                out.append(eps_u[i])
                continue
            alpha = code - 1
            d = alpha * unit(eps_u[i:i + 1]) + (1 - alpha) * unit(q)
            out.append(eps_u[i] + K * (d / d.norm())[0])
        eps = torch.stack(out)
        return UNet2DConditionOutput(sample=eps) if return_dict else (eps,)


def test_anisotropy_score_rises_with_alignment(make_tiny_pipeline):
    pipe = make_tiny_pipeline(seed=0)
    prompts = MARKED[: len(ALPHAS)]
    with torch.no_grad():
        empty = pipe.encode_prompt([""], "cpu", 1, False)[0]
    pipe.unet = AlignedUNet(pipe.unet, empty, _Strengths(pipe, {p: a + 1 for p, a in zip(prompts, ALPHAS)}))
    det = load("anisotropy")
    ctx = context(prompts, steps=4, size=32)
    scores = np.array(det.score(pipe, ctx))
    norms = np.array([r["anisotropy_norm"] for r in ctx.records])
    cos = np.array([r["anisotropy_cos"] for r in ctx.records])
    np.testing.assert_allclose(norms, K, rtol=1e-4)
    assert np.all(np.diff(cos) > 0) and cos[-1] > 0.99 and abs(cos[0]) < 0.2, cos
    assert np.all(np.diff(scores) > 0), scores


def test_latent_update_separates_trigger_from_general_on_mini(mini):
    suite, pipe, settings = mini
    pos, neg = [p.text for p in suite.trigger.prompts], [p.text for p in suite.general.prompts]
    det = load("latent_update")
    scores = run(det, pipe, pos + neg, steps=settings.num_inference_steps, size=settings.height)
    m = detection_metrics(scores[: len(pos)], scores[len(pos):])
    assert m.auc >= 0.93, m.auc  # measured 0.967
    assert np.median(scores[: len(pos)]) > 1.4 * np.median(scores[len(pos):])  # measured 0.1201 vs 0.0749 (1.60x)
