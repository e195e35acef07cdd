"""The leaderboard's "Adaptive attack" section, from attack results stored in the run store.

``membench attack`` (``membench_eval.attack``) saves its table as
``<store>/attacks/tables/<suite>.json`` (the latest attack of that suite and run seed); a
leaderboard built over the same store (``membench run``, ``pytest --membench``) then shows, for its
rows that were attacked, the columns "Top-1 SSCD under attack" and "images re-extracted" beside the
fixed-prompt Top-1 per memorized image, and the paired difference, with the attack's budget.
The report layer only reads the file: it never imports the attack code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from membench_eval.report.text import Table

if TYPE_CHECKING:
    from membench_eval.report.leaderboard import Leaderboard
    from membench_eval.report.text import _Notes

ATTACK_TABLES_DIR = Path("attacks") / "tables"
SUMMARY_KEYS = ("fixed_top1", "attacked_top1", "delta", "re_extracted")


def attack_table_path(store_root: str | Path, suite_key: str, seed: int) -> Path:
    return Path(store_root) / ATTACK_TABLES_DIR / f"{suite_key}.seed{int(seed)}.json"


def stored_attack_summary(store_root: str | Path, suite_key: str, seed: int) -> dict[str, Any] | None:
    """The compact attack summary for the leaderboard metadata, or None when none is stored."""
    path = attack_table_path(store_root, suite_key, seed)
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    md = table.get("metadata", {})
    return {
        "file": str(path), "budget": md.get("budget"), "budget_unit": md.get("budget_unit"),
        "n_images": md.get("n_images"), "prompts_per_image": md.get("prompts_per_image"),
        "images_per_prompt": md.get("images_per_prompt"), "seed": md.get("seed"),
        "rows": {r["label"]: {k: r[k] for k in SUMMARY_KEYS if k in r} for r in table.get("rows", [])},
    }


def _fmt(e: dict[str, float], signed: bool = False) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(e['mean'])} [{f.format(e['low'])}, {f.format(e['high'])}]"


def attack_tables(board: "Leaderboard", notes: "_Notes") -> list[Table]:
    """The section, when the board's metadata carries a stored attack (``stored_attack_summary``)."""
    summary = board.metadata.get("adaptive_attack")
    if not summary or not summary.get("rows"):
        return []
    attacked = summary["rows"]
    rows = []
    for label in [r.label for r in board.rows if r.label in attacked] + [k for k in attacked if k not in {r.label for r in board.rows}]:
        e = attacked[label]
        rows.append([label, _fmt(e["fixed_top1"]), _fmt(e["attacked_top1"]), _fmt(e["delta"], signed=True),
                     _fmt(e["re_extracted"])])
    intro = [f"`membench attack`, budget {summary['budget']} scored candidate prompts per memorized image (equal for "
             f"every row), {summary['n_images']} memorized images, {summary['prompts_per_image']} attack prompts x "
             f"{summary['images_per_prompt']} images each; Top-1 per memorized image against its own reference, "
             f"95% bootstrap intervals over memorized images; images re-extracted: share with an attack image of "
             f"SSCD > 0.5. Details: {Path(summary['file']).name} in the run store."]
    headers = ["method", "Top-1 SSCD (fixed prompts)", "Top-1 SSCD under attack", "attacked - fixed", "images re-extracted"]
    return [Table(key="adaptive-attack", heading="Adaptive attack", headers=headers, rows=rows, intro=intro)]
