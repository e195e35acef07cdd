"""Content-addressed image keys: SHA-256 of the canonical JSON of everything that sets the pixels.

Key fields: model id and revision (a content hash for local directories), scheduler class and
config, method name, parameters and source hash (``membench_eval.plugins.source``: editing a method
regenerates its images), the engine's code version, prompt id and the ORIGINAL prompt text (before
any rewrite by the method: the rewrite is a function of the method, its parameters and the seed,
all in the key), the image seed, steps, guidance scale, height and width, and the compute shape:
the fixed number of images per pipeline call, the device type and the dtype. Float rounding
differs with batch shape, device and dtype (measured: batches of 10 / 7 / 3 move 14-22 of 30 images
by one intensity level), so images made under different ones are never mixed. Prompt order,
batch companions, the worker and time are not in the key: images do not depend on them (the
engine pads every call to the same shape; tested byte for byte).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

KEY_SCHEME = "membench-key/v2"
# Version of the generation code path (engine + Mitigation API): part of every image key. Bump it
# when a change of this code changes pixels; v2: every pipeline call padded to a fixed shape.
# It lives here, with the key scheme, so the store can tell stale images without importing the
# generation engine (the store sits below generation).
GENERATION_CODE_VERSION = "membench-generation/v2"


def _check(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """``value`` with string dict keys and lists for tuples; a ValueError for a non-finite number.
    ``memo``: containers already checked, by identity (the fields of one batch share them)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"non-finite number {value!r} cannot be part of a store key")
    if not isinstance(value, (dict, list, tuple)):
        return value
    if memo is not None and id(value) in memo:
        return memo[id(value)][1]
    out: Any = ({str(k): _check(v, memo) for k, v in value.items()} if isinstance(value, dict)
                else [_check(v, memo) for v in value])
    if memo is not None:
        memo[id(value)] = (value, out)  # holding ``value`` keeps its id from being reused
    return out


def _dumps(checked: Any) -> str:
    return json.dumps(checked, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept, finite numbers only: equal content, equal text."""
    return _dumps(_check(obj))


def image_keys(fields: list[dict[str, Any]]) -> list[str]:
    """``image_key`` of each of ``fields``, the same text hashed; the containers the fields of a
    batch share (scheduler config, compute flags, parameter values) are checked once, not once per
    image (measured: the per-value walk was 0.17 ms of each key, 136 s of an 805,000-image rerun)."""
    memo: dict[int, Any] = {}
    plain = (str, int, bool, type(None))
    return [hashlib.sha256(_dumps({str(k): v if type(v) in plain else _check(v, memo) for k, v in f.items()}
                                  ).encode("utf-8")).hexdigest() for f in fields]


def key_fields(
    *,
    model: str,
    revision: str,
    scheduler: dict[str, Any],
    method: str,
    params: dict[str, Any],
    method_source: str,
    engine: str,
    prompt_id: str,
    prompt: str,
    seed: int,
    num_inference_steps: int,
    guidance_scale: float,
    height: int,
    width: int,
    batch_shape: int,
    device_type: str,
    dtype: str,
    compute: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The dict an image key is the hash of (also stored in the image's metadata row).
    ``compute``: the compute options that can move pixels beyond device and dtype (the GPU
    path's compile, channels_last, VAE slicing; the CPU's torch thread count when not 1);
    present only when some are set, so keys made without them are unchanged."""
    extra = {"compute": dict(compute)} if compute else {}
    return {
        **extra,
        "scheme": KEY_SCHEME,
        "model": str(model),
        "revision": str(revision),
        "scheduler": scheduler,
        "method": str(method),
        "params": dict(params),
        "method_source": str(method_source),
        "engine": str(engine),
        "prompt_id": str(prompt_id),
        "prompt": str(prompt),
        "seed": int(seed),
        "num_inference_steps": int(num_inference_steps),
        "guidance_scale": float(guidance_scale),
        "height": int(height),
        "width": int(width),
        "batch_shape": int(batch_shape),
        "device_type": str(device_type),
        "dtype": str(dtype),
    }


def image_key(fields: dict[str, Any]) -> str:
    """64 hex characters: sha256 of ``canonical_json(fields)``."""
    return hashlib.sha256(canonical_json(fields).encode("utf-8")).hexdigest()
