"""The metric registry: a toy per-image metric registered in ONE place flows through scoring, the
run store, every leaderboard format, the JSON and the gates, and is gone again once unregistered.

The toy: mean image brightness (a scorer with ``score(images)`` and an identity), higher is better,
in the main table. Everything else here only reads the registry.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from membench_eval.evaluation.gates import GateSpecError, check_gates, parse_gate, parse_gates
from membench_eval.metrics import registry
from membench_eval.metrics.registry import MetricSpec, MetricUnavailable
from tests.report.test_report_synthetic import KINDS, synthetic_run


class BrightnessScorer:
    """Mean pixel value in [0, 1] per image."""

    def score(self, images: list[Image.Image]) -> np.ndarray:
        return np.array([np.asarray(im.convert("RGB"), dtype=np.float64).mean() / 255.0 for im in images])

    def metadata(self) -> dict[str, str]:
        return {"brightness_scale": "mean/255"}


# The one registration (used by the fixture).
BRIGHTNESS = MetricSpec("brightness", "Brightness", higher_is_better=True, table="main",
                        load=lambda options, suite: BrightnessScorer())


@pytest.fixture
def brightness():
    """The toy metric registered for one test only; no other test ever sees it."""
    with registry.registered(BRIGHTNESS) as spec:
        yield spec
    assert "brightness" not in {s.name for s in registry.metrics()}


def test_todays_metrics_are_registered_in_table_order() -> None:
    assert [c.key for c in registry.columns("main")] == [
        "top1_sscd", "top3_sscd", "sscd_gt_05", "clip", "aesthetic", "coco_clip", "coco_aesthetic"]
    assert [c.key for c in registry.columns("extra")] == ["top1_any", "coco_top1_any"]
    assert [s.name for s in registry.image_metrics()] == ["clip", "aesthetic"]
    assert registry.get_metric("clip").uses_text and registry.get_metric("clip").store_metric == "clip_score"
    assert registry.get_metric("aesthetic").store_metric == "aesthetic_score"
    assert not registry.get_metric("top1_sscd").higher_is_better and registry.get_metric("aesthetic").decimals == 2
    assert registry.direction_sentence() == "Lower SSCD is better; higher CLIP and Aesthetic are better."
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.get_metric("clip"))
    with registry.registered(MetricSpec("coco_top1", "x", False, ("trigger",), source="sscd")):
        with pytest.raises(ValueError, match="column key"):  # coco_<name> may not shadow another column
            registry.register(MetricSpec("top1", "y", False, source="sscd"))
    with pytest.raises(ValueError, match="loader"):
        MetricSpec("nothing", "Nothing", True)


class _Sscd:
    """An SSCD stand-in: the embedding of an image is its mean colour, normalised."""

    fingerprint = "toy-sscd"

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        v = np.array([np.asarray(im.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(0) + 1 for im in images])
        return v / np.linalg.norm(v, axis=1, keepdims=True)


@dataclasses.dataclass
class _Context:
    sscd: Any
    reference_embeddings: dict[str, np.ndarray]
    store: Any
    settings: Any
    quality_scorers: dict[str, Any]
    options: Any = None
    counts: dict[str, int] = dataclasses.field(default_factory=lambda: {"scored": 0, "scores_reused": 0})


def test_a_registered_metric_is_scored_stored_and_aggregated(brightness, tmp_path: Path, monkeypatch) -> None:
    from types import SimpleNamespace

    from membench_eval.evaluation.plan import MethodSpec
    from membench_eval.evaluation.scoring import aggregate_prompt, score_keys, scorer_id
    from membench_eval.evaluation.quality import load_quality_scorers
    from membench_eval.store.run_store import RunStore
    from membench_eval.suites.types import Prompt

    scorer = brightness.load(None, None)
    levels = (40, 120, 200)
    images = [Image.new("RGB", (16, 16), (v, v, v)) for v in levels]
    refs = {"m0": _Sscd().embed([Image.new("RGB", (8, 8), (255, 0, 0))])[0]}
    with RunStore(tmp_path / "store") as store:
        keys = []
        for i, im in enumerate(images):
            fields = {"method": "base", "params": {}, "prompt_id": "t0", "prompt": "a thing", "seed": i}
            keys.append(RunStore.key(fields))
            store.put_image(keys[-1], im, {**fields, "image_index": i})
        ctx = _Context(_Sscd(), refs, store, SimpleNamespace(seed=0), {"brightness": scorer})
        rows = score_keys(ctx, keys, ["a thing"] * 3)
        # computed once, stored under the spec's store name and the scorer's identity
        assert [store.get_score(k, "brightness_score", scorer_id(scorer)) for k in keys] == pytest.approx(
            [v / 255 for v in levels])
        result = aggregate_prompt(refs, 0, MethodSpec("base", "base", "base", {}), "trigger",
                                  Prompt("t0", "a thing", ("m0",)), [rows[k] for k in keys])
    assert result.metrics["brightness"] == pytest.approx(np.mean(levels) / 255)
    assert "top1_sscd" in result.metrics and "clip" in result.metrics  # the others are still there

    # the evaluation's scorer loading asks the spec; a loader that cannot load says why
    def unavailable(options: Any, suite: Any) -> Any:
        raise MetricUnavailable("no lamp")

    with registry.registered(MetricSpec("darkness", "Darkness", False, ("general",), load=unavailable)):
        toys = tuple(s for s in registry.image_metrics() if s.name in ("brightness", "darkness"))
        monkeypatch.setattr(registry, "image_metrics", lambda: toys)  # CLIP/aesthetic would need weights
        loaded = load_quality_scorers(None, None)
    assert isinstance(loaded["brightness"], BrightnessScorer) and loaded["darkness"] is None
    assert loaded["darkness_reason"] == "darkness score not available: no lamp"


def _results_with_brightness(run) -> list:
    """The synthetic run's results, each with a brightness value as the spec aggregates it."""
    out = []
    for k, r in enumerate(run.results):
        per_image = [0.3 + 0.1 * (r.label != "base") + 0.01 * ((k + i) % 5) for i in range(r.n_images)]
        out.append(dataclasses.replace(r, metrics={**r.metrics, "brightness": BRIGHTNESS.per_prompt(per_image)}))
    return out


