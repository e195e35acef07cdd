"""The trade-off frontier: how much copying a method removes (Top-1 SSCD, lower is better) against how
much prompt fidelity it keeps (CLIP, higher is better).

Two panels: CLIP on the trigger prompts against Top-1 SSCD, and COCO CLIP (general prompts) against
Top-1 SSCD. One line per method through its parameter settings (sorted by parameter, each point
labelled ``n=6``...), base and the reference target (and a reference measured in this run) as
single points, every measured point with its 95% interval as error bars in both directions. A
panel whose column is not available in this run (no CLIP weights: n/a) says so in its place.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend switch), written
as PNG and SVG (SVG without a date, with fixed ids, so the same board gives the same file).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from membench_eval.report.leaderboard import Cell, Leaderboard, Row

X_KEY = "top1_sscd"
PANELS = (("clip", "CLIP (trigger prompts)"), ("coco_clip", "COCO CLIP (general prompts)"))


@dataclass(frozen=True)
class Point:
    row: str  # leaderboard label
    kind: str
    method: str
    text: str  # the point's label: its parameters, or the row label
    x: float
    y: float
    xerr: tuple[float, float] | None  # (below, above) the mean
    yerr: tuple[float, float] | None
    complete: bool = True


def params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _sort_key(row: "Row") -> tuple:
    out = []
    for k, v in sorted(row.params.items()):
        try:
            out.append((k, 0, float(v), ""))
        except (TypeError, ValueError):
            out.append((k, 1, 0.0, str(v)))
    return tuple(out)


def _err(cell: "Cell") -> tuple[float, float] | None:
    e = cell.estimate
    return None if e is None else (max(e.mean - e.low, 0.0), max(e.high - e.mean, 0.0))


def panel_points(board: "Leaderboard", y_key: str) -> tuple[list[Point], str | None]:
    """The points of one panel, and why the panel is empty (None when it has points)."""
    keys = {c.key for c in board.columns}
    for key in (X_KEY, y_key):
        if key not in keys:
            return [], f"{key} is not a column of this leaderboard"
    points: list[Point] = []
    reasons: list[str] = []
    rows = sorted(board.rows, key=lambda r: (r.method, _sort_key(r)))
    for row in rows:
        cx, cy = row.cells.get(X_KEY), row.cells.get(y_key)
        if cx is None or cy is None:
            continue
        if cx.value is None or cy.value is None:
            reasons += [c.reason for c in (cx, cy) if c.value is None and c.reason]
            continue
        text = row.label if row.kind in ("base", "reference", "computed_reference") or not row.params \
            else params_text(row.params)
        points.append(Point(row.label, row.kind, row.method, text, float(cx.value), float(cy.value), _err(cx), _err(cy),
                            row.complete))
    if points:
        return points, None
    why = board.unavailable.get(y_key) or board.unavailable.get(X_KEY) or (reasons[0] if reasons else None)
    return [], why or "no row has both values"


def plot_frontier(board: "Leaderboard", out_base: str | Path) -> list[Path]:
    """Write ``<out_base>.png`` and ``<out_base>.svg``; returns both paths."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    out_base = Path(out_base)
    out_base.parent.mkdir(parents=True, exist_ok=True)
    with rc_context({"svg.hashsalt": "membench-frontier", "svg.fonttype": "none", "font.size": 9}):
        fig = Figure(figsize=(12, 5.2), dpi=100, layout="constrained")
        axes = fig.subplots(1, len(PANELS))
        colors: dict[str, Any] = {}
        cycle = [f"C{i}" for i in range(10)]
        for ax, (y_key, y_title) in zip(axes, PANELS):
            points, why = panel_points(board, y_key)
            _draw_panel(ax, points, why, y_title, colors, cycle)
        fig.suptitle(f"Trade-off frontier, suite {board.suite}: lower Top-1 SSCD and higher CLIP are better "
                     f"(error bars: {int(round(100 * board.bootstrap.get('confidence', 0.95)))}% intervals)")
        paths = [out_base.with_suffix(".png"), out_base.with_suffix(".svg")]
        fig.savefig(paths[0], format="png", dpi=110, metadata={"Software": None})
        fig.savefig(paths[1], format="svg", metadata={"Date": None, "Creator": None})
    return paths


def _draw_panel(ax: Any, points: list[Point], why: str | None, y_title: str, colors: dict[str, Any],
                cycle: list[str]) -> None:
    ax.set_xlabel("Top-1 SSCD (trigger prompts; lower: fewer copies)")
    ax.set_ylabel(f"{y_title}; higher: closer to the prompt")
    ax.set_title(f"{y_title} vs Top-1 SSCD")
    if not points:
        ax.set_xticks([])
        ax.set_yticks([])
        msg = "\n".join([f"{y_title}: not available in this run"] + textwrap.wrap(str(why), 48))
        ax.text(0.5, 0.5, msg, ha="center", va="center", transform=ax.transAxes, fontsize=10,
                bbox={"boxstyle": "round", "facecolor": "#f4f4f4", "edgecolor": "#999999"})
        return
    groups: dict[str, list[Point]] = {}
    for p in points:
        key = p.row if p.kind in ("base", "reference", "computed_reference") else p.method
        groups.setdefault(key, []).append(p)
    for key, ps in groups.items():
        kind = ps[0].kind
        if kind == "base":
            color, marker, label = "black", "*", "base"
        elif kind in ("reference", "computed_reference"):
            color, marker, label = "#2a7f2a", "X" if kind == "reference" else "P", ps[0].row
        else:
            color = colors.setdefault(key, cycle[len(colors) % len(cycle)])
            marker, label = "o", key
        xs, ys = [p.x for p in ps], [p.y for p in ps]
        xerr = _errs([p.xerr for p in ps])
        yerr = _errs([p.yerr for p in ps])
        style = "-" if len(ps) > 1 and kind not in ("base", "reference", "computed_reference") else "none"
        ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, color=color, marker=marker, linestyle=style, capsize=2,
                    markersize=9 if marker in ("*", "X", "P") else 5, elinewidth=0.8, label=label)
        for p in ps:
            text = p.text if p.complete else f"{p.text} (incomplete)"
            if kind == "reference":
                text += " (published)"
            if not p.complete:
                ax.plot([p.x], [p.y], marker="o", markersize=10, markerfacecolor="none", markeredgecolor="red")
            ax.annotate(text, (p.x, p.y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=color)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=7)


def _errs(errs: list[tuple[float, float] | None]) -> list[list[float]] | None:
    if all(e is None for e in errs):
        return None
    return [[e[0] if e else 0.0 for e in errs], [e[1] if e else 0.0 for e in errs]]
