"""NeMo (Hintersdorf et al. 2024): statistics, z-score selection, the blocking processor, per-prompt
caching, on an untrained tiny SD pipeline; one detection + search on the miniature model.

Calibration on the mini model (16 trigger, 30 general prompts; single-scale SSIM on its 16x16
latents; ``nemo_score`` = max pairwise SSIM over the 10 fixed seeds):
- trigger 0.125-0.665 (median 0.501), general 0.107-0.346 (median 0.140). The paper's 0.428 flags
  9/16 trigger and 0/30 general prompts, so it is kept on mini. A threshold in (0.346, 0.377)
  would flag 11/16, within 0.031 of the highest general prompt; the other 5 triggers (0.125-0.302)
  are inside the general range. (The paper's recipe, mean + 1 std of the general prompts'
  pairwise SSIMs, gives 0.106 on mini and would flag every prompt.)
- Search, ``criterion="same_seed"`` (the reference's SSIM(unblocked, blocked), same seed): never
  reaches 0.428 on mini. Even the empty prompt's noise is at SSIM 0.62-0.86 from a trigger
  prompt's for the same seed, and blocking every down/mid value neuron at 0.65-0.91: x_T dominates
  this model's t_1 noise. The loop ends at theta 1 (SSIM 0.64-0.998, 65-95 neurons) and refines
  against the SSIM reached: 21-52 neurons, 178-1150 UNet rows per prompt; with them blocked the
  detection score drops below 0.428 for 7 of the 9 flagged prompts (to 0.136-0.423; not 0.574, 0.453).
- ``criterion="pairwise"`` (stop when the blocked model's detection score is <= threshold)
  converges for 8 of the 9 with 1-31 neurons (90-990 rows); the 9th (0.435) ends with none.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from membench_eval.generation.batch import cached_setup, count_unet_rows, cross_attention, run_batch  # noqa: E402
from membench_eval.generation.seeding import plan_requests  # noqa: E402
from membench_eval.generation.settings import GenerationSettings  # noqa: E402
from membench_eval.mitigation import ImageRequest, Mitigation  # noqa: E402
from membench_eval.suites.types import Prompt  # noqa: E402
from tests.mitigation_files import hook_context, load_module  # noqa: E402

nemo = load_module("nemo")
STATS = ["a photo of a dog on a sofa", "a red car parked on a street", "the sea at night", "a bowl of fruit"]
A, B = "an astronaut in a spacesuit", "a cup of coffee on a table"
SETTINGS = GenerationSettings(num_inference_steps=3, height=64, width=64, seed=3, batch_size=4)


class FastNeMo(nemo.NeMo):
    """The same code with a short schedule: 4 seeds, theta 3.25 then 3.0 (the end), so the tiny
    model's search (which never reaches the threshold) is two tests plus the refinement."""

    name = "nemo_fast"
    SEEDS = 4
    THETA_START = 3.25
    THETA_MIN = 3.0


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("MEMBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    path = tmp_path_factory.mktemp("prompts") / "stats.txt"
    path.write_text("\n".join(STATS) + "\n")
    yield str(path)
    mp.undo()


def _ctx(prompts, state, guidance=7.5, padding=0):
    reqs = [ImageRequest(f"p{k}", p, 0, seed=k) for k, p in enumerate(prompts)]
    reqs += [ImageRequest("pad", prompts[0], 0, seed=99, padding=True)] * padding
    return hook_context(reqs, 3, guidance_scale=guidance, state=state)


def _direct(pipe, text):
    ids = pipe.tokenizer([text], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        emb = pipe.text_encoder(ids)[0]
        return [m.to_v(emb)[0].abs().mean(0) for _, m in nemo.value_layers(pipe)]


def test_statistics_equal_a_direct_computation_and_survive_a_new_process(pipe, env, monkeypatch, tmp_path):
    path = tmp_path / "two.txt"
    path.write_text(f"{STATS[0]}\n{STATS[1]}\n")
    monkeypatch.setenv("MEMBENCH_CACHE_DIR", str(tmp_path / "cache"))
    state = nemo.NeMo(stats_prompts=str(path)).setup(pipe)
    assert state.layers == ["down_blocks.0.attentions.0.transformer_blocks.0.attn2",
                            "mid_block.attentions.0.transformer_blocks.0.attn2"]
    per_prompt = [_direct(pipe, STATS[0]), _direct(pipe, STATS[1])]
    for layer, width in enumerate([32, 64]):
        acts = torch.stack([per_prompt[0][layer], per_prompt[1][layer]])
        assert state.means[layer].shape == state.stds[layer].shape == (width,)
        torch.testing.assert_close(state.means[layer], acts.mean(0), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(state.stds[layer], acts.std(0), atol=1e-5, rtol=1e-5)
    # A fresh instance (a new process) reads the disk cache and computes nothing.
    monkeypatch.setattr(nemo, "activation_statistics", lambda *a: (_ for _ in ()).throw(AssertionError("recomputed")))
    again = nemo.NeMo(stats_prompts=str(path)).setup(pipe)
    for x, y in zip(state.means + state.stds, again.means + again.stds):
        assert torch.equal(x, y)
    # A file that no longer matches its sha256 is recomputed (and rewritten).
    (target,) = (tmp_path / "cache" / "nemo").glob("*.safetensors")
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    calls = []
    monkeypatch.setattr(nemo, "activation_statistics", lambda *a: calls.append(1) or (state.means, state.stds))
    nemo.NeMo(stats_prompts=str(path)).setup(pipe)
    assert calls == [1]


def test_z_score_selection_picks_the_planted_outlier_then_adds_top_k(pipe):
    acts = _direct(pipe, A)
    stds = [torch.full_like(a, 0.5) for a in acts]
    means = [a.clone() for a in acts]
    means[1][17] -= 10 * 0.5  # neuron 17 of the mid layer: z = 10, every other neuron z = 0
    assert nemo.initial_selection(acts, means, stds, theta=5.0, k=0) == [[], [17]]
    assert nemo.initial_selection(acts, means, stds, theta=11.0, k=0) == [[], []]
    top = [a.topk(2).indices.tolist() for a in acts]
    picked = nemo.initial_selection(acts, means, stds, theta=5.0, k=2)
    assert picked[0] == top[0] and picked[1] == list(dict.fromkeys([17] + top[1]))


def test_processor_zeroes_exactly_the_chosen_value_channels_of_flagged_rows(pipe, env):
    m = nemo.NeMo(stats_prompts=env)
    state = m.setup(pipe)
    chosen = [[3, 7], [5, 60]]
    state.decisions[(m.threshold, m.criterion, A)] = nemo.Decision(0.9, True, chosen, 4, 0.3, 0.3, 0)
    ctx = _ctx([A, B], state)  # not flagged: B (its detection runs: 10 rows)
    processor = m.cross_attention_processor(pipe, ctx)
    assert ctx.records[0]["nemo_layers"] == dict(zip(state.layers, chosen)) and not ctx.records[1]["nemo_flagged"]
    for layer, (_, attn) in enumerate(nemo.value_layers(pipe)):
        g = torch.Generator().manual_seed(layer)
        hidden = torch.randn(4, 16, attn.to_q.in_features, generator=g)  # rows [uncond A, uncond B, cond A, cond B]
        enc = torch.randn(4, 77, attn.to_k.in_features, generator=g)
        with torch.no_grad():
            base = attn(hidden, encoder_hidden_states=enc)
            with cross_attention(pipe, processor):
                out = attn(hidden, encoder_hidden_states=enc)
            q, k, v = attn.to_q(hidden), attn.to_k(enc), attn.to_v(enc)
            v[[0, 2]] = v[[0, 2]].index_fill(2, torch.tensor(chosen[layer]), 0.0)  # A's rows, both CFG halves
            heads = lambda t: t.view(4, t.shape[1], attn.heads, -1).transpose(1, 2)  # noqa: E731
            probs = (heads(q) @ heads(k).transpose(-1, -2) * attn.scale).softmax(-1)
            manual = attn.to_out[0]((probs @ heads(v)).transpose(1, 2).reshape(4, 16, -1))
        torch.testing.assert_close(out, manual, atol=1e-5, rtol=1e-5)
        assert torch.equal(out[[1, 3]], base[[1, 3]])  # the unflagged prompt: bitwise untouched
        assert (out[[0, 2]] - base[[0, 2]]).abs().max() > 1e-4
    assert all(type(p).__name__ != "NeuronBlockingProcessor" for p in pipe.unet.attn_processors.values())


def test_unflagged_prompts_give_the_base_images_and_flagged_ones_change(pipe, env):
    prompts = [Prompt("p0", A), Prompt("p1", B)]
    requests = plan_requests(prompts, 2, SETTINGS.seed)
    base, base_ctx = run_batch(pipe, requests, Mitigation(), SETTINGS)
    off = nemo.NeMo(threshold=1.0, stats_prompts=env)  # SSIM < 1: nothing flagged
    images, ctx = run_batch(pipe, requests, off, SETTINGS)
    assert all(np.array_equal(a, b) for a, b in zip(base, images))
    assert [r["nemo_flagged"] for r in ctx.records] == [False] * 4
    assert all(r["nemo_search_unet_rows"] == 10 for r in ctx.records)  # detection: 10 seeds x 1 step
    assert ctx.records[0]["unet_evals"] == base_ctx.records[0]["unet_evals"] + 2 * 10 / 4
    # Flag A by hand: A's images change, B's stay byte for byte those of base, in the same batch.
    on = nemo.NeMo(threshold=0.999, stats_prompts=env)
    state = cached_setup(pipe, on)
    state.decisions[(on.threshold, on.criterion, A)] = nemo.Decision(0.9, True, [[1, 2, 3], [4, 5]], 5, 0.3, 0.3, 0)
    images, ctx = run_batch(pipe, requests, on, SETTINGS)
    for a, b, r in zip(base, images, requests):
        assert np.array_equal(a, b) == (r.prompt == B)
    assert [r["nemo_neurons"] for r in ctx.records] == [5, 5, 0, 0]
    json.dumps(ctx.records)  # stored as JSON


@pytest.fixture(scope="module")
def searched(pipe, env):
    """Two prompts searched together (with a padding row), then B alone on a fresh state."""
    m = FastNeMo(threshold=0.0, stats_prompts=env)  # everything flagged; the search never converges
    both = _ctx([A, B], m.setup(pipe), padding=1)
    with count_unet_rows(pipe) as counter:
        m.cross_attention_processor(pipe, both)
    alone = _ctx([B], FastNeMo(threshold=0.0, stats_prompts=env).setup(pipe))
    FastNeMo(threshold=0.0, stats_prompts=env).cross_attention_processor(pipe, alone)
    return m, both, alone, counter.rows


def test_search_follows_the_reference_loop_and_refinement(pipe, searched):
    m, both, _, rows = searched
    state = both.state
    assert rows == sum(r["nemo_search_unet_rows"] for r in both.records[:2]) and "nemo_flagged" not in both.records[2]
    for k, text in enumerate([A, B]):
        d, record = m.decide(pipe, state, text), both.records[k]
        assert record["nemo_flagged"] and d.flagged
        # After a failed test the reference lowers theta and raises k, and stops once theta is at
        # its minimum without testing that: the set kept is the last one tested (theta 3.25, k=0).
        acts = [a[0] for a in nemo.layer_activations([a for _, a in nemo.value_layers(pipe)],
                                                     pipe.encode_prompt([text], "cpu", 1, False)[0])]
        initial = nemo.initial_selection(acts, state.means, state.stds, 3.25, 0)
        assert record["nemo_initial_neurons"] == sum(len(b) for b in initial)
        assert all(set(b) <= set(i) for b, i in zip(d.neurons, initial))  # refinement only removes
        # Refinement keeps a removal only if the similarity stays below the one the loop reached.
        assert d.final_similarity < d.initial_similarity or d.neurons == initial


def test_neurons_do_not_depend_on_the_batch_and_are_cached_per_prompt(pipe, searched):
    m, both, alone, _ = searched
    assert alone.records[0] == both.records[1]
    ctx = _ctx([B, A], both.state)
    with count_unet_rows(pipe) as counter:
        m.cross_attention_processor(pipe, ctx)
    assert counter.rows == 0
    assert ctx.records == both.records[1::-1]


def test_parameters_are_validated():
    with pytest.raises(nemo.MitigationError, match="threshold"):
        nemo.NeMo(threshold=1.5)
    with pytest.raises(nemo.MitigationError, match="criterion"):
        nemo.NeMo(criterion="loose")


@pytest.mark.slow
def test_mini_trigger_is_flagged_and_its_neurons_remove_the_detection(env):
    """On the memorizing mini model: a trigger prompt is flagged, a general one is not, and with
    the neurons found (criterion 'pairwise') blocked through the generation processor, the
    detection score falls to <= the threshold."""
    from membench_eval.models.loading import load_pipeline
    from membench_eval.suites import get_suite

    suite = get_suite("mini")
    pipe = load_pipeline(suite.model, device="cpu")
    m = nemo.NeMo(criterion="pairwise")
    state = m.setup(pipe)
    assert state.source == "mini"
    trigger = next(p.text for p in suite.trigger.prompts if p.text.startswith("a single cell"))
    general = suite.general.prompts[0].text
    d = m.decide(pipe, state, trigger)
    assert d.flagged and d.score > m.threshold and 0 < sum(len(b) for b in d.neurons) <= 10
    assert not m.decide(pipe, state, general).flagged
    # Independent check: the generation processor on 10 rows of the fixed seeds (no CFG).
    ctx = _ctx([trigger] * 10, state, guidance=1.0)
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    scheduler.set_timesteps(m.DETECTION_STEPS)
    t = scheduler.timesteps[1]
    x = torch.randn((10, 16, 16, 16), generator=torch.Generator().manual_seed(1))
    emb = pipe.encode_prompt([trigger] * 10, "cpu", 1, False)[0]
    scores = []
    for processor in (None, m.cross_attention_processor(pipe, ctx)):
        with torch.no_grad(), cross_attention(pipe, processor):
            diff = pipe.unet(x, t, encoder_hidden_states=emb).sample - x
        lo, hi = diff.amin((2, 3), keepdim=True), diff.amax((2, 3), keepdim=True)
        scores.append(float(nemo.max_pairwise_similarity((diff - lo) / (hi - lo)).max()))
    assert scores[0] == pytest.approx(d.score, abs=1e-5) and scores[0] > m.threshold
    assert scores[1] == pytest.approx(d.final_similarity, abs=1e-5) and scores[1] <= m.threshold
