"""Generation: settings, per-image seeding, the pipeline factory and the resumable loop.

Imports here are light (no torch at import time); heavy libraries load inside the functions.
"""

from membench_eval.generation.engine import GenerationInterrupted, GenerationReport, generate, request_keys
from membench_eval.generation.pipeline import DEFAULT_MODEL, load_pipeline, model_identity
from membench_eval.generation.seeding import image_seed, plan_requests
from membench_eval.generation.settings import GenerationSettings

__all__ = [
    "DEFAULT_MODEL", "GenerationInterrupted", "GenerationReport", "GenerationSettings", "generate", "image_seed",
    "load_pipeline", "model_identity", "plan_requests", "request_keys",
]
