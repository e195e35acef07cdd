"""Load the bundled method files (mitigations/*.py) by path, as the harness does."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

MITIGATIONS_DIR = Path(__file__).resolve().parent.parent / "mitigations"


def load_module(name: str):
    """Import ``mitigations/<name>.py`` as a module (cached, so classes compare equal)."""
    key = f"_membench_test_mitigations_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, MITIGATIONS_DIR / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def hook_context(requests, steps: int, guidance_scale: float = 7.5, size: int = 64, **fields):
    """A ``BatchContext`` as the engine builds it for ``requests`` (one generator and one RNG per
    image from its seed, empty records), for calling a method's hooks directly in a test."""
    import random

    import torch

    from membench_eval.mitigation import BatchContext

    requests = list(requests)
    return BatchContext(
        requests=requests, prompts=[r.prompt for r in requests], num_inference_steps=steps,
        guidance_scale=guidance_scale, height=size, width=size, device=torch.device("cpu"),
        generators=[torch.Generator().manual_seed(r.seed) for r in requests],
        rngs=[random.Random(r.seed) for r in requests], records=[{} for _ in requests],
        do_classifier_free_guidance=guidance_scale > 1, **fields,
    )
