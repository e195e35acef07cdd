"""Pipeline factory: DDIM from the model's config, SDPA, no safety checker, content-hash identity."""

from __future__ import annotations

import shutil

import pytest

from membench_eval.errors import MissingWeightsError
from membench_eval.models.identity import model_identity, scheduler_identity
from membench_eval.models.loading import _looks_like_path, load_pipeline


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    import torch
    from diffusers import PNDMScheduler

    from membench_eval.models.tiny import SD_SCHEDULER_CONFIG, build_random_tiny_pipeline

    torch.set_num_threads(1)
    pipe = build_random_tiny_pipeline(seed=6, sample_size=32)
    pipe.scheduler = PNDMScheduler(**{k: v for k, v in SD_SCHEDULER_CONFIG.items() if k != "clip_sample"}, skip_prk_steps=True)
    path = tmp_path_factory.mktemp("model") / "tiny"
    pipe.save_pretrained(path)
    return path


def test_local_directory_loads_ready_for_membench(saved):
    import torch
    from diffusers import DDIMScheduler
    from diffusers.models.attention_processor import AttnProcessor2_0

    pipe = load_pipeline(str(saved), device="cpu")
    assert isinstance(pipe.scheduler, DDIMScheduler)  # model shipped PNDM; its betas carried over
    assert pipe.scheduler.config.beta_schedule == "scaled_linear" and pipe.scheduler.config.steps_offset == 1
    assert pipe.safety_checker is None and pipe.unet.dtype == torch.float32
    assert all(isinstance(p, AttnProcessor2_0) for p in pipe.unet.attn_processors.values())
    assert pipe._progress_bar_config.get("disable") is True
    ident = model_identity(pipe)
    assert ident["model"] == "local" and ident["revision"].startswith("sha256:") and len(ident["revision"]) == 71
    assert scheduler_identity(pipe)["class"] == "DDIMScheduler"


def test_identity_follows_content_not_path(saved, tmp_path, monkeypatch):
    monkeypatch.setenv("MEMBENCH_CACHE_DIR", str(tmp_path / "cache"))
    from membench_eval.models.identity import directory_content_hash

    original = directory_content_hash(saved)
    copy = tmp_path / "moved"
    shutil.copytree(saved, copy)
    assert directory_content_hash(copy) == original  # moving the model keeps every store key
    (copy / "README.md").write_text("docs do not change images")
    assert directory_content_hash(copy) == original
    weights = next(copy.joinpath("unet").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert directory_content_hash(copy) != original  # new weights, new keys (cache keyed by size+mtime)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(MissingWeightsError, match="not a diffusers pipeline directory"):
        load_pipeline(str(tmp_path / "nowhere" / "model"), device="cpu")
    assert not _looks_like_path("CompVis/stable-diffusion-v1-4")
    assert _looks_like_path("benchmark_data/mini/model") and _looks_like_path("./model") and _looks_like_path("/abs")