def test_a_registered_metric_is_a_column_in_every_format_and_a_gate(brightness, tmp_path: Path) -> None:
    from membench_eval.report import build_leaderboard
    from membench_eval.report.exports import to_csv, to_latex
    from membench_eval.report.html import to_html
    from membench_eval.report.output import to_json
    from membench_eval.report.rebuild import leaderboard_from_json
    from membench_eval.report.render import to_markdown

    run = synthetic_run(tmp_path)
    board = build_leaderboard(_results_with_brightness(run), suite="mini", kinds=KINDS, metadata=run.metadata,
                              n_resamples=100, expected=run.board().expected)
    md = to_markdown(board)
    header = next(line for line in md.splitlines() if line.startswith("| method"))
    assert "| Brightness " in header and "| COCO Brightness " in header
    assert "higher CLIP, Aesthetic and Brightness are better." in md
    base_line = next(line for line in md.splitlines() if line.startswith("| base "))
    assert base_line.count("[") == 9  # 7 paper columns + 2 brightness columns, each mean [CI]

    table = list(csv.DictReader(io.StringIO(to_csv(board))))
    base = next(r for r in table if r["method"] == "base")
    mean = np.mean([r.metrics["brightness"] for r in _results_with_brightness(run)
                    if r.label == "base" and r.role == "trigger"])
    assert float(base["brightness"]) == pytest.approx(mean)
    assert {"coco_brightness", "brightness_low", "brightness_delta", "brightness_note"} <= set(base)

    latex_header = next(line for line in to_latex(board).splitlines() if line.startswith("Method &"))
    assert latex_header == ("Method & Top-1 SSCD & Top-3 SSCD & SSCD\\textgreater{}0.5 & CLIP & Aesthetic & Brightness & COCO CLIP & "
                            "COCO Aesthetic & COCO Brightness \\\\")
    page = to_html(board, files_dir="f")
    assert "<th>Brightness</th>" in page and "<th>COCO Brightness</th>" in page

    data = json.loads(json.dumps(to_json(board), default=str))
    assert {"key": "brightness", "title": "Brightness", "prompt_set": "trigger", "metric": "brightness"} in \
        data["columns"]
    row = next(r for r in data["rows"] if r["label"] == "wen l=2")
    assert row["metrics"]["coco_brightness"]["available"] and "delta_to_base" in row["metrics"]["brightness"]
    assert to_markdown(leaderboard_from_json(data)) == md  # the JSON rebuilds the same table

    gates = parse_gates(["brightness >= base", "coco_brightness < 0.2"])
    results = check_gates(gates, board, ["wen l=2"])["wen l=2"]
    assert [r.passed for r in results] == [True, False]
    assert "brightness = " in results[0].message and "paired difference to base" in results[0].message

    # unavailable (its loader said why): n/a with that reason, and a gate on it fails
    why = BRIGHTNESS.unavailable_reason("no lamp")
    off = build_leaderboard(run.results, suite="mini", kinds=KINDS, n_resamples=50,
                            unavailable={c.key: why for c in BRIGHTNESS.columns()})
    assert f"[^1]: {why}" in to_markdown(off)
    assert not check_gates([parse_gate("brightness >= 0")], off, ["wen l=2"])["wen l=2"][0].passed


def test_an_unregistered_metric_is_gone_everywhere(tmp_path: Path) -> None:
    from membench_eval.report.exports import to_csv
    from membench_eval.report.render import to_markdown

    with registry.registered(BRIGHTNESS):
        assert "brightness" in registry.columns_by_key()
    assert "brightness" not in registry.columns_by_key() and "coco_brightness" not in registry.columns_by_key()
    with pytest.raises(GateSpecError, match="unknown column 'brightness'"):
        parse_gate("brightness >= base")
    with pytest.raises(KeyError):
        registry.get_metric("brightness")
    run = synthetic_run(tmp_path)
    board = run.board()
    assert "Brightness" not in to_markdown(board) and "brightness" not in to_csv(board)
