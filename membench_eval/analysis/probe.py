"""Object-level duplication probe: does a keyword alone bring memorized content into neutral prompts?

The word-level duplication paper (arXiv 2312.03692) finds objects duplicated in training images
appearing whenever their keyword does, even in prompts that are not a memorized caption. Probe:
N neutral prompts (the suite's general prompts, COCO's role; cycled with more seeds when N exceeds
them), each generated once as it is and once with the keyword appended (", KEYWORD"), the same
seed for both: a paired comparison per image. Per image, its best SSCD to ANY memorized image of
the suite; reported per side: the rate above ``threshold`` and SIDE's AMS/UMS bands
(``metrics.memorization``, default low < 0.5, mid 0.5-0.6, high > 0.6); and the rate difference
(with - without) with a 95% paired bootstrap interval over the N prompt/seed pairs
(``stats.ClusterBootstrap.paired_delta``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from membench_eval.analysis.effects import ImageScorer
    from membench_eval.suites.types import Suite

PROBE_CODE_VERSION = "membench-probe/v1"


def probe_items(suite: "Suite", keyword: str, n_images: int) -> list[tuple[str, str, str]]:
    """(base id, neutral prompt, prompt with the keyword) for each of the N image pairs."""
    from membench_eval.errors import DataError

    if suite.general is None or not suite.general.prompts:
        raise DataError(f"suite {suite.name}", "has no general (neutral) prompts for the probe")
    if not keyword.strip():
        raise DataError("--probe", "empty keyword")
    prompts = suite.general.prompts
    out = []
    for i in range(n_images):
        p = prompts[i % len(prompts)]
        out.append((f"{p.prompt_id}#probe{i // len(prompts)}", p.text, f"{p.text}, {keyword.strip()}"))
    return out


def _side(best: np.ndarray, nearest: list[str], threshold: float) -> dict[str, Any]:
    from membench_eval.metrics.memorization import scores_from_nearest

    scores = scores_from_nearest(best, nearest)
    return {"rate_above": float((best > threshold).mean()), "mean_best_sscd": float(best.mean()),
            "ams": scores.ams, "ums": scores.ums, "bands": scores.bands.describe()}


def run_probe(scorer: "ImageScorer", suite: "Suite", keyword: str, *, n_images: int = 16,
              threshold: float = 0.5) -> dict[str, Any]:
    """The probe for ``keyword`` (stored in the run store's results area: a rerun is free)."""
    from dataclasses import asdict

    from membench_eval.models.identity import model_identity
    from membench_eval.stats import ClusterBootstrap
    from membench_eval.store.results import ResultStore

    items = probe_items(suite, keyword, n_images)
    s = scorer.settings
    fields = {"scheme": PROBE_CODE_VERSION, "model": model_identity(scorer.pipe), "sscd": scorer.ctx.sscd.fingerprint,
              "items": items, "threshold": threshold, "references": sorted(scorer.ctx.reference_embeddings),
              "settings": {k: v for k, v in asdict(s).items() if k != "auto_batch_size"}}
    results = ResultStore(scorer.ctx.store.root, "probe")
    stored = results.get(fields)
    if stored is not None:
        return stored
    sims = scorer.similarities_of([(text, base) for base, text, _ in items] + [(kw, base) for base, _, kw in items], 1)
    ref_ids = sorted(scorer.ctx.reference_embeddings)
    mat = np.array([[row[0][r] for r in ref_ids] for row in sims])
    best, nearest = mat.max(axis=1), [ref_ids[j] for j in mat.argmax(axis=1)]
    n = len(items)
    without, with_ = best[:n], best[n:]
    boot = ClusterBootstrap(np.arange(n))
    delta = boot.paired_delta((with_ > threshold).astype(float), (without > threshold).astype(float))
    result = {"keyword": keyword, "n_images": n, "threshold": threshold,
              "without": _side(without, nearest[:n], threshold), "with": _side(with_, nearest[n:], threshold),
              "rate_difference": {k: float(v) for k, v in delta.to_dict().items() if k in ("mean", "low", "high")},
              "interval": "95% paired bootstrap over the N prompt/seed pairs (2000 resamples, fixed seed)",
              "nearest_with": nearest[n:]}
    results.put(fields, result)
    return result


def print_probe(result: dict[str, Any], out_dir: Path | None = None) -> None:
    """The probe as a table (and ``OUT/probe-<keyword>.json``)."""
    from tabulate import tabulate

    rows = []
    for side in ("without", "with"):
        r = result[side]
        rows.append([side, f"{r['rate_above']:.3f}", f"{r['mean_best_sscd']:.3f}",
                     " ".join(f"{k} {v:.2f}" for k, v in r["ams"].items()), " ".join(f"{k} {v:.2f}" for k, v in r["ums"].items())])
    d = result["rate_difference"]
    print(f"probe {result['keyword']!r}: {result['n_images']} neutral prompts with vs without it (same seeds); "
          f"best SSCD to any memorized image")
    print(tabulate(rows, headers=["keyword", f"rate SSCD > {result['threshold']:g}", "mean best SSCD", "AMS", "UMS"],
                   tablefmt="simple", disable_numparse=True))
    print(f"rate difference (with - without): {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] ({result['interval']}); "
          f"bands {result['with']['bands']}")
    if out_dir is not None:
        import re

        out_dir.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", result["keyword"])
        (out_dir / f"probe-{name}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
