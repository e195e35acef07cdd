"""Generation: settings, per-image seeding and the resumable loop (loading a model: ``membench_eval.models``).

Imports here are light (no torch at import time); heavy libraries load inside the functions.
"""

from membench_eval.generation.engine import GenerationInterrupted, GenerationReport, generate, request_keys
from membench_eval.generation.seeding import image_seed, plan_requests
from membench_eval.generation.settings import GenerationSettings

__all__ = [
    "GenerationInterrupted", "GenerationReport", "GenerationSettings", "generate", "image_seed", "plan_requests",
    "request_keys",
]
