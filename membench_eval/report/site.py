"""One static leaderboard site from many runs' export folders (``membench export``).

Rows of different runs share a table only when their ``compare_key`` (suite hash, model and
revision, scorers, generation settings, prompt selection, bootstrap) is identical: a number from
another model or another scorer is not comparable, so those runs get their own table, which names
the fields that differ. Every row links to its run's provenance page; each run's folder is copied
under ``runs/<run id>/`` so the links work from any static host or from disk.
"""

from __future__ import annotations

import html
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from membench_eval.errors import MembenchError
from membench_eval.report.hub import RESULTS_FILE
from membench_eval.report.html import SCRIPT, STYLE
from membench_eval.report.text import fmt_number


def read_export(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / RESULTS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["provenance"]["compare_id"]  # noqa: B018 - the field the merge needs
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MembenchError(f"{path}: not a membench export ({type(exc).__name__}: {exc}); expected the folder "
                            "`membench export --to` wrote") from None
    data["_folder"] = Path(folder)
    return data


def _differs(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _differs(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [prefix.rstrip(".")] if a != b else []


def _cell(m: dict[str, Any] | None) -> str:
    if not m or m.get("mean") is None:
        why = (m or {}).get("reason") or "not measured"
        return f'<td title="{html.escape(why, quote=True)}">n/a</td>'
    text = f"{fmt_number(m['mean'], 3)}"
    if m.get("low") is not None:
        text += f'<span class="ci">[{fmt_number(m["low"], 3)}, {fmt_number(m["high"], 3)}]</span>'
    if m.get("delta") is not None:
        text += f'<span class="ci">&Delta; {fmt_number(m["delta"], 3, True)}</span>'
    return f"<td>{text}</td>"


def _table(i: int, runs: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    head = "<th>method</th><th>run</th>" + "".join(f"<th>{html.escape(t)}</th>" for _, t in columns)
    body = []
    for run in runs:
        for r in run["rows"]:
            kind = r["kind"]
            label = html.escape(r["label"])
            link = f'runs/{html.escape(run["run_id"], quote=True)}/provenance.html'
            body.append(f'<tr data-row="{html.escape(r["label"], quote=True)}" class="kind-{html.escape(kind)}">'
                        f'<td>{"<span class=target>target</span>" if kind == "reference" else ""}{label}</td>'
                        f'<td><a href="{link}">{html.escape(run["run_id"])}</a></td>'
                        + "".join(_cell(r["metrics"].get(k)) for k, _ in columns) + "</tr>")
    return (f'<div class="scroll"><table id="board-{i}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _provenance_page(run: dict[str, Any]) -> str:
    files = ["results.json", run["leaderboard_json"], "README.md", "data/samples.parquet", "data/leaderboard.parquet"]
    links = "".join(f'<li><a href="{html.escape(f, quote=True)}">{html.escape(f)}</a></li>' for f in files)
    figs = "".join(f'<img src="{html.escape(f, quote=True)}" alt="{html.escape(f)}">' for f in run.get("figures", []))
    body = (f"<h1>Run {html.escape(run['run_id'])}</h1><p><a href=\"../../index.html\">back to the board</a></p>"
            f"<ul>{links}</ul>{figs}<h2>Provenance</h2><pre>"
            f"{html.escape(json.dumps(run['provenance'], indent=1, default=str))}</pre>")
    return _page(f"membench run {run['run_id']}", body)


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
            f"<body data-report=\"membench-board\">{body}<script>{SCRIPT}</script></body></html>\n")


def write_site(exports: Sequence[str | Path], out: str | Path) -> Path:
    """``out/index.html`` (+ ``out/runs/<id>/``) from the export folders; returns the index path."""
    from membench_eval.metrics.registry import columns as registered

    runs = [read_export(f) for f in exports]
    site = Path(out)
    site.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(run["provenance"]["compare_id"], []).append(run)
        dest = site / "runs" / run["run_id"]
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(run["_folder"], dest)
        (dest / "provenance.html").write_text(_provenance_page(run), encoding="utf-8")
    first_key = runs[0]["provenance"]["compare_key"] if runs else {}
    parts = ["<h1>MemBench leaderboard</h1>",
             f"<p>{len(runs)} run(s) in {len(groups)} table(s). Rows share a table only when suite hash, model, "
             "scorers and settings match. Each cell: mean, its 95% interval, and &Delta; the paired difference to "
             "base of the same run.</p>"]
    for i, members in enumerate(groups.values(), 1):
        key = members[0]["provenance"]["compare_key"]
        present = {k for run in members for r in run["rows"] for k, m in r["metrics"].items()
                   if m.get("mean") is not None}
        cols = [(c.key, c.title) for c in registered() if c.key in present]
        why = _differs(first_key, key)
        intro = (f"<p>Suite <code>{html.escape(str(key['suite']))}</code>, model <code>"
                 f"{html.escape(str(key['model']))}</code>, suite hash <code>{html.escape(str(key['suite_hash']))[:40]}"
                 "</code>.</p>")
        if why:
            intro += f'<p class="warn">Not compared with table 1: differs in {html.escape(", ".join(why))}.</p>'
        figs = "".join(f'<figure><img src="runs/{html.escape(r["run_id"], quote=True)}/{html.escape(f, quote=True)}" '
                       f'alt="frontier of {html.escape(r["run_id"], quote=True)}">'
                       f"<figcaption>{html.escape(r['run_id'])}</figcaption></figure>"
                       for r in members for f in r.get("figures", []))
        parts.append(f'<section id="table-{i}"><h2>Table {i}</h2>{intro}{_table(i, members, cols)}'
                     f'{f"<div class=gallery>{figs}</div>" if figs else ""}</section>')
    index = site / "index.html"
    index.write_text(_page("MemBench leaderboard", "".join(parts)), encoding="utf-8")
    return index
