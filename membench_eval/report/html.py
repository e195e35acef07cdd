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
th { white-space: normal; } th:first-child, td:first-child { text-align: left; white-space: normal; max-width: 16em; }
thead th { background: #f3f3f3; } td span.ci { display: block; font-size: 0.82em; color: #666; }
tr.kind-base td:first-child { font-weight: 600; }
tr.kind-reference td, tr.kind-computed_reference td { color: #555; background: #f7f7f7; font-style: italic; }
tr.kind-reference td { border-bottom: 3px double #999; }
span.target { font-size: 0.75em; font-style: normal; border: 1px solid #999; border-radius: 3px; padding: 0 0.3em;
              margin-right: 0.4em; text-transform: uppercase; }
div.banner { background: #fff3cd; border: 2px solid #c98a00; padding: 0.5em 1em; font-weight: 600; margin: 0.8em 0; }
ul.verdict { padding-left: 1.2em; } ul.verdict li { margin: 0.25em 0; }
div.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(22em, 1fr)); gap: 1em; }
div.gallery figure { margin: 0; } div.gallery ol { padding-left: 1.2em; margin: 0.3em 0; }
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
    body.setAttribute("data-viewport-width", String(window.innerWidth));
    Array.prototype.forEach.call(document.querySelectorAll("div.scroll"), function (d) {
      d.setAttribute("data-scroll-width", String(d.scrollWidth));
      d.setAttribute("data-client-width", String(d.clientWidth));
    });
  }
  window.addEventListener("load", mark);
})();
"""


_INTERVAL = re.compile(r"^(\S+) (\[[^\]]+\])(.*)$")


def _stacked(text: str) -> str:
    """``0.123 [0.1, 0.2]†`` as the mean over its interval (two short lines: the table fits 1280 px)."""
    m = _INTERVAL.match(text)
    if not m:
        return _cell(text)
    return f'{_cell(m.group(1) + m.group(3))}<span class="ci">{_cell(m.group(2))}</span>'


def _cell(text: str) -> str:
    """Cell text with ``[^n]`` footnote references as superscript links."""
    parts = _FOOTNOTE.split(text)
    out = []
    for i, part in enumerate(parts):
        out.append(f'<sup><a href="#fn{part}">{part}</a></sup>' if i % 2 else html.escape(part))
    return "".join(out)


def table_html(table_id: str, headers: Sequence[str], rows: Sequence[Sequence[str]],
               kinds: Mapping[str, str] | None = None) -> str:
    """An HTML table; each body row carries ``data-row`` (its first cell) and a ``kind-...`` class.
    A published reference row is marked as the target (set apart, not ranked with the methods)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        kind = (kinds or {}).get(row[0], "")
        cls = f' class="kind-{html.escape(kind)}"' if kind else ""
        tag = '<span class="target">target</span>' if kind in ("reference", "computed_reference") else ""
        cells = f"<td>{tag}{_cell(row[0])}</td>" + "".join(f"<td>{_stacked(c)}</td>" for c in row[1:])
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
            links: Mapping[str, str] | None = None, failed: bool = False,
            captions: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> str:
    """The page. ``files_dir``: the images folder relative to the page; ``frontier``: the frontier's
    file names in it (PNG first); ``galleries``: row label -> gallery file name; ``links``: other
    artefacts (title -> file name beside the page); ``captions``: row label -> each gallery pair's
    caption (``gallery.caption``). It opens on the run's banner (failed, limited, subset, partial:
    also in the title) and one verdict line per method; then the main table, where columns n/a on
    every row collapse into one note."""
    from membench_eval.metrics.registry import columns as registered_columns, direction_sentence
    from membench_eval.report.render import _Notes, _plain, _prompts_run, scorer_metadata_keys, table_rows
    from membench_eval.report.sections import extra_tables
    from membench_eval.report.verdict import run_status, title_tag, verdicts

    notes = _Notes()
    kinds = {r.display_label: r.kind for r in board.rows}
    cols = tuple(c for c in registered_columns("main") if board.rows and c.key in board.rows[0].cells)
    extra = tuple(c for c in registered_columns("extra") if board.rows and c.key in board.rows[0].cells)
    b = board.bootstrap
    conf = int(round(100 * b.get("confidence", 0.95)))
    status = run_status(board, failed)
    tag = title_tag(status)
    parts = [f"<h1>MemBench leaderboard: suite <code>{html.escape(board.suite)}</code>{html.escape(tag)}</h1>"]
    parts += [f'<div class="banner" data-banner="{html.escape(x.split(":", 1)[0], quote=True)}">{html.escape(x)}</div>'
              for x in status]
    lines = verdicts(board)
    if lines:
        parts.append('<section id="verdict"><h2>Verdict (paired difference to base, 95% CI)</h2><ul class="verdict">'
                     + "".join(f'<li data-verdict="{html.escape(lab, quote=True)}"><b>{html.escape(lab)}</b>: '
                               f"{html.escape(text)}</li>" for lab, text in lines) + "</ul></section>")
    parts += [_p(f"Each cell: mean over prompts [{conf}% CI]; percentile cluster bootstrap over memorized images, "
                f"{b.get('n_resamples')} resamples, seed {b.get('seed')}. {direction_sentence()}")]
    nav = [("main", "Table"), ("delta", "Difference to base"), ("memorization", "AMS / UMS"),
           ("frontier", "Frontier"), ("gallery", "Worst copies"), ("run", "Run")]
    parts.append("<nav>" + "".join(f'<a href="#{i}">{t}</a>' for i, t in nav) + "</nav>")
    gone = tuple(c for c in cols if all(r.cells[c.key].estimate is None and r.cells[c.key].reference_value is None
                                        for r in board.rows))
    shown = tuple(c for c in cols if c not in gone)
    main = [table_html("table-main", ["method"] + [c.title for c in shown], table_rows(board, shown, notes, False),
                       kinds)]
    if gone:
        why = sorted({board.rows[0].cells[c.key].reason or "not available" for c in gone})
        main.append(_p(f"Not shown: {', '.join(c.title for c in gone)}: n/a on every row "
                       f"{notes.ref('; '.join(why))}", "note"))
    headers = ["method"] + [c.title for c in cols]
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
    parts.append(_gallery_html(board, files_dir, galleries, captions or {}))
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
    title = html.escape(f"MemBench leaderboard: suite {board.suite}{tag}")
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


