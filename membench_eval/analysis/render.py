"""An attribution as a table (printed) and as a picture of the prompt with its words shaded.

How to read both (the README's "Why does this prompt copy?" section shows one picture):

* every effect is a DROP, ``base - variant`` averaged over the K seeded images, with its 95%
  bootstrap interval over images: positive = the prompt copies less without the word, so the word
  carries the copy; an interval that holds 0 is no measured effect;
* ``SSCD`` is the image's Top-1 SSCD to the prompt's memorized image(s), ``signal`` Wen et al.'s
  single-step detection signal, ``grad`` the norm of the signal's gradient at the word's tokens;
* in the picture, one line per effect, each word shaded by its effect relative to the line's
  largest: red carries the copy, blue works against it (the gradient line has no sign: darker =
  larger); the minimal trigger found by greedy removal is printed underneath.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROWS = (("SSCD drop, word removed", ("removed", "sscd")), ("SSCD drop, word replaced", ("replaced", "sscd")),
        ("signal drop, word removed", ("removed", "signal")), ("gradient norm (Wen et al.)", ("grad",)))


def _get(row: dict[str, Any], path: tuple[str, ...]) -> dict[str, float]:
    for part in path:
        row = row[part]
    return row  # type: ignore[return-value]


def _cell(est: dict[str, float], digits: int) -> str:
    return f"{est['mean']:+.{digits}f} [{est['low']:+.{digits}f}, {est['high']:+.{digits}f}]"


def attribution_table(result: dict[str, Any], duplication: dict[str, float] | None = None) -> str:
    """Per word: every effect with its interval (and the word's duplication score when given)."""
    from tabulate import tabulate

    headers = ["#", "word", "tokens", "SSCD drop removed", "SSCD drop replaced", "signal drop removed",
               "signal drop replaced", "grad"]
    if duplication is not None:
        headers.append("dup G2")
    token_text = {t["index"]: t["token"] for t in result["tokens"]}
    body = []
    for w in result["words"]:
        row = [w["index"], w["word"], " ".join(token_text.get(j, "?") for j in w["tokens"]),
               _cell(w["removed"]["sscd"], 3), _cell(w["replaced"]["sscd"], 3),
               _cell(w["removed"]["signal"], 2), _cell(w["replaced"]["signal"], 2), _cell(w["grad"], 3)]
        if duplication is not None:
            row.append(f"{duplication.get(w['word'].lower(), 0.0):.1f}")
        body.append(row)
    return tabulate(body, headers=headers, tablefmt="simple", disable_numparse=True)


def token_table(result: dict[str, Any]) -> str:
    """Per BPE token of words split into several: removal effects and gradient."""
    from tabulate import tabulate

    words = {w["index"]: w for w in result["words"]}
    body = [[t["index"], t["token"], words[t["word"]]["word"], _cell(t["removed"]["sscd"], 3),
             _cell(t["removed"]["signal"], 2), _cell(t["grad"], 3)]
            for t in result["tokens"] if t["word"] is not None and len(words[t["word"]]["tokens"]) > 1]
    if not body:
        return ""
    return tabulate(body, headers=["#", "token", "of word", "SSCD drop removed", "signal drop removed", "grad"],
                    tablefmt="simple", disable_numparse=True)


def render_picture(result: dict[str, Any], path: str | Path, *, title: str | None = None) -> Path:
    """Write the shaded-prompt PNG of ``result`` to ``path`` (matplotlib, no global state)."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    words = result["words"]
    height = 1.1 + 0.55 * len(ROWS)
    fig = Figure(figsize=(30.0, height), dpi=100)  # wide enough to lay out; cut to the text below
    FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    inches = fig.dpi_scale_trans  # positions in inches from the bottom left: stay put when cut
    diverging, sequential = colormaps["RdBu_r"], colormaps["Reds"]
    right = 0.0

    def put(x: float, y: float, text: str, **kw: Any) -> float:
        t = fig.text(x, y, text, transform=inches, va="center", **kw)
        return x + t.get_window_extent(renderer).width / fig.dpi

    right = put(0.1, height - 0.28, title or f"{result['prompt_id']}: base Top-1 SSCD {result['base']['top1']:.3f}, "
                f"K = {result['config']['images']} images", fontsize=11, weight="bold")
    for r, (label, path_) in enumerate(ROWS):
        y = height - 0.8 - 0.55 * r
        put(0.1, y, label, fontsize=9, color="0.25")
        means = [_get(w, path_)["mean"] for w in words]
        scale = max((abs(m) for m in means), default=0.0) or 1.0
        x = 2.2
        for w, m in zip(words, means):
            level = 0.15 + 0.75 * max(m, 0.0) / scale if path_ == ("grad",) else 0.5 + 0.45 * m / scale
            colour = (sequential if path_ == ("grad",) else diverging)(level)
            dark = sum(colour[:3]) < 1.4
            x = put(x, y, w["word"], fontsize=12, family="DejaVu Sans", color="white" if dark else "black",
                    bbox={"facecolor": colour, "edgecolor": "none", "pad": 2.5}) + 0.07
        right = max(right, x)
    minimal = result.get("minimal")
    if minimal:
        note = (f"minimal trigger (greedy, Top-1 >= {minimal['threshold']:g}): \"{minimal['trigger']}\" "
                f"Top-1 {minimal['top1']:.3f}" if minimal["reached"] else
                f"base Top-1 {minimal['base_top1']:.3f} is below {minimal['threshold']:g}: no copy to keep")
        right = max(right, put(0.1, 0.25, note, fontsize=9, style="italic"))
    fig.set_size_inches(right + 0.2, height)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out
