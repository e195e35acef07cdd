"""The paper's published numbers (MemBench Table 3), to put beside a run's measured cells.

Numbers typed in by hand from ``/work/shared/docs/membench-reference.md`` ("Full sweep rows of the
paper's Table 3" and the base row of "Paper table to reproduce"), which transcribes Table 3 of
Hong, Oh, Sung (2024), "MemBench: Memorized Image Trigger Prompt Dataset for Diffusion Models":
SD 1.4, MemBench's SD1 trigger prompts (10 images each) and the first COCO val2017 caption of each
image (1 image each); SSCD ``disc_large``, CLIP score open_clip ViT-g-14 / laion2b_s12b_b42k, LAION
aesthetic head on OpenAI CLIP ViT-L/14. The reference row (image search: Top-1 0.088, CLIP 0.310)
is the suite's reference target (``suites.SD1_TARGETS``), not repeated here.

Keyed by method name and parameter value, e.g. ``("rna", {"n": 6})``; base has no parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PAPER_SOURCE = "MemBench (Hong et al. 2024), Table 3, SD 1.4"
# What the paper measured with (compared with the run's metadata before a difference is shown).
PAPER_MODEL = "CompVis/stable-diffusion-v1-4"
PAPER_SSCD_BACKEND = "disc_large"
PAPER_CLIP = ("ViT-g-14", "laion2b_s12b_b42k")
PAPER_AESTHETIC_CLIP = ("ViT-L-14", "openai")

# Column order of Table 3 (leaderboard column keys).
COLUMNS = ("top1_sscd", "top3_sscd", "sscd_gt_05", "clip", "aesthetic", "coco_clip", "coco_aesthetic")
TRIGGER_COLUMNS = COLUMNS[:5]  # on MemBench's SD1 trigger prompts
GENERAL_COLUMNS = COLUMNS[5:]  # on COCO captions

BASE = (0.641, 0.605, 0.451, 0.273, 5.25, 0.321, 5.37)

# (method, parameter): (parameter values in the paper's sweep order, one tuple per column of COLUMNS).
SWEEPS: dict[tuple[str, str], tuple[tuple[float, ...], tuple[tuple[float, ...], ...]]] = {
    ("rna", "n"): ((1, 2, 3, 4, 5, 6), (
        (0.479, 0.389, 0.329, 0.287, 0.254, 0.228),
        (0.425, 0.338, 0.280, 0.239, 0.213, 0.189),
        (0.241, 0.165, 0.121, 0.089, 0.074, 0.055),
        (0.270, 0.270, 0.267, 0.264, 0.262, 0.258),
        (5.18, 5.14, 5.13, 5.10, 5.08, 5.06),
        (0.314, 0.310, 0.307, 0.304, 0.302, 0.298),
        (5.34, 5.33, 5.30, 5.29, 5.28, 5.24),
    )),
    ("rta", "n"): ((1, 2, 3, 4, 5, 6), (
        (0.497, 0.397, 0.330, 0.282, 0.257, 0.228),
        (0.446, 0.347, 0.285, 0.240, 0.217, 0.190),
        (0.265, 0.175, 0.129, 0.094, 0.080, 0.056),
        (0.269, 0.268, 0.266, 0.264, 0.262, 0.258),
        (5.20, 5.19, 5.17, 5.15, 5.14, 5.10),
        (0.316, 0.314, 0.310, 0.306, 0.302, 0.299),
        (5.34, 5.32, 5.29, 5.27, 5.26, 5.27),
    )),
    ("wen", "l"): ((7, 6, 5, 4, 3, 2), (
        (0.410, 0.355, 0.312, 0.259, 0.181, 0.096),
        (0.346, 0.289, 0.246, 0.199, 0.139, 0.075),
        (0.134, 0.089, 0.059, 0.035, 0.015, 0.001),
        (0.270, 0.270, 0.269, 0.268, 0.264, 0.242),
        (5.16, 5.15, 5.14, 5.13, 5.11, 4.97),
        (0.321,) * 6,
        (5.37,) * 6,
    )),
    ("ren", "c"): ((1.0, 1.1, 1.2, 1.3), (
        (0.289, 0.283, 0.278, 0.275),
        (0.247, 0.239, 0.232, 0.227),
        (0.083, 0.071, 0.058, 0.050),
        (0.263, 0.260, 0.257, 0.254),
        (5.17, 5.17, 5.15, 5.14),
        (0.316, 0.313, 0.309, 0.304),
        (5.33, 5.31, 5.28, 5.26),
    )),
}


def paper_columns(suite: str) -> tuple[str, ...]:
    """Columns with published numbers for ``suite``: the trigger columns on ``sd1``, the COCO
    columns on ``coco``, all on ``sd1+coco``; none elsewhere (``mini``, user suites)."""
    parts = set(suite.split("+"))
    return (TRIGGER_COLUMNS if "sd1" in parts else ()) + (GENERAL_COLUMNS if "coco" in parts else ())


def paper_row(method: str, params: Mapping[str, Any]) -> dict[str, float] | None:
    """Table 3's numbers (column key -> value) for ``method`` at ``params``; None when the paper has no
    such row (another method, a parameter value outside its sweep, or extra parameters)."""
    if method == "base":
        return dict(zip(COLUMNS, BASE)) if not params else None
    if len(params) != 1:
        return None
    (name, value), = params.items()
    sweep = SWEEPS.get((method, name))
    if sweep is None:
        return None
    try:
        wanted = float(value)
    except (TypeError, ValueError):
        return None
    values, columns = sweep
    for k, v in enumerate(values):
        if abs(float(v) - wanted) < 1e-9:
            return {col: column[k] for col, column in zip(COLUMNS, columns)}
    return None