def _caption_item(c: Mapping[str, Any]) -> str:
    prompt = f"“{c['prompt']}”" if c.get("prompt") else "(prompt text not stored)"
    seed = "unknown" if c.get("seed") is None else str(c["seed"])
    return (f"<li><code>{html.escape(str(c['prompt_id']))}</code> {html.escape(prompt)}: Top-1 SSCD "
            f"<b>{c['top1_sscd']:.3f}</b>, seed {html.escape(seed)}, "
            f"reference {html.escape(str(c.get('reference')))}</li>")


def _gallery_html(board: "Leaderboard", files_dir: str, galleries: Mapping[str, str] | None,
                  captions: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    if not galleries:
        return _section("gallery", "Worst copies", _p("No gallery (see the list of artefacts not drawn).", "warn"))
    figs = []
    for label, name in galleries.items():
        src = html.escape(f"{files_dir}/{name}", quote=True)
        items = "".join(_caption_item(c) for c in captions.get(label, ()))
        figs.append(f'<figure data-gallery="{html.escape(label, quote=True)}"><img src="{src}" alt="worst copies of '
                    f'{html.escape(label, quote=True)}"><figcaption><b>{html.escape(label)}</b>: the prompts with the '
                    "highest Top-1 SSCD, top to bottom, generated image left, the reference it matches best right."
                    f"{f'<ol>{items}</ol>' if items else ''}</figcaption></figure>")
    return _section("gallery", "Worst copies", f'<div class="gallery">{"".join(figs)}</div>')


def write_html(board: "Leaderboard", path: Path, **kwargs: Any) -> Path:
    from membench_eval.store.atomic import write_atomic

    write_atomic(path, to_html(board, **kwargs))
    return path
