"""Method configs already complete in the run store: they join the leaderboard without generating.

Why: a leaderboard should show every config that was measured on this suite, model and settings
(the bundled baselines run earlier, the user's earlier parameter settings), not only the latest
run's. A stored config is reused only when its images are provably from the current code:

- the row's key scheme and engine version are the current ones;
- the method file recorded in the row still exists and its source fingerprint
  (``membench_eval.plugins.source``) equals the one recorded: an edited method is stale, never shown;
- model, seed, steps, guidance, size, compute shape (batch, device type, dtype) match this run;
- every planned (prompt, image) is present.

Checked from the store's index and file hashes alone; torch is imported only to resolve the device when
there is a candidate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from membench_eval.errors import MembenchError

if TYPE_CHECKING:
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.mitigation import Mitigation
    from membench_eval.store.run_store import RunStore
    from membench_eval.suites.types import Prompt


@dataclass(frozen=True)
class StoredConfig:
    """A method config whose images for every planned prompt are in the store."""

    label: str
    name: str
    path: str
    mitigation: "Mitigation"
    bundled: bool  # the method file is one of the harness's bundled baselines


def current_compute(device: str | None) -> tuple[str, str]:
    """(device type, dtype) the pipeline would be loaded with (``load_pipeline``'s choice)."""
    from membench_eval.runtime import select_device, select_dtype

    dev = select_device(device)
    return dev.type, str(select_dtype(dev, "generation")).replace("torch.", "")


def find_stored_configs(
    store: "RunStore",
    prompts: dict[str, list["Prompt"]],
    settings: "GenerationSettings",
    *,
    model_matches: Any,
    device: str | None,
    bundled_folder: Path,
) -> list[StoredConfig]:
    """Configs complete in ``store`` for ``prompts`` (see module docstring), sorted by label.

    Asked of the store's index by its indexed columns (``store.index_db.RECORD_COLUMNS``): one
    grouped query for the configs of these settings, then the (prompt, seed) pairs of each
    candidate; never every row of the store into memory."""
    from membench_eval.generation.engine import GENERATION_CODE_VERSION
    from membench_eval.generation.seeding import image_seed
    from membench_eval.store.keys import KEY_SCHEME

    s = settings
    wanted = {(p.prompt_id, image_seed(s.seed, p.prompt_id, i))
              for role, ps in prompts.items() for p in ps for i in range(s.images_per_prompt(role))}  # type: ignore[arg-type]
    cond = ("method_path IS NOT NULL AND method_path != '' AND scheme = ? AND engine = ? AND num_inference_steps = ? "
            "AND guidance_scale = ? AND height = ? AND width = ?")
    params = (KEY_SCHEME, GENERATION_CODE_VERSION, s.num_inference_steps, float(s.guidance_scale), s.height, s.width)
    first: dict[tuple[str, str], int] = {}
    models: dict[tuple[str, str], set[tuple[Any, Any]]] = {}
    for path, label, model, model_path, rowid in store.query(
            f"SELECT method_path, cfg_label, model, model_path, MIN(rowid) FROM records WHERE {cond} "
            "GROUP BY method_path, cfg_label, model, model_path", params):
        if not model_matches({"model": model, "model_path": model_path}):
            continue
        ident = (str(path), str(label))
        first[ident] = min(rowid, first.get(ident, rowid))
        models.setdefault(ident, set()).add((model, model_path))
    candidates = []
    for ident in sorted(first, key=lambda i: (i[1], i[0])):
        found = {(pid, seed) for pid, seed, model, model_path in store.query(
            f"SELECT prompt_id, seed, model, model_path FROM records WHERE {cond} AND method_path = ? AND cfg_label = ?",
            (*params, *ident)) if (model, model_path) in models[ident]}
        if wanted <= found:
            candidates.append(ident)
    if not candidates:
        return []
    device_type, dtype = current_compute(device)
    out: list[StoredConfig] = []
    for path, label in candidates:
        row = json.loads(store.query("SELECT row FROM records WHERE rowid = ?", (first[(path, label)],))[0][0])
        config = _reload(row, path, label, device_type, dtype, s)
        if config is not None:
            out.append(StoredConfig(label, row["method"], path, config, _is_under(Path(path), bundled_folder)))
    return out


def _reload(row: dict[str, Any], path: str, label: str, device_type: str, dtype: str,
            settings: "GenerationSettings") -> "Mitigation | None":
    """The method object of a stored config, or None when it is stale or not comparable."""
    from membench_eval.plugins.source import fingerprint_file
    from membench_eval.plugins.mitigations import load_mitigation

    if (row.get("device_type"), row.get("dtype")) != (device_type, dtype):
        return None
    if not Path(path).is_file() or fingerprint_file(path).sha256 != row.get("method_sha256"):
        return None  # the method was edited or removed since: stale (``membench store prune``)
    try:
        m = load_mitigation(path, None, {k: str(v) for k, v in (row.get("params") or {}).items()})
    except MembenchError:
        return None  # its parameters changed since: not comparable
    b = settings.batch_size
    shapes = {b} if not m.batch_by_prompt else {max(b, settings.images_per_prompt(r)) for r in ("trigger", "general")}
    if m.label() != label or m.name != row.get("method") or row.get("batch_shape") not in shapes:
        return None
    return m


def same_model(row: dict[str, Any], model: str) -> bool:
    """Store rows name the model as a hub id or ``local`` (+ path); match either way."""
    if row.get("model") == model:
        return True
    path = row.get("model_path")
    try:
        return bool(path) and Path(path).resolve() == Path(model).expanduser().resolve()
    except OSError:
        return False


def _is_under(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False
