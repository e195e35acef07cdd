"""The budgeted white-box attack (Finding Dori's small embedding perturbations) against a model edit.

On the untrained tiny pipeline, a NeMo-style edit: NeMo's own ``NeuronBlockingProcessor`` zeroing
half of every down/mid cross-attention value layer's neurons (a fixed choice; NeMo's search is
tested in tests/mitigations/test_mitigations_nemo.py). The budgeted attack must climb the signal
through the edited model while every token stays within R x its own norm of the encoded prompt.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from membench_eval.attack.whitebox import optimise_embedding, project_to_budget  # noqa: E402
from membench_eval.generation.settings import GenerationSettings  # noqa: E402
from membench_eval.mitigation import Mitigation  # noqa: E402
from membench_eval.models import family_for  # noqa: E402
from tests.mitigation_files import load_module  # noqa: E402

nemo = load_module("nemo")
PROMPT = "an astronaut floating above the earth"
BUDGET = 0.1


class HalfBlocked(Mitigation):
    """Zeroes the first half of every down/mid cross-attention value neuron, for every row (a model edit)."""

    name = "half_blocked"

    def cross_attention_processor(self, pipe, ctx):  # noqa: ANN001, ANN201
        originals = {id(layer.module): layer.module.processor for layer in family_for(pipe).attention_layers()}
        keep = {}
        for _, attn in nemo.value_layers(pipe):
            mask = torch.ones(2, 1, attn.to_v.out_features)
            mask[:, :, : attn.to_v.out_features // 2] = 0
            keep[id(attn)] = mask
        return nemo.NeuronBlockingProcessor(originals, keep)


def test_projection_clips_each_token_to_its_budget():
    origin = torch.randn(1, 5, 8)
    norms = origin.norm(dim=-1, keepdim=True)
    far = origin + 10 * torch.randn(1, 5, 8)
    out = project_to_budget(far, origin, norms, BUDGET)
    assert torch.allclose((out - origin).norm(dim=-1), BUDGET * norms[..., 0], rtol=1e-5)
    near = origin + 1e-4 * torch.randn(1, 5, 8)
    assert torch.equal(project_to_budget(near, origin, norms, BUDGET), near)  # inside the ball: unchanged


def test_budgeted_attack_climbs_the_signal_through_the_edited_model(make_tiny_pipeline):
    pipe = make_tiny_pipeline(seed=0)
    settings = GenerationSettings(num_inference_steps=2, height=32, width=32, seed=0, batch_size=1)
    _, plain = optimise_embedding(pipe, Mitigation(), PROMPT, seed=3, settings=settings, steps=0)
    embeds, history = optimise_embedding(pipe, HalfBlocked(), PROMPT, seed=3, settings=settings, steps=4,
                                         budget=BUDGET, lr=0.05)
    assert history[0] != pytest.approx(plain[0], rel=1e-3)  # the edit is installed in the attacker's signal
    assert history[-1] > 1.2 * history[0], history
    with torch.no_grad():
        start = pipe.encode_prompt([PROMPT], "cpu", 1, False)[0]
    delta = (embeds - start).norm(dim=-1)
    assert bool((delta <= BUDGET * start.norm(dim=-1) * (1 + 1e-4)).all())
    assert float(delta[0, 0]) == 0.0 and float(delta[0, 1:].max()) > 0.5 * BUDGET * float(start[0, 1:].norm(dim=-1).min())
