"""Content-addressed, append-only run store for generated images and their scores."""

from membench_eval.store.keys import canonical_json, image_key, key_fields
from membench_eval.store.run_store import RunStore

__all__ = ["RunStore", "canonical_json", "image_key", "key_fields"]
