"""Realistic Vision V5.1 (an SD 1.5 fine-tune): the SD family with an external VAE.

Why a module: the hub repository ``SG161222/Realistic_Vision_V5.1_noVAE`` ships its UNet and text
encoder for a ``StableDiffusionPipeline`` but is meant to run with ``stabilityai/sd-vae-ft-mse``
(its model card; SAIL's detect_mem.py, "sd_ver 99", loads it so), so loading the folder alone
decodes with the wrong VAE. ``load_pipeline`` asks ``external_vae_for(model)`` and hands the VAE to
the family's ``from_pretrained``; the VAE's id and commit join the model's identity (store keys).

Offline or pinned: ``$MEMBENCH_EXTERNAL_VAE`` names a local ``save_pretrained`` VAE folder to use
instead of the hub id (its content hash is then the identity); a hub download is recorded with the
snapshot commit it resolved to. A local model folder (``save_pretrained`` of the whole pipeline)
carries its own VAE and gets none added.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

RV_MODEL = "SG161222/Realistic_Vision_V5.1_noVAE"
# Hub model id -> (VAE hub id, revision: None = the default branch, recorded as its snapshot commit).
EXTERNAL_VAES: dict[str, tuple[str, str | None]] = {RV_MODEL: ("stabilityai/sd-vae-ft-mse", None)}
VAE_PATH_ENV = "MEMBENCH_EXTERNAL_VAE"


def external_vae_for(model: str) -> tuple[str, str | None] | None:
    """(VAE hub id, revision) a hub model must run with, else None."""
    return EXTERNAL_VAES.get(model)


def load_external_vae(vae_id: str, revision: str | None, dtype: "torch.dtype") -> tuple[Any, str]:
    """The VAE (``$MEMBENCH_EXTERNAL_VAE`` folder first, else the hub) and its identity string."""
    from diffusers import AutoencoderKL

    from membench_eval.errors import MissingWeightsError
    from membench_eval.models.identity import directory_content_hash

    local = os.environ.get(VAE_PATH_ENV)
    if local:
        folder = Path(local).expanduser()
        if not (folder / "config.json").is_file():
            raise MissingWeightsError(f"{folder}: ${VAE_PATH_ENV} is not a diffusers VAE folder (no config.json)")
        return AutoencoderKL.from_pretrained(str(folder), torch_dtype=dtype), "sha256:" + directory_content_hash(folder)
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(vae_id, revision=revision, allow_patterns=["*.json", "*.safetensors"]))
    except Exception as exc:  # network, auth, missing repo: the weights are not available here
        raise MissingWeightsError(
            f"could not get the VAE {vae_id!r} that {RV_MODEL} runs with: {type(exc).__name__}: {exc}. Download it "
            f"once (huggingface-cli download {vae_id}) or set ${VAE_PATH_ENV} to a local VAE folder") from exc
    commit = folder.name if folder.parent.name == "snapshots" else (revision or "main")
    return AutoencoderKL.from_pretrained(str(folder), torch_dtype=dtype, use_safetensors=True), f"{vae_id}@{commit}"
