"""Worst-copy gallery: per method, the prompts whose images copy their memorized image most.

For each row (method setting), the ``k`` trigger prompts with the highest Top-1 SSCD; for each, the
generated image that reaches it beside the reference it matches best (``PromptResult.per_image``:
``own_sscd`` / ``own_ref`` / ``seed``), captioned with the prompt, the score and the seed. One PNG
grid per row.

The images come from the run store: an image is found by (method, parameters, prompt id, seed) in
the store's metadata rows, restricted to the method code the leaderboard recorded (``metadata
["methods"][label]["sha256"]``, the store's ``method_source``) and, when several images qualify
(other batch sizes or devices), the one whose stored SSCD to that reference equals the recorded
score. :class:`StoreImages` also tells ``membench report`` which prompts have all their images.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from membench_eval.fetch.image_files import open_image
from membench_eval.store.keys import canonical_json

if TYPE_CHECKING:
    from PIL import Image

    from membench_eval.report.leaderboard import Leaderboard
    from membench_eval.report.records import PromptResult
    from membench_eval.store.run_store import RunStore

DEFAULT_K = 4
SSCD_SCORE_METRIC = "sscd_similarities"  # the store's per-image SSCD rows ({reference id: similarity})
# Rows whose images are not generated into the run store.
NOT_GENERATED = ("reference", "computed_reference")


def slug(label: str) -> str:
    """A file-name-safe form of a row label: ``rna n=6`` -> ``rna_n-6``."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", label.replace("=", "-")).strip("_.")
    return text or "row"


def seeds_of(result: "PromptResult", run_seed: Any) -> list[int] | None:
    """The seed of each image of ``result``: recorded per image, else derived from the run seed."""
    seeds = result.per_image.get("seed")
    if seeds and len(seeds) == result.n_images:
        return [int(s) for s in seeds]
    if run_seed is None:
        return None
    from membench_eval.generation.seeding import image_seed

    return [image_seed(int(run_seed), result.prompt_id, i) for i in range(result.n_images)]


class StoreImages:
    """The run store's images, looked up by what a leaderboard records about them."""

    def __init__(self, store: "RunStore", metadata: Mapping[str, Any]):
        self.store = store
        self.metadata = metadata
        store.refresh()  # images other writers (xdist workers) stored since this store was opened
        # Rows are looked up per (prompt, seed) in the store's index when asked: a gallery reads
        # the rows of the few images it draws, not the whole store.
        self._by: dict[tuple[str, int], list[dict[str, Any]]] = {}

    def _rows(self, prompt_id: str, seed: int) -> list[dict[str, Any]]:
        if (prompt_id, seed) not in self._by:
            self._by[(prompt_id, seed)] = self.store.find_records(prompt_id, seed)
        return self._by[(prompt_id, seed)]

    def candidates(self, result: "PromptResult", seed: int) -> list[dict[str, Any]]:
        params = canonical_json(result.params)
        rows = [r for r in self._rows(result.prompt_id, int(seed))
                if str(r.get("method")) == result.method and canonical_json(r.get("params") or {}) == params]
        sha = (self.metadata.get("methods") or {}).get(result.label, {}).get("sha256")
        if sha:
            rows = [r for r in rows if r.get("method_source") == sha]
        return rows

    def present(self, row: Mapping[str, Any]) -> bool:
        """The row's PNG is in place with its recorded size (a stat, not a re-hash)."""
        path = self.store.image_path(row["key"])
        try:
            size = path.stat().st_size
        except OSError:
            return False
        return row.get("png_bytes") is None or size == row["png_bytes"]

    def find(self, result: "PromptResult", seed: int, ref_id: str | None = None,
             score: float | None = None) -> dict[str, Any] | None:
        """The store row of one image of ``result`` (None when the store does not hold it)."""
        rows = [r for r in self.candidates(result, seed) if self.present(r)]
        if len(rows) > 1 and ref_id is not None and score is not None:
            matching = [r for r in rows if any(isinstance(v, dict) and ref_id in v
                                               and math.isclose(float(v[ref_id]), score, abs_tol=1e-6)
                                               for v in self._sscd_values(r["key"]))]
            rows = matching or rows
        return rows[0] if rows else None

    def _sscd_values(self, key: str) -> list[Any]:
        return self.store.score_values(key, SSCD_SCORE_METRIC)

    def missing_images(self, result: "PromptResult") -> int | None:
        """How many images of ``result`` the store lacks (None: their seeds are not known)."""
        seeds = seeds_of(result, self.metadata.get("seed"))
        if seeds is None:
            return None
        return sum(1 for s in seeds if not any(self.present(r) for r in self.candidates(result, s)))


@dataclass
class Copy:
    """One gallery entry: a prompt's most-copying image and the reference it matches best."""

    prompt_id: str
    score: float
    image_index: int | None
    seed: int | None
    ref_id: str | None
    prompt: str | None = None
    image: "Image.Image | None" = None
    reference: "Image.Image | None" = None
    problems: list[str] = field(default_factory=list)


