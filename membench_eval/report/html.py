"""The static HTML report: one self-contained page, its images in ``<stem>_files/`` beside it.

No web framework, no network, no external CSS or JavaScript: the style sheet and one small script
are inline. The page holds the same tables as the markdown (the paper's columns, the paired
differences, the extra columns, the AMS/UMS bands, the paper beside ours where there are published
numbers), the trade-off frontier, the worst-copy galleries, the run's metadata and coverage, the
footnotes and any artefact that could not be drawn.

The script marks the page once every image has loaded or failed (``window`` load event): the
``<body>`` gets ``data-images-total``, ``data-images-ok``, ``data-images-broken`` (their ``src``)
and ``data-images-loaded="all"`` when every ``<img>`` has ``naturalWidth > 0`` (else
``"some-failed"``). A headless browser run reads them back (tests/report/test_report_html.py).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from membench_eval.report.leaderboard import Leaderboard
    from membench_eval.report.text import Table

_FOOTNOTE = re.compile(r"\[\^(\d+)\]")

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 78em;
       padding: 0 1em; color: #1d1d1d; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.86em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f3f3f3; }
tr.kind-base td:first-child { font-weight: 600; }
tr.kind-reference td, tr.kind-computed_reference td { color: #2a6b2a; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; }
.note { font-size: 0.85em; color: #444; } .warn { color: #8a4b00; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; font-size: 0.86em; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; word-break: break-word; }
nav a { margin-right: 1em; } div.scroll { overflow-x: auto; }
"""

SCRIPT = """
(function () {
  function mark() {
    var imgs = Array.prototype.slice.call(document.images);
    var broken = imgs.filter(function (im) { return !(im.complete && im.naturalWidth > 0); });
    var body = document.body;
    body.setAttribute("data-images-total", String(imgs.length));
    body.setAttribute("data-images-ok", String(imgs.length - broken.length));
    body.setAttribute("data-images-broken", broken.map(function (im) { return im.getAttribute("src"); }).join(" "));
    body.setAttribute("data-images-loaded", broken.length === 0 ? "all" : "some-failed");
  }
  window.addEventListener("load", mark);
})();
"""


def _cell(text: str) -> str:
    """Cell text with ``[^n]`` footnote references as superscript links."""
    parts = _FOOTNOTE.split(text)
    out = []
    for i, part in enumerate(parts):
        out.append(f'<sup><a href="#fn{part}">{part}</a></sup>' if i % 2 else html.escape(part))
    return "".join(out)


