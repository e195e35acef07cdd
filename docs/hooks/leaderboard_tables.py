"""MkDocs hook: a page's ``<!-- membench-table: results/NAME.json -->`` line becomes the leaderboard
table of that JSON (a file `membench run` wrote, copied under docs/results/), at build time.

Why a hook: numbers typed into a page go stale (an audit found README cells that differed from the
leaderboard in the third decimal); rendered from the JSON at every `mkdocs build --strict` they
cannot. A marker whose JSON is missing or unreadable fails the strict build.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.plugins.membench_tables")
MARKER = re.compile(r"^<!-- membench-table: (\S+\.json) -->$", re.M)
# (column key, header, show the interval)
COLUMNS = (("top1_sscd", "Top-1 (own)", True), ("top1_any", "Top-1 (any)", False), ("clip", "CLIP", False),
           ("coco_clip", "COCO CLIP", False))
DELTAS = (("top1_sscd", "delta Top-1 own"), ("top1_any", "delta Top-1 any"), ("clip", "delta CLIP"))


def _num(x: float | None, signed: bool = False) -> str:
    if x is None:
        return ""
    text = f"{x:+.3f}" if signed else f"{x:.3f}"
    return "0.000" if float(text) == 0 else text


def _interval(m: dict[str, Any], signed: bool = False) -> str:
    return f"{_num(m['mean'], signed)} [{_num(m['low'], signed)}, {_num(m['high'], signed)}]"


def render(board: dict[str, Any]) -> str:
    """The markdown table of a leaderboard JSON: means (Top-1 with its interval), paired deltas, cost."""
    head = ["method"] + [h for _, h, _ in COLUMNS] + [h for _, h in DELTAS] + ["UNet/img"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in board["rows"]:
        m = row["metrics"]
        cells = [row["label"] + (" (oracle: uses the memorized images)" if row.get("oracle") else "")]
        for key, _, ci in COLUMNS:
            c = m.get(key) or {}
            value = c.get("mean") if c.get("available") else None
            cells.append("" if value is None else (_interval(c) if ci and "low" in c else _num(value)))
        for key, _ in DELTAS:
            d = (m.get(key) or {}).get("delta_to_base")
            cells.append(_interval(d, signed=True) if d else "")
        cost = row.get("unet_evals_per_image")
        cells.append("" if cost is None else f"{cost:g}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    docs = Path(config["docs_dir"])

    def table(match: re.Match[str]) -> str:
        path = docs / match.group(1)
        try:
            return render(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError) as exc:
            log.warning("%s: leaderboard table %s not rendered: %s", page.file.src_path, path, exc)
            return f"*(table {match.group(1)} not available)*"

    return MARKER.sub(table, markdown)
