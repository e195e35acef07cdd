"""Content-addressed image keys: SHA-256 of the canonical JSON of everything that sets the pixels.

Key fields: model id and revision (a content hash for local directories), scheduler class and
config, method name and parameters, prompt id and the ORIGINAL prompt text (before any rewrite by
the method: the rewrite is a function of the method, its parameters and the seed, all in the key),
the image seed, steps, guidance scale, height and width. Batch size, device, worker and time are
not in the key: images do not depend on them (device/dtype are recorded in the metadata row).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

KEY_SCHEME = "membench-key/v1"


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept, finite numbers only: equal content, equal text."""

    def check(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"non-finite number {value!r} cannot be part of a store key")
        if isinstance(value, dict):
            return {str(k): check(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [check(v) for v in value]
        return value

    return json.dumps(check(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def key_fields(
    *,
    model: str,
    revision: str,
    scheduler: dict[str, Any],
    method: str,
    params: dict[str, Any],
    prompt_id: str,
    prompt: str,
    seed: int,
    num_inference_steps: int,
    guidance_scale: float,
    height: int,
    width: int,
) -> dict[str, Any]:
    """The dict an image key is the hash of (also stored in the image's metadata row)."""
    return {
        "scheme": KEY_SCHEME,
        "model": str(model),
        "revision": str(revision),
        "scheduler": scheduler,
        "method": str(method),
        "params": dict(params),
        "prompt_id": str(prompt_id),
        "prompt": str(prompt),
        "seed": int(seed),
        "num_inference_steps": int(num_inference_steps),
        "guidance_scale": float(guidance_scale),
        "height": int(height),
        "width": int(width),
    }


def image_key(fields: dict[str, Any]) -> str:
    """64 hex characters: sha256 of ``canonical_json(fields)``."""
    return hashlib.sha256(canonical_json(fields).encode("utf-8")).hexdigest()
