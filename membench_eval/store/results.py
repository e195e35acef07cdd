"""Analysis results in the run store: ``<store>/analysis/<kind>/<key>.json``, one file per result.

Why: an attribution costs a few hundred generated images (minutes on CPU, more on SD), so a rerun
with the same inputs must print the stored table at once; and a result computed with other inputs
(model, settings, prompt, image count, code version) must never be reused. Like images and
detections, a result is content-addressed: its key is the sha256 of the canonical JSON of the
``fields`` that determine it, and the file carries those fields and the hash of its own content.
A file failing either check (edited, torn, foreign) is ignored and the result computed again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from membench_eval.store.atomic import write_atomic
from membench_eval.store.keys import canonical_json, image_key

AREA = "analysis"


class ResultStore:
    """JSON results of one kind (``attribution``, ``probe``) in a run store directory."""

    def __init__(self, root: str | os.PathLike, kind: str):
        self.folder = Path(root) / AREA / kind

    def path(self, fields: dict[str, Any]) -> Path:
        return self.folder / f"{image_key(fields)}.json"

    def get(self, fields: dict[str, Any]) -> dict[str, Any] | None:
        """The stored result of ``fields``, or None (absent, or failing its checks)."""
        path = self.path(fields)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("key") != path.stem or "result" not in doc:
            return None
        if doc.get("fields") != json.loads(canonical_json(fields)) or doc.get("sha256") != _digest(doc):
            return None
        return doc["result"]

    def put(self, fields: dict[str, Any], result: dict[str, Any]) -> Path:
        """Store ``result`` under ``fields`` (atomically: a killed write leaves no file)."""
        path = self.path(fields)
        doc = {"key": path.stem, "fields": json.loads(canonical_json(fields)), "result": json.loads(canonical_json(result))}
        doc["sha256"] = _digest(doc)
        write_atomic(path, json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
        return path


def _digest(doc: dict[str, Any]) -> str:
    return image_key({k: v for k, v in doc.items() if k != "sha256"})
