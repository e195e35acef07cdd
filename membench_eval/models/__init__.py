"""Models: loading a text-to-image model and everything that knows what is inside it.

The public face (plugins and user code import from here, or from the modules named in
``PLUGIN_API_MODULES``; nothing else of ``membench_eval.models`` is API):

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
``PLUGIN_API_MODULES`` (checked by ``tests/test_plugin_imports.py``).

Imports here are light (no torch at import time).
"""

from membench_eval.models.attention import EndTokenCapture, cross_attention_probs
from membench_eval.models.family import (
    AttentionLayer, Conditioning, ModelFamily, Prediction, family_class, family_for, register_family,
)
from membench_eval.models.identity import is_model, model_identity, scheduler_identity
from membench_eval.models.loading import DEFAULT_MODEL, load_pipeline
from membench_eval.models.tokenizer import build_clip_tokenizer

# The modules a plugin file may import from membench_eval: the plugin faces, this package's face,
# the detection toolkit, and the helpers judged public. Everything else is internal and may move.
PLUGIN_API_MODULES = (
    "membench_eval.mitigation",
    "membench_eval.detector",
    "membench_eval.extraction_method",
    "membench_eval.errors",
    "membench_eval.prompt_edits",
    "membench_eval.paths",
    "membench_eval.models",
    "membench_eval.detection.toolkit",
    "membench_eval.suites",
    "membench_eval.metrics.sscd",
    "membench_eval.metrics.ssim",
    "membench_eval.metrics.preprocessing",
    "membench_eval.extraction.toolkit",
)

__all__ = [
    "DEFAULT_MODEL", "PLUGIN_API_MODULES", "AttentionLayer", "Conditioning", "EndTokenCapture", "ModelFamily",
    "Prediction", "build_clip_tokenizer", "cross_attention_probs", "family_class", "family_for", "is_model",
    "load_pipeline", "model_identity", "register_family", "scheduler_identity",
]
