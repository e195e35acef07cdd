"""Prompt lists in and per-prompt scores out, in the formats the upstream lists use.

Reads ``.txt`` (one prompt per line, Webster's ``nonmem500.txt``), ``.jsonl`` (one object per line
with a ``prompt``, ``caption`` or ``text`` field, Wen's ``sdv1_500_memorized.jsonl``) and ``.csv``
(a ``prompt``, ``caption`` or ``text`` column, MemBench's ``SD1_final.csv``). Writes JSONL or CSV.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterable, Sequence

from membench_eval.errors import DataError
from membench_eval.suites.loaders import iter_json_objects

PROMPT_FIELDS = ("prompt", "caption", "text")


def _field(row: dict, path: Path, lineno: int) -> str:
    for key in PROMPT_FIELDS:
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    raise DataError(path, f"no non-empty prompt field (looked for {', '.join(PROMPT_FIELDS)})", row=lineno)


def read_prompt_file(path: str | Path) -> list[str]:
    """Prompts from a .txt, .jsonl or .csv file, in file order (blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "prompt file not found")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        prompts = [_field(row, path, lineno) for lineno, row in iter_json_objects(path)]
    elif suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not any(k in reader.fieldnames for k in PROMPT_FIELDS):
                raise DataError(path, f"no prompt column (need one of {', '.join(PROMPT_FIELDS)})", row=1)
            prompts = [_field(row, path, lineno) for lineno, row in enumerate(reader, 2)]
    else:
        with path.open(encoding="utf-8") as f:
            prompts = [line.strip() for line in f if line.strip()]
    if not prompts:
        raise DataError(path, "no prompts in file")
    return prompts


def write_scores(path: str | Path, prompts: Sequence[str], scores: Sequence[float], *, extra: dict[str, Iterable] | None = None) -> Path:
    """Write one row per prompt (``prompt``, ``score`` and ``extra`` columns) as .csv or JSONL."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {"prompt": list(prompts), "score": [float(s) for s in scores]}
    for key, values in (extra or {}).items():
        columns[key] = list(values)
    n = len(columns["prompt"])
    if any(len(v) != n for v in columns.values()):
        raise ValueError("every column must have one value per prompt")
    rows = [{k: v[i] for k, v in columns.items()} for i in range(n)]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        if path.suffix.lower() == ".csv":
            writer = csv.DictWriter(f, fieldnames=list(columns))
            writer.writeheader()
            writer.writerows(rows)
        else:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path
