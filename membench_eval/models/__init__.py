"""Models: loading a text-to-image model and everything that knows what is inside it.

The public face (plugins and user code import from here; nothing else of
``membench_eval.models`` is API):

- ``load_pipeline(model, device=, dtype=, compile=)``: a hub id or a ``save_pretrained`` folder,
  loaded into its family by its ``model_index.json`` ``_class_name``; ``DEFAULT_MODEL``.
- ``family_for(pipe) -> ModelFamily``: the model's operations: ``encode`` / ``encode_for_guidance``
  (a ``Conditioning``), ``predict`` (one batched denoiser call, a ``Prediction`` with its kind:
  epsilon, v_prediction or flow), ``guidance_vector`` (conditional minus unconditional
  prediction), ``step``, ``initial_latents``, ``decode``, ``attention_layers`` /
  ``attention_processors`` (where attention processors go, as ``AttentionLayer``), ``identity``.
- ``model_identity(pipe)``, ``is_model(pipe, model)``, ``scheduler_identity(pipe)``: what keys a
  model in the store (and per-model data of methods).
- Attention helpers: ``cross_attention_probs`` (softmax attention over text tokens),
  ``EndTokenCapture`` (a processor wrapper recording end-token maps).
- ``build_clip_tokenizer()``: SD 1.x's CLIP tokenizer, built offline.

Bundled plugins (``mitigations/``, ``detectors/``, ``extractions/``) import only the modules in
``PLUGIN_API_MODULES`` (checked by ``tests/plugin/test_plugin_imports.py``).

Imports here are light (no torch at import time).
"""

from membench_eval.models.attention import EndTokenCapture, cross_attention_probs
from membench_eval.models.family import (
    AttentionLayer, Conditioning, ModelFamily, Prediction, family_class, family_for, register_family,
)
from membench_eval.models.identity import is_model, model_identity, scheduler_identity
from membench_eval.models.loading import DEFAULT_MODEL, load_pipeline
from membench_eval.models.tokenizer import build_clip_tokenizer

from membench_eval.models import sd as _sd  # noqa: E402,F401  (registers the built-in SD 1.x / 2.x family)
from membench_eval.models import flux as _flux  # noqa: E402,F401  (FLUX.1 dev / schnell)
from membench_eval.models import sd3 as _sd3  # noqa: E402,F401  (SD3 / SD3.5)
from membench_eval.models import sdxl as _sdxl  # noqa: E402,F401  (SDXL)
from membench_eval.models import deepfloyd_if as _deepfloyd_if  # noqa: E402,F401  (DeepFloyd IF stage I)

# The modules a plugin file may import from membench_eval. Faces: the plugin API and this
# package (versioned with the engine: ``plugins.source.API_MODULES``). Toolkit modules: helpers
# with a stable contract that plugins build on; a plugin's store keys hash the ones it imports
# (``plugins.source``), so their code is imported directly, not through a re-exporting face.
PLUGIN_API_MODULES = (
    # faces
    "membench_eval.mitigation",
    "membench_eval.detector",
    "membench_eval.extraction_method",
    "membench_eval.errors",
    "membench_eval.models",
    "membench_eval.models.tokenizer",  # SD's CLIP tokenizer, rebuilt offline (RTA, token_count)
    "membench_eval.hyperparams",
    # foundations
    "membench_eval.paths",
    "membench_eval.prompt_edits",
    # loading another method file (a gated method wraps a bundled one)
    "membench_eval.plugins.mitigations",
    # detection toolkit: Wen's signal (encode_prompts, latent_geometry, seeded_latents,
    # guided_trajectory, single_step_scores, trajectory_scores) and the calibrated gate
    "membench_eval.detection.signal",
    "membench_eval.detection.gate",
    # data: suites, prompt files, downloads, reference images
    "membench_eval.suites",
    "membench_eval.suites.loaders",
    "membench_eval.fetch.download",
    "membench_eval.suites.references",
    # metrics a method may score with
    "membench_eval.metrics.sscd",
    "membench_eval.metrics.ssim",
    "membench_eval.metrics.preprocessing",
    # extraction toolkit: sampling, the classifier and near-copy clustering
    "membench_eval.extraction.sampling",
    "membench_eval.extraction.classifier",
    "membench_eval.extraction.clustering",
)

__all__ = [
    "DEFAULT_MODEL", "PLUGIN_API_MODULES", "AttentionLayer", "Conditioning", "EndTokenCapture", "ModelFamily",
    "Prediction", "build_clip_tokenizer", "cross_attention_probs", "family_class", "family_for", "is_model",
    "load_pipeline", "model_identity", "register_family", "scheduler_identity",
]
