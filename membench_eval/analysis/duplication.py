"""Word-level duplication in training captions: which words are tied to a memorized image's captions.

The word-level duplication paper (arXiv 2312.03692) finds that words duplicated with an image in
the training captions trigger its copy. Here, per word w and memorized image m, the 2x2 table of
captions (those of m vs all others) x (contains w or not) is scored by:

* Dunning's log-likelihood ratio G^2 = 2 sum O ln(O / E) (Dunning 1993, "Accurate methods for the
  statistics of surprise and coincidence"), signed: negative when w is rarer among m's captions
  than overall. It stays well behaved for rare words, where PMI is not;
* PMI = ln(P(w | m) / P(w)), for words that occur in m's captions at all.

A caption belongs to m when the caption list labels it so (a group: the mini's
``training_captions.json`` is ``{"memorized": {name: [captions]}, "general": [...]}``; a .jsonl /
.parquet row may carry ``url`` / ``image`` / ``group``) and the label is m's id, URL, file name or
stem; otherwise, when no caption is labelled m, the captions that are near-duplicates of one of
m's suite prompts (word-set Jaccard >= 0.5, LAION's repeated captions). Caption lists: .txt (one
per line), .jsonl, .json, .parquet; words as ``analysis.words`` splits them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from membench_eval.errors import DataError
from membench_eval.analysis.words import words_of

if TYPE_CHECKING:
    from membench_eval.suites.types import Suite

TEXT_FIELDS = ("caption", "text", "TEXT", "prompt")
GROUP_FIELDS = ("group", "image", "url", "URL", "memorized")
FORMATS = (".txt", ".jsonl", ".json", ".parquet")
NEAR_DUPLICATE_JACCARD = 0.5


@dataclass(frozen=True)
class CaptionList:
    """Captions and, where the file says, the image (group) each belongs to."""

    captions: tuple[str, ...]
    groups: tuple[str | None, ...]
    source: str


def _row(path: Path, number: int, value: Any) -> tuple[str, str | None]:
    if isinstance(value, str):
        return value, None
    if isinstance(value, dict):
        text = next((value[f] for f in TEXT_FIELDS if isinstance(value.get(f), str)), None)
        if text is not None:
            group = next((str(value[f]) for f in GROUP_FIELDS if value.get(f) is not None), None)
            return text, group
    raise DataError(path, f"expected a caption string or an object with one of {', '.join(TEXT_FIELDS)}", row=number)


def load_captions(path: str | Path) -> CaptionList:
    """Read a caption list (.txt, .jsonl, .json, .parquet); DataError names the file on bad input."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(path, f"unknown caption file format {path.suffix or '(none)'!r}; use one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise DataError(path, "caption file not found")
    rows: list[tuple[str, str | None]] = []
    if suffix == ".txt":
        rows = [(line.strip(), None) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif suffix == ".jsonl":
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(_row(path, n, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise DataError(path, f"not JSON ({exc.msg})", row=n) from None
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(path, f"not JSON ({exc.msg})") from None
        rows = _json_rows(path, data)
    else:
        rows = _parquet_rows(path)
    if not rows:
        raise DataError(path, "no captions")
    return CaptionList(tuple(r[0] for r in rows), tuple(r[1] for r in rows), str(path))


def _json_rows(path: Path, data: Any) -> list[tuple[str, str | None]]:
    if isinstance(data, list):
        return [_row(path, n, v) for n, v in enumerate(data, 1)]
    if isinstance(data, dict):
        groups = data.get("memorized", data)
        rows: list[tuple[str, str | None]] = []
        if isinstance(groups, dict):
            for group, captions in groups.items():
                if group == "general" or not isinstance(captions, list):
                    continue
                rows += [(_row(path, group, c)[0], str(group)) for c in captions]
        general = data.get("general", [])
        if isinstance(general, list):
            rows += [_row(path, n, v) for n, v in enumerate(general, 1)]
        return rows
    raise DataError(path, "expected a list of captions or an object of {group: [captions]}")


def _parquet_rows(path: Path) -> list[tuple[str, str | None]]:
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except ImportError as exc:
        raise DataError(path, f"reading parquet needs pyarrow ({exc}); `pip install pyarrow`") from None
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file: one line naming it
        raise DataError(path, f"not a readable parquet file ({type(exc).__name__}: {exc})") from None
    text = next((c for c in TEXT_FIELDS if c in frame.columns), None)
    if text is None:
        raise DataError(path, f"no caption column (one of {', '.join(TEXT_FIELDS)}); columns: {list(frame.columns)}")
    group = next((c for c in GROUP_FIELDS if c in frame.columns), None)
    texts = frame[text].fillna("").astype(str).tolist()
    groups = frame[group].astype(str).tolist() if group else [None] * len(texts)
    return [(t, g) for t, g in zip(texts, groups) if t.strip()]


def image_caption_mask(captions: CaptionList, suite: "Suite", image_id: str) -> np.ndarray:
    """Which captions belong to memorized image ``image_id`` (by label, else near-duplicates of
    the suite's prompts of that image)."""
    image = suite.memorized.get(image_id)
    names = {image_id}
    if image is not None:
        names |= {image.source, Path(image.source).name, Path(image.source).stem}
    mask = np.array([g is not None and g in names for g in captions.groups], dtype=bool)
    if mask.any():
        return mask
    prompts = [set(words_of(p.text)) for p in (suite.trigger.prompts if suite.trigger else ()) if image_id in p.memorized_ids]
    caps = [set(words_of(c)) for c in captions.captions]
    return np.array([any(len(c & p) / max(1, len(c | p)) >= NEAR_DUPLICATE_JACCARD for p in prompts) for c in caps], dtype=bool)


def word_association(captions: CaptionList, mask: np.ndarray) -> dict[str, dict[str, float]]:
    """Per word of the list: signed G^2, PMI (None when absent from the image's captions), and counts."""
    from scipy.special import xlogy
    from sklearn.feature_extraction.text import CountVectorizer

    vec = CountVectorizer(binary=True, lowercase=True, token_pattern=r"(?u)\w+")
    x = vec.fit_transform(captions.captions)
    n, n_in = x.shape[0], int(mask.sum())
    a = np.asarray(x[mask].sum(axis=0)).ravel().astype(np.float64)  # in the image's captions, with w
    total = np.asarray(x.sum(axis=0)).ravel().astype(np.float64)
    b = total - a
    observed = np.stack([a, n_in - a, b, (n - n_in) - b])
    rows = np.array([n_in, n_in, n - n_in, n - n_in], dtype=np.float64)[:, None]
    cols = np.stack([total, n - total, total, n - total])
    expected = rows * cols / n
    g2 = 2.0 * (xlogy(observed, observed) - xlogy(observed, np.where(expected > 0, expected, 1.0))).sum(axis=0)
    sign = np.where(a * n >= total * n_in, 1.0, -1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.where(a > 0, np.log(a * n / (n_in * total)), np.nan) if n_in else np.full_like(a, np.nan)
    return {w: {"g2": float(sign[j] * max(g2[j], 0.0)), "pmi": None if np.isnan(pmi[j]) else float(pmi[j]),
                "in_image": int(a[j]), "total": int(total[j])}
            for w, j in vec.vocabulary_.items()}


def duplication_scores(captions: CaptionList, suite: "Suite", image_ids: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per word, its association with the image (of ``image_ids``) it is most tied to (largest G^2)."""
    best: dict[str, dict[str, float]] = {}
    for image_id in image_ids:
        mask = image_caption_mask(captions, suite, image_id)
        if not mask.any():
            continue
        for w, score in word_association(captions, mask).items():
            if w not in best or score["g2"] > best[w]["g2"]:
                best[w] = {**score, "image": image_id}
    return best


def rank_correlation(duplication: Sequence[float], effect: Sequence[float], *, n_resamples: int = 2000,
                     seed: int = 20240607, confidence: float = 0.95) -> dict[str, float]:
    """Spearman's rho (scipy) of duplication vs trigger effect over words, with a percentile
    bootstrap interval over words (resamples where rho is undefined, a constant side, are left out)."""
    from scipy.stats import rankdata, spearmanr

    x, y = np.asarray(duplication, dtype=np.float64), np.asarray(effect, dtype=np.float64)
    if x.size < 3:
        return {"rho": float("nan"), "low": float("nan"), "high": float("nan"), "n_words": int(x.size)}
    rho = float(spearmanr(x, y).statistic)
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_resamples, x.size))
    # Spearman's rho of every resample at once: Pearson's r of the (tie-averaged) ranks.
    rx, ry = rankdata(x[idx], axis=1), rankdata(y[idx], axis=1)
    rx, ry = rx - rx.mean(axis=1, keepdims=True), ry - ry.mean(axis=1, keepdims=True)
    denom = np.sqrt((rx ** 2).sum(axis=1) * (ry ** 2).sum(axis=1))
    ok = denom > 0
    reps = (rx * ry).sum(axis=1)[ok] / denom[ok]
    tail = (1 - confidence) / 2
    low, high = np.quantile(reps, [tail, 1 - tail]) if reps.size else (np.nan, np.nan)
    return {"rho": rho, "low": float(low), "high": float(high), "n_words": int(x.size)}
