"""Capabilities: a method a family cannot run reads n/a with the reason, never crashes.

The family table (``membench families``) and a run's cells come from the same ``needs`` /
``offers`` check, so these tests pin both: what SD offers, what an IF-like family (T5 only, added-KV
attention) lacks for Ren, the leaderboard row of such a pairing, and a detector on it.
"""

from __future__ import annotations

from typing import Any

import pytest

from membench_eval.detection.run import score_prompts
from membench_eval.models import family_for
from membench_eval.models.capabilities import ALL, not_applicable
from membench_eval.models.family import ModelFamily
from membench_eval.analysis.family_table import family_rows, markdown
from membench_eval.plugins.loader import DETECTOR, MITIGATION, find_class


class _T5OnlyFamily(ModelFamily):
    name = "t5-only"
    offers = frozenset({"cfg", "added_kv_attention", "prompt_embeddings", "t5"})


def test_every_bundled_need_is_a_known_capability() -> None:
    rows = family_rows()
    sd = next(r for r in rows if r["family"] == "stable-diffusion")
    assert "ren" in sd["methods"] and "ren_entropy" in sd["detectors"]
    assert "amg (epsilon models only)" in sd["methods"]  # SD 2's 768-v model shares the family
    for name in ("ren", "nemo", "amg", "wen", "sail", "cfg_schedule", "gni", "prss", "rta", "wen_gated"):
        assert set(find_class(name, MITIGATION).needs) <= ALL, name
    assert "| stable-diffusion |" in markdown(rows)


def test_six_model_lines_and_the_readme_table_agrees() -> None:
    """``membench families`` lists the six lines the families issue names; the README's table
    gives each the methods and detectors the same ``needs`` check makes n/a."""
    from pathlib import Path

    rows = {r["family"]: r for r in family_rows()}
    assert set(rows) == {"stable-diffusion", "realistic-vision", "stable-diffusion-xl", "sd3", "flux", "deepfloyd-if"}
    assert rows["realistic-vision"]["offers"] == rows["stable-diffusion"]["offers"]  # SD 1.5's code, its own line
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for name, row in rows.items():
        if row["methods_not_applicable"]:  # SD's 768-v exceptions are spelled out by hand
            line = next(x for x in readme.splitlines() if x.startswith(f"| {name} |"))
            cells = [c.strip() for c in line.strip("|").split("|")]
            assert cells[4] == ", ".join(sorted(row["methods_not_applicable"])), name
            assert cells[5] == ", ".join(sorted(row["detectors_not_applicable"])), name


def test_not_applicable_names_method_need_and_family() -> None:
    ren = find_class("ren", MITIGATION)()
    assert not_applicable(ren, _T5OnlyFamily) == ("n/a: ren needs clip_bos_token and cross_attention; "
                                                 "t5-only has none")
    assert not_applicable(find_class("wen", MITIGATION)(), _T5OnlyFamily) is None
    assert not_applicable(find_class("rna", MITIGATION)(), _T5OnlyFamily) is None  # needs nothing


def test_not_applicable_row_reads_na_in_every_cell() -> None:
    from membench_eval.report.leaderboard import build_leaderboard
    from membench_eval.report.records import PromptResult
    from membench_eval.report.render import to_markdown

    results = [PromptResult("base", "base", "trigger", f"p{i}", 2,
                            {"top1_sscd": 0.1 * i, "top3_sscd": 0.1 * i, "sscd_gt_05": 0.0, "top1_any": 0.1 * i},
                            memorized_ids=(f"m{i}",)) for i in range(4)]
    why = "n/a: ren needs clip_bos_token and cross_attention; t5-only has none"
    board = build_leaderboard(results, suite="toy", kinds={"base": "base", "ren c=1.3": "method"},
                              expected={"trigger": [f"p{i}" for i in range(4)]}, n_resamples=20,
                              not_applicable={"ren c=1.3": why})
    row = board.row("ren c=1.3")
    assert all(cell.reason == why and cell.estimate is None for cell in row.cells.values())
    assert row.display_label == "ren c=1.3"  # not "0/4 trigger prompts": nothing was expected of it
    assert board.row("base").cells["top1_sscd"].estimate is not None
    assert why in to_markdown(board)


class _T5OnlyPipeline:
    """Stands for a pipeline of the T5-only family: the check reads the family, not the model."""


def test_detector_on_a_family_without_its_need_is_a_row_not_a_crash(tmp_path: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from membench_eval.models import family as family_module

    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.store.detections import DetectionStore
    from membench_eval.suites.types import Prompt

    monkeypatch.setitem(family_module._REGISTRY, "_T5OnlyPipeline", _T5OnlyFamily)
    pipe = _T5OnlyPipeline()
    assert isinstance(family_for(pipe), _T5OnlyFamily)
    det = find_class("ren_entropy", DETECTOR)()
    res = score_prompts(det, [Prompt("p0", "a cat")], GenerationSettings(num_inference_steps=2, height=64, width=64),
                        DetectionStore(tmp_path / "det"), pipe=pipe)
    assert res.scores == [] and res.not_applicable.startswith("n/a: ren_entropy needs clip_bos_token")
    assert "n/a: ren_entropy" in res.summary()


def test_deepfloyd_if_row_names_its_attention_and_what_it_lacks() -> None:
    """IF (T5 only, added-KV attention) is a registered family; Ren and NeMo read n/a there with
    the capability they need, the guidance-vector methods and detectors apply."""
    rows = {r["family"]: r for r in family_rows()}
    assert {"stable-diffusion", "stable-diffusion-xl", "sd3", "flux", "deepfloyd-if"} <= set(rows)
    row = rows["deepfloyd-if"]
    assert row["pipeline_classes"] == ["IFPipeline"] and row["prediction_types"] == ["epsilon"]
    assert {"added_kv_attention", "t5", "cfg", "epsilon"} <= set(row["offers"]) and "clip_bos_token" not in row["offers"]
    assert row["methods_not_applicable"] == {"nemo": "needs cross_attention",
                                             "ren": "needs clip_bos_token and cross_attention"}
    assert {"wen", "sail", "amg", "prss", "cfg_schedule"} <= set(row["methods"])
    assert {"wen_single", "sail_sharpness"} <= set(row["detectors"]) and "bright_ending" not in row["detectors"]
    assert "| deepfloyd-if | DeepFloyd/IF-I-XL-v1.0 (stage I) | IFPipeline |" in markdown(list(rows.values()))
