"""The mini build's stages (benchmark_data/mini): seeded, resumable, and the data it promises.

Tiny step counts: these check the machinery (a killed diffusion stage resumes to the same weights;
the dataset keeps its held-out prompts out of training), not the model's quality, which
tests/mini/test_mini_quality.py measures on the shipped files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("skimage")
torch = pytest.importorskip("torch")

MINI = Path(__file__).resolve().parents[2] / "benchmark_data" / "mini"


@pytest.fixture(scope="module")
def stages():
    sys.path.insert(0, str(MINI))
    try:
        import dataset
        import diffusion_stage
    finally:
        sys.path.remove(str(MINI))
    return dataset, diffusion_stage


def test_dataset_holds_out_general_prompts_and_paraphrases(stages):
    dataset, _ = stages
    data = dataset.build_dataset(0)
    trained = {c for src, _ in data.memorized for c in src.captions} | {c for _, c in data.general}
    assert len(data.memorized) >= 15 and len({src.name for src, _ in data.memorized}) == len(data.memorized)
    assert not trained & set(data.general_prompts)
    assert not trained & {src.paraphrase for src, _ in data.memorized}
    assert not trained & {c for _, c in data.compositional_pool}
    assert len({src.copies for src, _ in data.memorized}) == 3  # duplication tiers: a dose-response
    assert dataset.build_dataset(0).general_prompts == data.general_prompts  # seeded


def test_killed_diffusion_stage_resumes_to_the_same_weights(stages, tmp_path):
    """4 steps straight vs 2 steps, 'killed', then resumed from the checkpoint: identical weights."""
    dataset, diffusion_stage = stages
    from membench_eval.models.tokenizer import build_clip_tokenizer

    data = dataset.build_dataset(0)
    data.general = data.general[:40]
    latents = torch.randn(len(data.memorized) + len(data.general), 16, 16, 16, generator=torch.Generator().manual_seed(0))
    tok = build_clip_tokenizer()

    def fresh():
        torch.manual_seed(1)
        return diffusion_stage.build_unet(), diffusion_stage.build_text_encoder()

    def run(steps_done: int, ckpt: Path):
        unet, text = fresh()
        diffusion_stage.train_diffusion(unet, text, tok, latents, data, 4, 0, batch=4, checkpoint=ckpt,
                                        checkpoint_every=2, log=lambda *_: None, stop_after=steps_done)
        return unet, text

    straight, _ = run(4, tmp_path / "a.pt")
    run(2, tmp_path / "b.pt")  # stops after 2 steps with a checkpoint: a crash loses nothing
    resumed, _ = run(4, tmp_path / "b.pt")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
