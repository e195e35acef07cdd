"""Detection signal (single-step and trajectory), ROC metrics and prompt-file I/O (no trained model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from membench_eval.detection.prompt_files import read_prompt_file, write_scores
from membench_eval.detection.roc import detection_metrics
from membench_eval.errors import DataError

PROMPTS = ["an astronaut riding a horse", "a cup of coffee", "", "the no limits business woman podcast"]


@pytest.fixture(scope="module")
def pipe(make_tiny_pipeline):
    return make_tiny_pipeline(seed=3)


def test_single_step_matches_direct_unet_call_at_t999(pipe):
    import torch

    from membench_eval.detection.signal import single_step_scores

    scores = single_step_scores(pipe, PROMPTS, seed=7, batch_size=2)
    # Recompute one prompt by hand: latent from seed 7, t = 999, squared L2 of the difference.
    latent = torch.randn((1, 4, 16, 16), generator=torch.Generator("cpu").manual_seed(7))
    with torch.no_grad():
        emb = lambda p: pipe.encode_prompt([p], "cpu", 1, False)[0]  # noqa: E731
        eu = pipe.unet(latent, 999, encoder_hidden_states=emb("")).sample
        ec = pipe.unet(latent, 999, encoder_hidden_states=emb(PROMPTS[1])).sample
    assert scores[1] == pytest.approx(float(((ec - eu) ** 2).sum()), rel=1e-4)
    assert scores[2] == pytest.approx(0.0, abs=1e-6)  # the empty prompt is the unconditional one
    assert (np.delete(scores, 2) > 0).all()


def test_single_step_independent_of_batching_and_order_but_not_of_latent(pipe):
    from membench_eval.detection.signal import single_step_scores

    a = single_step_scores(pipe, PROMPTS, seed=1, batch_size=50)
    b = single_step_scores(pipe, PROMPTS[::-1], seed=1, batch_size=1)[::-1]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    c = single_step_scores(pipe, PROMPTS, seed=2, batch_size=50)
    assert not np.allclose(a, c, rtol=1e-3)


def test_trajectory_score_independent_of_batching_and_zero_for_empty_prompt(pipe):
    from membench_eval.detection.signal import trajectory_scores

    kw = dict(num_images=2, num_inference_steps=3, guidance_scale=7.5, seed=0)
    a = trajectory_scores(pipe, PROMPTS[:3], batch_size=3, **kw)
    b = np.array([trajectory_scores(pipe, [p], batch_size=1, **kw)[0] for p in PROMPTS[:3]])
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    assert a[2] == pytest.approx(0.0, abs=1e-6)
    assert a[0] > 0 and a[1] > 0
    more = trajectory_scores(pipe, PROMPTS[:1], num_images=3, num_inference_steps=3, seed=0)
    assert more[0] != pytest.approx(a[0], rel=1e-6)  # a third image changes the average


def test_trajectory_loop_is_the_pipelines_own_denoising(pipe):
    """The trajectory score watches the same DDIM + CFG run generation performs: same final latents."""
    import torch

    from membench_eval.detection.signal import encode_prompts, guided_trajectory, latent_geometry, seeded_latents

    lat = seeded_latents(pipe, [5, 6], latent_geometry(pipe))
    expected = pipe(prompt=["a cat", "a dog"], latents=lat.clone(), num_inference_steps=3, guidance_scale=7.5,
                    output_type="latent").images
    with torch.no_grad():
        final, norms = guided_trajectory(pipe, encode_prompts(pipe, ["a cat", "a dog"]), encode_prompts(pipe, [""]),
                                         lat.clone(), 3, 7.5)
    torch.testing.assert_close(final, expected)
    assert norms.shape == (2,) and (norms > 0).all()
    with torch.no_grad():  # per step: the same run, every step's norms, whose mean is the score
        final_steps, steps = guided_trajectory(pipe, encode_prompts(pipe, ["a cat", "a dog"]),
                                               encode_prompts(pipe, [""]), lat.clone(), 3, 7.5, per_step=True)
    torch.testing.assert_close(final_steps, expected)
    assert steps.shape == (3, 2)
    torch.testing.assert_close(steps.mean(dim=0), norms)


def test_detection_metrics_against_hand_computed_values():
    m = detection_metrics([0.9, 0.4], [0.5, 0.1])
    assert m.auc == pytest.approx(0.75)  # 3 of 4 (pos, neg) pairs ordered correctly
    assert m.n_memorized == 2 and m.mean_nonmemorized == pytest.approx(0.3)
    perfect = detection_metrics([5, 6, 7], [0.01 * i for i in range(100)])
    assert perfect.auc == 1.0 and perfect.tpr_at_fpr == 1.0
    # 200 negatives in [0, 1]: at 1% FPR at most 2 of them may pass the threshold.
    neg = np.linspace(0, 1, 200)
    pos = np.array([0.995, 0.9999, 2.0, 3.0, 0.5])
    m = detection_metrics(pos, neg)
    assert m.tpr_at_fpr == pytest.approx(4 / 5)  # only the negative 1.0 beats 0.995: FPR 1/200; 0.5 needs FPR 50%
    with pytest.raises(ValueError):
        detection_metrics([], [1.0])


def test_prompt_files_roundtrip_and_errors(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("first prompt\n\nsecond prompt\n", encoding="utf-8")
    assert read_prompt_file(txt) == ["first prompt", "second prompt"]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(json.dumps({"caption": "a"}) + "\n" + json.dumps({"prompt": "b"}) + "\n", encoding="utf-8")
    assert read_prompt_file(jsonl) == ["a", "b"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"caption": "a"}) + "\n" + json.dumps({"url": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl, row 2"):
        read_prompt_file(bad)
    out = write_scores(tmp_path / "s.csv", ["a", "b"], [1.5, 2.5], extra={"label": ["m", "n"]})
    assert out.read_text(encoding="utf-8").splitlines() == ["prompt,score,label", "a,1.5,m", "b,2.5,n"]
    assert read_prompt_file(out) == ["a", "b"]
    rows = [json.loads(x) for x in write_scores(tmp_path / "s.jsonl", ["a"], [3.0]).read_text().splitlines()]
    assert rows == [{"prompt": "a", "score": 3.0}]


def test_reads_wen_and_webster_lists(shared_data_dir):
    mem = read_prompt_file(shared_data_dir / "webster" / "sdv1_500_memorized.jsonl")
    non = read_prompt_file(shared_data_dir / "webster" / "nonmem500.txt")
    assert len(mem) == 500 and mem[0] == "The No Limits Business Woman Podcast"
    assert len(non) >= 499 and non[0] == "A serene beach at sunrise"
