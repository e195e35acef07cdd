"""PRSS (+ BE mask) on an untrained tiny SD pipeline: detection, SS, PR, per-image independence, BE.

Calibration on the miniature model (20 DDIM steps, g 7.5, run seed 0, the suite's 16 trigger
prompts x 10 images and 30 general prompts x 1; step-0 magnitude ||eps_c - eps_u||_2 of the
original prompt, per image):
  trigger  median 3.15 (p10 1.39, p90 4.46, max 6.29); general median 1.30 (p10 0.95, p90 2.75);
  AUC 0.87. Fraction above 1 / 2 / 3 / 5: trigger 0.98 / 0.82 / 0.58 / 0.03, general 0.77 / 0.20
  / 0.10 / 0.00. So the paper's l_target_ss = 1 flags most general images on mini; ~2-2.5 separates.
  BE-masked: trigger median 4.36, general 1.64 (AUC 0.87); above 1: 1.00 vs 0.90.
  During sampling the per-step magnitude (median over images, steps 0..19) falls to ~0.8 after
  step 0 and rises to ~7 at the last step for BOTH roles (trigger 3.2, 0.8, ..., 3.9, 5.3, 7.0;
  general 1.3, 1.5, ..., 4.2, 5.4, 7.1): l_target_pr 3 / mag_thres_pr 5 fire on the last ~4 steps.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from membench_eval.errors import MitigationError  # noqa: E402
from membench_eval.generation.batch import run_batch  # noqa: E402
from membench_eval.generation.settings import GenerationSettings  # noqa: E402
from membench_eval.mitigation import ImageRequest, Mitigation  # noqa: E402
from membench_eval.models.attention import EndTokenCapture  # noqa: E402
from tests.mitigation_files import hook_context, load_module  # noqa: E402

prss = load_module("prss")
STEPS = 3
SETTINGS = GenerationSettings(num_inference_steps=STEPS, height=64, width=64, guidance_scale=7.5, batch_size=2)
A = ImageRequest("p0", "an astronaut in a spacesuit", 0, seed=11)
B = ImageRequest("p1", "a cup of coffee on a table", 0, seed=12)
FORCED = dict(l_target_ss=0.0, l_target_pr=0.0, mag_thres_pr=1e-3)  # SS to the cap, PR at every step, s_pr = g


def _ctx(pipe, requests):
    ctx = hook_context(requests, STEPS)
    with torch.no_grad():
        cond, uncond = pipe.encode_prompt(ctx.prompts, ctx.device, 1, True)
    latents = torch.cat([torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(r.seed)) for r in requests])
    return ctx, cond, uncond, latents


def _step0(pipe, cond, uncond, latents):
    """(eps_u, eps_c) at the first timestep, computed here independently of the plugin."""
    pipe.scheduler.set_timesteps(STEPS)
    t = pipe.scheduler.timesteps[0]
    with torch.no_grad():
        return pipe.unet(latents, t, encoder_hidden_states=uncond).sample, pipe.unet(latents, t, encoder_hidden_states=cond).sample


def _diff(a, b):
    return max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(a, b))


def test_reanchoring_equals_the_paper_formula():
    g, lo, hi = 7.5, 3.0, 5.0
    unit = torch.full((1, 4, 2, 2), 0.25)  # ||unit||_2 = 1
    mags = torch.tensor([2.0, 3.0 + 1e-4, 4.0, 9.0])
    eps_u = torch.randn(4, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    eps_mod = eps_u + mags.view(-1, 1, 1, 1) * unit
    eps_orig = torch.randn(4, 4, 2, 2, generator=torch.Generator().manual_seed(1))
    out, fired = prss.reanchor(eps_u, eps_mod, eps_orig, g, lo, hi)
    assert fired.tolist() == [False, True, True, True]
    plain = eps_u + g * (eps_mod - eps_u)
    torch.testing.assert_close(out[0], plain[0])  # below l_target_pr: plain CFG on the modified prompt
    torch.testing.assert_close(out[1], plain[1], atol=1e-3, rtol=0)  # s_pr = 1 at the threshold: continuous
    scaler = (g * lo - hi) / (g - 1)
    s = (4.0 - scaler) / (hi - scaler) * g
    assert s == pytest.approx(4.25, abs=1e-3)
    torch.testing.assert_close(out[2], eps_orig[2] + s * (eps_mod[2] - eps_orig[2]) + (g - s) * (eps_mod[2] - eps_u[2]))
    # above mag_thres_pr s_pr is clipped at g: the original prompt is the anchor
    torch.testing.assert_close(out[3], eps_orig[3] + g * (eps_mod[3] - eps_orig[3]))
    assert not torch.allclose(out[3], plain[3])


def test_a_prompt_below_the_threshold_is_untouched(pipe):
    base, ctx0 = run_batch(pipe, [A, B], Mitigation(), SETTINGS)
    images, ctx = run_batch(pipe, [A, B], prss.PRSS(l_target_ss=1e9), SETTINGS)
    assert _diff(base, images) == 0
    for rec, rec0 in zip(ctx.records, ctx0.records):
        assert rec["prss_triggered"] is False and rec["prss_pr_steps"] == 0 and rec["prss_ss_iterations"] == 0
        assert rec["prss_modified_magnitude"] == rec["prss_initial_magnitude"]
        assert rec["unet_evals"] == rec0["unet_evals"] + 2  # only the step-0 detection


def test_triggered_prompt_gets_a_lower_magnitude_embedding(pipe):
    ctx, cond, uncond, latents = _ctx(pipe, [A, B])
    out, out_uncond = prss.PRSS(l_target_ss=0.0).edit_embeddings(pipe, cond, uncond, latents, ctx)
    assert out_uncond is uncond
    torch.testing.assert_close(out[:, 0], cond[:, 0])  # BOS kept
    assert not torch.allclose(out[:, 1:], cond[:, 1:])
    eps_u, eps_orig = _step0(pipe, cond, uncond, latents)
    _, eps_mod = _step0(pipe, out, uncond, latents)
    for i, rec in enumerate(ctx.records):
        initial, final = (eps_orig[i] - eps_u[i]).norm().item(), (eps_mod[i] - eps_u[i]).norm().item()
        assert rec["prss_triggered"] and rec["prss_ss_iterations"] == prss.PRSS.MAX_ITERATIONS
        assert rec["prss_initial_magnitude"] == pytest.approx(initial, rel=1e-4)
        assert rec["prss_modified_magnitude"] == pytest.approx(final, rel=1e-4)
        assert final < initial
    # PR anchors on the ORIGINAL prompt's prediction, at every step
    t = pipe.scheduler.timesteps[0]
    m = prss.PRSS(**FORCED)
    ctx._prss["triggered"] = [True, True]
    got = m.guidance(pipe, 0, int(t), latents, eps_u, eps_mod, ctx)
    torch.testing.assert_close(got, prss.reanchor(eps_u, eps_mod, eps_orig, 7.5, 0.0, 1e-3)[0])
    torch.testing.assert_close(got, eps_orig + 7.5 * (eps_mod - eps_orig))


def test_reanchoring_fires_per_step_and_costs_one_row_per_step(pipe):
    base, ctx0 = run_batch(pipe, [A], Mitigation(), SETTINGS)
    fired, ctx = run_batch(pipe, [A], prss.PRSS(**FORCED), SETTINGS)
    quiet, ctx_q = run_batch(pipe, [A], prss.PRSS(l_target_ss=0.0, l_target_pr=1e6, mag_thres_pr=2e6), SETTINGS)
    rec, rec_q = ctx.records[0], ctx_q.records[0]
    assert rec["prss_pr_steps"] == STEPS and rec_q["prss_pr_steps"] == 0
    # detection 2 + SS 11 (10 AdamW steps and the final check) + PR 1 per step
    assert rec["unet_evals"] == rec_q["unet_evals"] == 2 * STEPS + 2 + 11 + STEPS
    assert _diff(fired, quiet) > 0 and _diff(quiet, base) > 0  # PR changes the image; SS alone too


def test_a_rows_result_does_not_depend_on_the_rest_of_the_batch(pipe):
    m = prss.PRSS(**FORCED)
    other = ImageRequest("pad", "a red bicycle leaning on a wall", 0, seed=99, padding=True)
    first, ctx1 = run_batch(pipe, [A, B], m, SETTINGS)
    second, ctx2 = run_batch(pipe, [A, other], m, SETTINGS)
    assert ctx1.records[1]["prss_triggered"] and not ctx2.records[1]["prss_triggered"]
    assert np.array_equal(first[0], second[0])
    drop = lambda r: {k: v for k, v in r.items() if k != "unet_evals"}  # noqa: E731
    assert drop(ctx1.records[0]) == drop(ctx2.records[0])


def _candidate_file(tmp_path, prompt, texts, fmt="json"):
    path = tmp_path / f"cands.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps({prompt: texts}))
    elif fmt == "jsonl":
        path.write_text(json.dumps({"caption": prompt, **{f"caption{j + 1}": t for j, t in enumerate(texts)}}) + "\n")
    else:
        path.write_text("prompt,candidate\n" + "".join(f'"{prompt}","{t}"\n' for t in texts))
    return str(path)


def test_candidates_file_picks_the_first_candidate_under_the_target(pipe, tmp_path):
    texts = ["a dog", "an old map of europe", "a bowl of soup", "a tall glass building", "purple flowers", "snow"]
    ctx, cond, uncond, latents = _ctx(pipe, [A])
    with torch.no_grad():
        embs = pipe.encode_prompt(texts, ctx.device, 1, False)[0]
    eps_u, eps_o = _step0(pipe, cond, uncond, latents)
    m0 = (eps_o - eps_u).norm().item()
    mags = [(_step0(pipe, e[None], uncond, latents)[1] - eps_u).norm().item() for e in embs]
    order = sorted(range(len(texts)), key=mags.__getitem__, reverse=True)  # largest first, lowest last
    texts, embs, mags = [texts[j] for j in order], embs[order], [mags[j] for j in order]
    target = mags[-2]  # the last two are under it: the first of them (not the lowest) must win
    assert m0 > target
    for fmt in ("json", "jsonl", "csv"):
        assert prss.load_candidates(_candidate_file(tmp_path, A.prompt, texts, fmt)) == {A.prompt: texts}
    m = prss.PRSS(l_target_ss=target, candidates=_candidate_file(tmp_path, A.prompt, texts))
    ctx, cond, uncond, latents = _ctx(pipe, [A])
    out, _ = m.edit_embeddings(pipe, cond, uncond, latents, ctx)
    assert ctx.records[0]["prss_ss_candidate"] == len(texts) - 1
    torch.testing.assert_close(out[0], embs[-2])
    assert ctx.records[0]["prss_modified_magnitude"] == pytest.approx(target, rel=1e-4)
    # nothing under the target: the lowest, here possibly the original (index 0)
    m = prss.PRSS(l_target_ss=min(mags + [m0]) / 2, candidates=_candidate_file(tmp_path, A.prompt, texts))
    ctx, cond, uncond, latents = _ctx(pipe, [A])
    out, _ = m.edit_embeddings(pipe, cond, uncond, latents, ctx)
    lowest = int(np.argmin([m0] + mags))
    assert ctx.records[0]["prss_ss_candidate"] == lowest
    torch.testing.assert_close(out[0], cond[0] if lowest == 0 else embs[lowest - 1])
    # a prompt missing from the file keeps its embedding (no candidates), but is triggered
    ctx, cond, uncond, latents = _ctx(pipe, [B])
    out, _ = m.edit_embeddings(pipe, cond, uncond, latents, ctx)
    assert ctx.records[0]["prss_triggered"] and ctx.records[0]["prss_ss_candidate"] == 0
    torch.testing.assert_close(out, cond)


def test_end_token_capture_matches_explicit_attention(pipe):
    name = next(k for k in pipe.unet.attn_processors if k.startswith("down_blocks.0") and ".attn2." in k)
    attn = pipe.unet.get_submodule(name.rsplit(".", 1)[0])
    gen = torch.Generator().manual_seed(3)
    hidden, enc = torch.randn(4, 256, attn.query_dim, generator=gen), torch.randn(4, 77, 32, generator=gen)
    sink, eos = [], [5, 9]
    with torch.no_grad():
        got = EndTokenCapture(attn.processor, eos, sink)(attn, hidden, enc)
        expected = attn.processor(attn, hidden, enc)
        q = attn.to_q(hidden).view(4, 256, attn.heads, -1).transpose(1, 2)
        k = attn.to_k(enc).view(4, 77, attn.heads, -1).transpose(1, 2)
        probs = (q @ k.transpose(-1, -2) * attn.scale).softmax(-1).mean(1)  # (4, 256, 77)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(sink[0], torch.stack([probs[2, :, 5], probs[3, :, 9]]))  # cond half, EOS column


def test_be_mask_weights_the_detection_magnitude_and_restores_processors(pipe):
    before = dict(pipe.unet.attn_processors)
    ctx, cond, uncond, latents = _ctx(pipe, [A, B])
    states = [g.get_state() for g in ctx.generators]
    m = prss.PRSS(l_target_ss=1e9, be_mask=True)
    mask = m.be_masks(pipe, cond, uncond, latents, ctx)
    assert tuple(mask.shape) == (2, 1, 16, 16) and bool((mask > 0).all() and (mask <= 1).all())
    assert all(pipe.unet.attn_processors[k] is v for k, v in before.items())
    assert all(torch.equal(g.get_state(), s) for g, s in zip(ctx.generators, states))
    single = m.be_masks(pipe, cond[:1], uncond[:1], latents[:1], _ctx(pipe, [A])[0])
    torch.testing.assert_close(single[0], mask[0])
    m.edit_embeddings(pipe, cond, uncond, latents, ctx)
    eps_u, eps_c = _step0(pipe, cond, uncond, latents)
    for i, rec in enumerate(ctx.records):
        masked = ((eps_c[i] - eps_u[i]) * mask[i]).norm().item() / mask[i].mean().item()
        assert rec["prss_initial_magnitude"] == pytest.approx(masked, rel=1e-4)
        assert rec["prss_initial_magnitude"] != pytest.approx((eps_c[i] - eps_u[i]).norm().item(), rel=1e-3)
    _, ctx_be = run_batch(pipe, [A], m, SETTINGS)
    assert ctx_be.records[0]["unet_evals"] == 2 * STEPS + 2 + 2 * STEPS  # + the mask's prior run


def test_guidance_off_and_bad_parameters(pipe):
    ctx, cond, _, latents = _ctx(pipe, [A])
    ctx.do_classifier_free_guidance = False
    out, out_uncond = prss.PRSS(l_target_ss=0.0).edit_embeddings(pipe, cond, None, latents, ctx)
    assert out is cond and out_uncond is None and ctx.records[0] == {}
    with pytest.raises(MitigationError, match="mag_thres_pr"):
        prss.PRSS(l_target_pr=5.0, mag_thres_pr=5.0)
    with pytest.raises(MitigationError, match="does not exist"):
        prss.PRSS(candidates="/nonexistent/cands.json")