def table_html(table_id: str, headers: Sequence[str], rows: Sequence[Sequence[str]],
               kinds: Mapping[str, str] | None = None) -> str:
    """An HTML table; each body row carries ``data-row`` (its first cell) and a ``kind-...`` class."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        kind = (kinds or {}).get(row[0], "")
        cls = f' class="kind-{html.escape(kind)}"' if kind else ""
        cells = "".join(f"<td>{_cell(c)}</td>" for c in row)
        body.append(f'<tr data-row="{html.escape(row[0], quote=True)}"{cls}>{cells}</tr>')
    return (f'<div class="scroll"><table id="{html.escape(table_id)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _section(sid: str, title: str, *content: str) -> str:
    return f'<section id="{sid}"><h2>{html.escape(title)}</h2>{"".join(content)}</section>'


def _p(text: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{_cell(text)}</p>"


def to_html(board: "Leaderboard", *, files_dir: str, frontier: Sequence[str] = (),
            galleries: Mapping[str, str] | None = None, warnings: Sequence[str] = (),
            links: Mapping[str, str] | None = None) -> str:
    """The page. ``files_dir``: the images folder relative to the page; ``frontier``: the frontier's
    file names in it (PNG first); ``galleries``: row label -> gallery file name; ``links``: other
    artefacts (title -> file name beside the page)."""
    from membench_eval.metrics.registry import columns as registered_columns, direction_sentence
    from membench_eval.report.render import _Notes, _plain, _prompts_run, scorer_metadata_keys, table_rows
    from membench_eval.report.sections import extra_tables

    notes = _Notes()
    kinds = {r.display_label: r.kind for r in board.rows}
    cols = tuple(c for c in registered_columns("main") if board.rows and c.key in board.rows[0].cells)
    extra = tuple(c for c in registered_columns("extra") if board.rows and c.key in board.rows[0].cells)
    b = board.bootstrap
    conf = int(round(100 * b.get("confidence", 0.95)))
    parts = [f"<h1>MemBench leaderboard: suite <code>{html.escape(board.suite)}</code></h1>",
             _p(f"Each cell: mean over prompts [{conf}% CI]; percentile cluster bootstrap over memorized images, "
                f"{b.get('n_resamples')} resamples, seed {b.get('seed')}. {direction_sentence()}")]
    nav = [("main", "Table"), ("delta", "Difference to base"), ("memorization", "AMS / UMS"),
           ("frontier", "Frontier"), ("gallery", "Worst copies"), ("run", "Run")]
    parts.append("<nav>" + "".join(f'<a href="#{i}">{t}</a>' for i, t in nav) + "</nav>")
    headers = ["method"] + [c.title for c in cols]
    main = [table_html("table-main", headers, table_rows(board, cols, notes, False), kinds)]
    if board.reference.get("note"):
        main.append(_p(board.reference["note"], "note"))
    parts.append(_section("main", "The paper's columns", *main))
    delta = table_rows(board, cols, notes, True)
    if delta:
        parts.append(_section("delta", "Paired difference to base (same prompts, same resamples)",
                              table_html("table-delta", headers, delta, kinds)))
    if extra:
        xh = ["method"] + [c.title for c in extra]
        content = [table_html("table-extra", xh, table_rows(board, extra, notes, False), kinds)]
        xd = table_rows(board, extra, notes, True)
        if xd:
            content += [_p("Difference to base:"), table_html("table-extra-delta", xh, xd, kinds)]
        parts.append(_section("extra", "Also measured (not in the paper's table)", *content))
    tables: list["Table"] = extra_tables(board, notes)
    for t in tables:
        sid = "memorization" if t.key.startswith("memorization") and not any(
            p.startswith('<section id="memorization"') for p in parts) else t.key
        body = [_p(x) for x in t.intro] + ([table_html(f"table-{t.key}", t.headers, t.rows, kinds)] if t.rows else [])
        parts.append(_section(sid, t.heading, *body, *[_p(x, "note") for x in t.after]))
    parts.append(_frontier_html(files_dir, frontier))
    parts.append(_gallery_html(board, files_dir, galleries))
    meta = board.metadata
    items = []
    for key in ("model", "sscd_backend", *scorer_metadata_keys(), "seed", "coverage", "limit", "subset",
                "images_per_prompt", "batch_size", "engine", "computed_reference", "versions"):
        if key in meta and meta[key] not in (None, "", {}):
            items.append(f"<dt>{html.escape(key)}</dt><dd>{html.escape(_plain(meta[key]))}</dd>")
    rows = []
    for row in board.rows:
        if row.kind != "reference":
            flag = "" if row.complete else " (incomplete)"
            rows.append(f"<li>{html.escape(f'{row.label} ({row.kind}){flag}: {_prompts_run(row)}')}</li>")
    run = [f'<dl class="meta">{"".join(items)}</dl>', f"<h3>Coverage per row</h3><ul>{''.join(rows)}</ul>"]
    if links:
        run.append("<p>Also written: " + ", ".join(f'<a href="{html.escape(f, quote=True)}">{html.escape(t)}</a>'
                                                   for t, f in links.items()) + "</p>")
    parts.append(_section("run", "Run", *run))
    foot = []
    for line in notes.lines():
        m = re.match(r"\[\^(\d+)\]: (.*)", line)
        foot.append(f'<li id="fn{m.group(1)}" value="{m.group(1)}">{html.escape(m.group(2))}</li>' if m
                    else f'<li class="plain">{html.escape(line)}</li>')
    if foot:
        parts.append(_section("notes", "Notes", f"<ol>{''.join(foot)}</ol>"))
    if warnings:
        parts.append(_section("warnings", "Not drawn / incomplete artefacts",
                              "<ul>" + "".join(f'<li class="warn">{html.escape(w)}</li>' for w in warnings) + "</ul>"))
    title = html.escape(f"MemBench leaderboard: suite {board.suite}")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n"
            f"<style>{STYLE}</style>\n</head>\n<body data-report=\"membench-leaderboard\">\n"
            + "\n".join(parts) + f"\n<script>{SCRIPT}</script>\n</body>\n</html>\n")


def _frontier_html(files_dir: str, frontier: Sequence[str]) -> str:
    if not frontier:
        return _section("frontier", "Trade-off frontier", _p("Not drawn (see the list of artefacts not drawn).",
                                                             "warn"))
    png = f"{files_dir}/{frontier[0]}"
    extra = "".join(f' <a href="{html.escape(f"{files_dir}/{f}", quote=True)}">'
                    f"{html.escape(Path(f).suffix[1:].upper())}</a>" for f in frontier[1:])
    return _section("frontier", "Trade-off frontier",
                    f'<figure><img src="{html.escape(png, quote=True)}" alt="trade-off frontier: CLIP and COCO CLIP '
                    f'against Top-1 SSCD per method"><figcaption>One line per method through its parameter settings; '
                    f"base and the reference as points; error bars: 95% intervals.{extra}</figcaption></figure>")


def _gallery_html(board: "Leaderboard", files_dir: str, galleries: Mapping[str, str] | None) -> str:
    if not galleries:
        return _section("gallery", "Worst copies", _p("No gallery (see the list of artefacts not drawn).", "warn"))
    figs = []
    for label, name in galleries.items():
        src = html.escape(f"{files_dir}/{name}", quote=True)
        figs.append(f'<figure data-gallery="{html.escape(label, quote=True)}"><img src="{src}" alt="worst copies of '
                    f'{html.escape(label, quote=True)}"><figcaption>{html.escape(label)}: the prompts with the highest '
                    "Top-1 SSCD, generated image beside the reference it matches best.</figcaption></figure>")
    return _section("gallery", "Worst copies", *figs)


def write_html(board: "Leaderboard", path: Path, **kwargs: Any) -> Path:
    from membench_eval.store.atomic import write_atomic

    write_atomic(path, to_html(board, **kwargs))
    return path
