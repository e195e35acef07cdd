"""Image keys of a run's requests without building each image's key fields: one template per call.

Why: a cached rerun's remaining cost per image is its key (it must know the key to find the image),
and building 19 fields, then their canonical JSON, for each of 805,000 images took most of it.
Within one ``generate`` call only the prompt id, prompt text and seed differ between images, so the
canonical JSON of the shared fields is rendered once with a unique marker in each of the three
places, split there, and every key is the sha256 of the parts joined with the image's own values,
each encoded exactly as ``json.dumps`` encodes it inside ``canonical_json``: the same text, so the
same keys. A guard checks the first and last keys against ``image_key`` of the full fields and
falls back to the full path if they ever differ (and when a marker is not found exactly once).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from membench_eval.store.keys import canonical_json, image_key, image_keys

# Control characters: json.dumps escapes them, so no encoded prompt or id can contain a marker.
_MARKS = {"prompt_id": "\x01membench prompt id\x01", "prompt": "\x01membench prompt\x01", "seed": "\x01membench seed\x01"}


class LazyFields:
    """The key fields of request ``i``, built when asked (generation needs them for new images only)."""

    def __init__(self, make: Callable[[int], dict[str, Any]], n: int):
        self._make, self._n = make, n

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self._make(i)

    def __len__(self) -> int:
        return self._n


def template_keys(common: dict[str, Any], per_image: Sequence[tuple[str, str, int]]) -> list[str] | None:
    """sha256 of canonical_json of ``common`` with each (prompt_id, prompt, seed) filled in; None
    when the template cannot be split safely."""
    text = canonical_json({**common, **_MARKS})
    encoded = {name: json.dumps(mark, ensure_ascii=False) for name, mark in _MARKS.items()}
    if any(text.count(e) != 1 for e in encoded.values()):
        return None
    order = sorted(encoded, key=lambda name: text.index(encoded[name]))
    parts, rest = [], text
    for name in order:
        head, _, rest = rest.partition(encoded[name])
        parts.append(head)
    p0, p1, p2 = parts
    first, second, third = order
    out = []
    for prompt_id, prompt, seed in per_image:
        values = {"prompt_id": json.dumps(str(prompt_id), ensure_ascii=False),
                  "prompt": json.dumps(str(prompt), ensure_ascii=False), "seed": str(int(seed))}
        out.append(hashlib.sha256(f"{p0}{values[first]}{p1}{values[second]}{p2}{values[third]}{rest}".encode())
                   .hexdigest())
    return out


def keys_and_fields(make_fields: Callable[[int], dict[str, Any]], per_image: Sequence[tuple[str, str, int]]
                    ) -> tuple[list[str], LazyFields]:
    """Keys of every request (``make_fields(i)``: request i's full key fields) and the fields, lazily."""
    n = len(per_image)
    fields = LazyFields(make_fields, n)
    if n == 0:
        return [], fields
    common = {k: v for k, v in make_fields(0).items() if k not in _MARKS}
    keys = template_keys(common, per_image)
    if keys is None or keys[0] != image_key(fields[0]) or keys[-1] != image_key(fields[n - 1]):
        keys = image_keys([fields[i] for i in range(n)])
    return keys, fields
