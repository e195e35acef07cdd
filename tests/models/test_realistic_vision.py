"""Realistic Vision loads as an SD pipeline with the external VAE, which joins its identity."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_rv_hub_id_gets_the_external_vae(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from diffusers import AutoencoderKL

    from membench_eval.models import loading, model_identity
    from membench_eval.models.realistic_vision import RV_MODEL, VAE_PATH_ENV, external_vae_for
    from membench_eval.paths import MINI_DIR

    model = MINI_DIR / "model"  # stands for the hub snapshot of RV's UNet and text encoder
    vae = AutoencoderKL.from_pretrained(str(model / "vae"))
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(0.5)  # other weights than the folder's: which VAE was loaded is visible
    vae.save_pretrained(tmp_path / "vae")
    monkeypatch.setattr(loading, "_download", lambda name, revision: model)
    monkeypatch.setenv(VAE_PATH_ENV, str(tmp_path / "vae"))
    pipe = loading.load_pipeline(RV_MODEL, device="cpu")
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    for (name, got), want in zip(pipe.vae.state_dict().items(), vae.state_dict().values()):
        assert torch.equal(got, want), name
    ident = model_identity(pipe)
    assert ident["model"] == RV_MODEL and ident["vae"].startswith("sha256:")
    assert ident["revision"].endswith("+vae:" + ident["vae"])  # the VAE is in every store key
    assert external_vae_for(str(model)) is None  # a local folder keeps its own VAE
