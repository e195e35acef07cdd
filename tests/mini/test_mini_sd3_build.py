"""The mini-sd3 build's stages (benchmark_data/mini_sd3): exact conditioning, seeded and resumable.

Tiny sizes and step counts: these check the machinery the long training relies on (the trained
conditioning is what the pipeline feeds; a killed training resumes to the same weights), not the
model's quality.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

DATA = Path(__file__).resolve().parents[2] / "benchmark_data"


@pytest.fixture(scope="module")
def stages():
    dirs = [str(DATA / "mini_sd3"), str(DATA / "mini")]
    sys.path[:0] = dirs
    try:
        import model_stage
        import train_stage
        import zero_tokens
    finally:
        for d in dirs:
            sys.path.remove(d)
    return SimpleNamespace(model=model_stage, train=train_stage, zero=zero_tokens)


@pytest.fixture(scope="module")
def tokenizer():
    from membench_eval.models.tokenizer import build_clip_tokenizer

    return build_clip_tokenizer()


def _parts(stages, layers: int = 2):
    torch.manual_seed(3)
    transformer = stages.model.build_transformer(layers=layers)
    with torch.no_grad():  # diffusers zero-initialises the output projections: make every path count
        for p in transformer.parameters():
            p.normal_(0.0, 0.05)
    return transformer.eval(), [stages.model.build_text_encoder(1), stages.model.build_text_encoder(1)]


def test_one_biased_zero_token_equals_the_pipelines_256(stages, tokenizer):
    """What training feeds (1 zero token, log 256 bias) gives the prediction generation gets (256)."""
    transformer, encoders = _parts(stages)
    ids = stages.model.tokenize(tokenizer, ["a cup of espresso on a red saucer", ""])
    x, t = torch.randn(2, 16, 16, 16), torch.tensor([250.0, 900.0])
    with torch.no_grad():
        full = transformer(x, *stages.model.encode(encoders, ids, 256), t).sample
        previous, _ = stages.zero.install(transformer, 256)
        one = transformer(x, *stages.model.encode(encoders, ids, 1), t).sample
        transformer.set_attn_processor(previous)
        unbiased = transformer(x, *stages.model.encode(encoders, ids, 1), t).sample
    assert (full - one).abs().max() < 1e-4
    assert (full - unbiased).abs().max() > 100 * (full - one).abs().max()  # the bias is what makes them equal


def test_training_conditioning_is_the_sd3_pipelines(stages, tokenizer):
    from diffusers import AutoencoderKL, StableDiffusion3Pipeline

    transformer, encoders = _parts(stages, layers=1)
    vae = AutoencoderKL(latent_channels=16, block_out_channels=(8,), norm_num_groups=8)
    pipe = StableDiffusion3Pipeline(transformer=transformer, scheduler=stages.model.build_scheduler(), vae=vae,
                                    text_encoder=encoders[0], tokenizer=tokenizer, text_encoder_2=encoders[1],
                                    tokenizer_2=tokenizer, text_encoder_3=None, tokenizer_3=None)
    prompts = ["falcon 9 rocket on the launch pad at dusk", ""]
    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt(prompts, None, None, do_classifier_free_guidance=False)
        ours, ours_pooled = stages.model.encode(encoders, stages.model.tokenize(tokenizer, prompts))
    assert torch.equal(embeds, ours) and torch.equal(pooled, ours_pooled)


def test_timesteps_are_sd3s_shifted_logit_normal(stages):
    s = stages.train.sample_sigmas(torch.Generator().manual_seed(0), 20000)
    assert 0.73 < float(s.median()) < 0.77  # 3u / (1 + 2u) at u = 0.5
    assert 0.80 < float((s > 0.5).float().mean()) < 0.88  # high noise dominates (the mini's lesson)


@pytest.mark.slow  # three short trainings of a 1-block model with SD-vocabulary encoders
def test_killed_training_resumes_to_the_same_weights(stages, tokenizer, tmp_path):
    """4 steps straight vs 2 steps, 'killed', then resumed from the checkpoint: identical weights."""
    sys.path.insert(0, str(DATA / "mini"))
    try:
        from dataset import MEMORIZED
    finally:
        sys.path.remove(str(DATA / "mini"))
    data = SimpleNamespace(memorized=[(src, None) for src in MEMORIZED],
                           general=[(None, f"a small red circle on a blue background {i}") for i in range(8)])
    latents = torch.randn(len(MEMORIZED) + 8, 16, 16, 16, generator=torch.Generator().manual_seed(0))

    def run(stop_after: int, ckpt: Path):
        transformer, encoders = _parts(stages, layers=1)
        stages.train.train_flow(transformer, encoders, tokenizer, latents, data, 4, 0, batch=4, checkpoint=ckpt,
                                checkpoint_every=2, log=lambda *_: None, stop_after=stop_after)
        return transformer

    straight = run(4, tmp_path / "a.pt")
    run(2, tmp_path / "b.pt")
    resumed = run(4, tmp_path / "b.pt")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    fresh = _parts(stages, layers=1)[0].state_dict()
    changed = any(not torch.equal(a, fresh[k]) for k, a in straight.state_dict().items())
    assert changed  # training moved the weights, so equality is not vacuous
