"""Every file a run's report consists of, written by one function: :func:`write_report`.

Beside ``<out>/<stem>.md`` and ``.json`` (``report.output.write_leaderboard``, written first, so the
tables exist whatever happens next):

- ``<stem>.tex`` (booktabs) and ``<stem>.csv``: the main table (``report.exports``);
- ``<stem>_files/frontier.png`` and ``.svg``: the trade-off frontier (``report.frontier``);
- ``<stem>_files/gallery-<row>.png``: the worst copies per method (``report.gallery``; needs the
  run store for the images, skipped with a note without it);
- ``<stem>.html``: the static report, its images in ``<stem>_files/`` (``report.html``).

The markdown links the figures and exports. A plot or gallery that fails never fails the run: it is
a warning (returned in ``ReportFiles.warnings``, printed by the callers, listed in the HTML) and
every table is still written. The pytest plugin, ``membench run`` and ``membench report`` call this.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from membench_eval.report.output import write_leaderboard
from membench_eval.store.atomic import write_atomic
from membench_eval.report.render import to_markdown

if TYPE_CHECKING:
    from membench_eval.metrics.memorization import MemorizationBands
    from membench_eval.report.leaderboard import Leaderboard
    from membench_eval.store.run_store import RunStore

NO_STORE = "worst-copy gallery skipped: no run store given (its images are read from the store)"


@dataclass
class ReportFiles:
    """What :func:`write_report` wrote, and what it could not draw (``warnings``)."""

    markdown: Path
    json: Path
    html: Path | None = None
    latex: Path | None = None
    csv: Path | None = None
    files_dir: Path | None = None
    frontier: list[Path] = field(default_factory=list)
    galleries: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __iter__(self):  # ``md, js = write_report(...)`` reads like write_leaderboard's pair
        return iter((self.markdown, self.json))

    def __getitem__(self, i: int) -> Path:
        return (self.markdown, self.json)[i]

    def paths(self) -> list[Path]:
        out = [self.markdown, self.json] + [p for p in (self.html, self.latex, self.csv) if p is not None]
        return out + list(self.frontier) + list(self.galleries.values())

    def summary_lines(self) -> list[str]:
        """``membench: wrote ...`` and one ``membench: warning: ...`` line per warning."""
        main = [self.markdown, self.json] + [p for p in (self.html, self.latex, self.csv) if p is not None]
        figures = len(self.frontier) + len(self.galleries)
        line = "membench: wrote " + ", ".join(str(p) for p in main)
        if figures and self.files_dir is not None:
            line += f" (+ {figures} figure file(s) in {self.files_dir})"
        return [line] + [f"membench: warning: {w}" for w in self.warnings]


def report_stem(md_path: Path) -> str:
    return md_path.name[: -len(".md")] if md_path.name.endswith(".md") else md_path.stem


def write_report(
    board: "Leaderboard",
    out_dir: str | os.PathLike,
    *,
    store: "RunStore | None" = None,
    failed: bool = False,
    references: Mapping[str, str | os.PathLike] | None = None,
    bands: "MemorizationBands | None" = None,
    gallery_k: int = 4,
    warnings: Sequence[str] = (),
) -> ReportFiles:
    """Write every artefact of ``board`` into ``out_dir``; returns the paths and the warnings.

    ``store``: the run store holding the board's images (galleries; None skips them with a note).
    ``references``: memorized image id -> reference image file (the galleries' right column);
    recorded in the JSON's metadata as ``reference_images`` so ``membench report`` finds them again.
    ``bands``: AMS/UMS bands other than the defaults (recorded as ``memorization_bands``).
    ``failed``: the run had failing items: every file is ``<stem>.failed.*`` (``write_leaderboard``).
    ``warnings``: the caller's own notes (e.g. prompts left out), listed first with the artefacts'.
    """
    from membench_eval.report.bands import reuse_band_sections

    with reuse_band_sections():  # the AMS/UMS section once for the JSON, markdown and HTML
        return _write_report(board, out_dir, store, failed, references, bands, gallery_k, warnings)


def _write_report(board: "Leaderboard", out_dir: str | os.PathLike, store: "RunStore | None", failed: bool,
                  references: Mapping[str, str | os.PathLike] | None, bands: "MemorizationBands | None",
                  gallery_k: int, warnings: Sequence[str]) -> ReportFiles:
    meta = dict(board.metadata)
    if references:
        meta["reference_images"] = {str(k): str(v) for k, v in sorted(references.items())}
    if bands is not None:
        meta["memorization_bands"] = bands.to_dict()
    if meta != board.metadata:
        board = replace(board, metadata=meta)
    md_path, json_path = write_leaderboard(board, out_dir, failed=failed)
    out = ReportFiles(md_path, json_path, warnings=list(warnings))
    stem = report_stem(md_path)
    files = md_path.parent / f"{stem}_files"
    files.mkdir(parents=True, exist_ok=True)
    for old in list(files.glob("frontier.*")) + list(files.glob("gallery-*.png")):
        old.unlink(missing_ok=True)  # figures of an earlier run of this stem (rows may have changed)
    out.files_dir = files
    out.latex, out.csv = _exports(board, md_path)

    try:
        from membench_eval.report.frontier import plot_frontier

        out.frontier = plot_frontier(board, files / "frontier")
    except Exception as exc:  # noqa: BLE001 - a plot never fails the run
        out.warnings.append(f"trade-off frontier not drawn: {type(exc).__name__}: {exc}")
    captions: dict[str, list[dict[str, Any]]] = {}
    if store is None:
        out.warnings.append(NO_STORE)
    else:
        try:
            from membench_eval.report.gallery import write_galleries

            out.galleries, notes = write_galleries(board, files, store, meta.get("reference_images"), gallery_k,
                                                   captions=captions)
            out.warnings += notes
        except Exception as exc:  # noqa: BLE001 - nor does a gallery
            out.warnings.append(f"worst-copy galleries not drawn: {type(exc).__name__}: {exc}")

    html_path = md_path.parent / f"{stem}.html"
    rel = files.name
    page = to_markdown(board, failed=failed).rstrip()
    write_atomic(md_path, page + "\n\n" + _links_markdown(out, rel, html_path.name))
    from membench_eval.report.html import write_html

    links = {"markdown": md_path.name, "JSON": json_path.name, "LaTeX": out.latex.name, "CSV": out.csv.name}
    out.html = write_html(board, html_path, files_dir=rel, frontier=[p.name for p in out.frontier],
                          galleries={k: p.name for k, p in out.galleries.items()}, warnings=out.warnings,
                          links=links, failed=failed, captions=captions)
    return out


def _exports(board: "Leaderboard", md_path: Path) -> tuple[Path, Path]:
    from membench_eval.report.exports import write_exports

    return write_exports(board, md_path)


def _links_markdown(out: ReportFiles, rel: str, html_name: str) -> str:
    """The markdown's last section: links to the figures and the other formats (relative paths)."""
    lines = ["## Figures and exports", ""]
    lines.append(f"- HTML report: [{html_name}]({html_name}); main table as LaTeX [{out.latex.name}]({out.latex.name}) "
                 f"and CSV [{out.csv.name}]({out.csv.name})")
    if out.frontier:
        alt = " / ".join(f"[{p.suffix[1:].upper()}]({rel}/{p.name})" for p in out.frontier)
        lines += [f"- Trade-off frontier ({alt}):", "", f"  ![trade-off frontier]({rel}/{out.frontier[0].name})"]
    else:
        lines.append("- Trade-off frontier: not drawn (see the run's warnings)")
    if out.galleries:
        lines.append("- Worst copies: " + ", ".join(f"[{label}]({rel}/{p.name})" for label, p in out.galleries.items()))
    else:
        lines.append("- Worst copies: not drawn (no run store given, or see the run's warnings)")
    return "\n".join(lines) + "\n"