def worst_copies(board: "Leaderboard", label: str, images: StoreImages | None,
                 references: Mapping[str, str | Path] | None, k: int = DEFAULT_K) -> list[Copy]:
    """The ``k`` trigger prompts of row ``label`` with the highest Top-1 SSCD (ties by prompt id)."""
    results = [r for r in board.results if r.label == label and r.role == "trigger"
               and r.metrics.get("top1_sscd") is not None and math.isfinite(r.metrics["top1_sscd"])]
    results.sort(key=lambda r: (-float(r.metrics["top1_sscd"]), r.prompt_id))
    out = []
    for r in results[:k]:
        own, refs = r.per_image.get("own_sscd"), r.per_image.get("own_ref")
        c = Copy(r.prompt_id, float(r.metrics["top1_sscd"]), None, None, None)
        if not own or not refs or len(own) != len(refs):
            c.problems.append("per-image SSCD not recorded")
            out.append(c)
            continue
        c.image_index = max(range(len(own)), key=lambda i: (own[i], -i))
        c.ref_id = str(refs[c.image_index])
        seeds = seeds_of(r, board.metadata.get("seed"))
        c.seed = seeds[c.image_index] if seeds else None
        if images is not None and c.seed is not None:
            row = images.find(r, c.seed, c.ref_id, float(own[c.image_index]))
            if row is None:
                c.problems.append("image not in the run store")
            else:
                c.prompt = row.get("prompt")
                try:
                    c.image = images.store.get_image(row["key"])
                except Exception as exc:  # noqa: BLE001 - a damaged image is a gallery note, never a failure
                    c.problems.append(f"image unreadable ({exc})")
        path = (references or {}).get(c.ref_id)
        if path is None:
            c.problems.append(f"reference {c.ref_id} not available")
        else:
            try:
                c.reference = open_image(path, what="reference image")
            except Exception as exc:  # noqa: BLE001
                c.problems.append(f"reference {c.ref_id} unreadable ({exc})")
        out.append(c)
    return out


def draw_gallery(label: str, copies: list[Copy], path: Path) -> Path:
    """One PNG: a row per copy, the generated image left and its best-matching reference right.
    No text in the pixels (the HTML page captions each pair: prompt, score, seed; ``captions``),
    except where an image is missing and the cell says why."""
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 2.5 * max(len(copies), 1)), dpi=100, layout="constrained")
    axes = np.atleast_2d(fig.subplots(max(len(copies), 1), 2, squeeze=False))
    for (left, right), c in zip(axes, copies):
        for ax, im, what in ((left, c.image, "generated image"), (right, c.reference, "reference image")):
            ax.set_xticks([])
            ax.set_yticks([])
            if im is not None:
                ax.imshow(np.asarray(im))
            else:
                why = "; ".join(p for p in c.problems if ("reference" in p) == (what == "reference image"))
                ax.text(0.5, 0.5, "\n".join(textwrap.wrap(f"{what} not shown: {why or 'not available'}", 30)),
                        ha="center", va="center", transform=ax.transAxes, fontsize=8)
    if not copies:
        axes[0][0].text(0.5, 0.5, "no trigger prompt with a Top-1 SSCD", ha="center", va="center")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def caption(c: Copy) -> dict[str, Any]:
    """What the page prints under one pair (text, not pixels)."""
    return {"prompt_id": c.prompt_id, "prompt": c.prompt, "top1_sscd": round(c.score, 3), "seed": c.seed,
            "image_index": c.image_index, "reference": c.ref_id}


def write_galleries(board: "Leaderboard", out_dir: str | Path, store: "RunStore",
                    references: Mapping[str, str | Path] | None, k: int = DEFAULT_K,
                    captions: dict[str, list[dict[str, Any]]] | None = None,
                    ) -> tuple[dict[str, Path], list[str]]:
    """``gallery-<row>.png`` in ``out_dir`` per row with trigger results; (label -> path, warnings).
    A row that fails is a warning; the others are still drawn. ``captions`` (filled when given):
    label -> one :func:`caption` per pair, top to bottom."""
    images = StoreImages(store, board.metadata)
    paths: dict[str, Path] = {}
    warnings: list[str] = []
    used: set[str] = set()
    for row in board.rows:
        if row.kind in NOT_GENERATED or not any(r.label == row.label and r.role == "trigger" for r in board.results):
            continue
        name = slug(row.label)
        while name in used:
            name += "_"
        used.add(name)
        try:
            copies = worst_copies(board, row.label, images, references, k)
            paths[row.label] = draw_gallery(row.label, copies, Path(out_dir) / f"gallery-{name}.png")
            if captions is not None:
                captions[row.label] = [caption(c) for c in copies]
        except Exception as exc:  # noqa: BLE001 - a gallery never fails the run
            warnings.append(f"worst-copy gallery of {row.label} not drawn: {type(exc).__name__}: {exc}")
            continue
        problems = sorted({p for c in copies for p in c.problems})
        if problems:
            warnings.append(f"worst-copy gallery of {row.label}: {'; '.join(problems)}")
    return paths, warnings
