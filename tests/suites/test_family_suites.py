"""The sd2 and rv suites (shared data, read through the manifest) and per-type leaderboard rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from membench_eval.suites import get_suite
from membench_eval.suites.suite_file import suite_counts


def test_sd2_has_all_219_prompts_with_references_and_types(shared_data_dir: Path) -> None:
    suite = get_suite("sd2", shared_data_dir)
    counts = suite_counts(suite)
    assert counts["trigger_prompts"] == counts["trigger_prompts_with_reference"] == 219
    assert suite.generation_defaults["height"] == 768 and suite.model == "stabilityai/stable-diffusion-2"
    types = [p.memorization_type for p in suite.trigger.prompts]
    assert types.count("MV") == 4 and types.count("TV") == 215
    first = suite.trigger.prompts[0]
    assert first.text == "Hardwood ColorCollectionStripSolid 7SAPS31403 GoldenOak"
    assert suite.memorized[first.memorized_ids[0]].source.endswith("PS31403_300x300.jpg")


def test_rv_is_text_only(shared_data_dir: Path) -> None:
    suite = get_suite("rv", shared_data_dir)
    assert suite.model == "SG161222/Realistic_Vision_V5.1_noVAE"
    assert len(suite.trigger.prompts) == 90 and not suite.memorized  # 89 lines + a last one without newline
    assert suite.trigger.prompts[0].text == "The No Limits Business Woman Podcast"


def test_text_only_is_required_for_a_trigger_list_without_references(tmp_path: Path) -> None:
    from membench_eval.errors import DataError

    (tmp_path / "p.txt").write_text("a memorized prompt\n")
    toml = '[model]\nid = "x/y"\n[trigger]\nfile = "p.txt"\n'
    (tmp_path / "s.toml").write_text('name = "t"\n' + toml)
    with pytest.raises(DataError, match="no reference"):
        get_suite(str(tmp_path / "s.toml"))
    (tmp_path / "s.toml").write_text('name = "t"\n' + toml + "text_only = true\n")
    assert len(get_suite(str(tmp_path / "s.toml")).trigger.prompts) == 1


def test_per_type_table_separates_mv_from_tv() -> None:
    from membench_eval.report.leaderboard import build_leaderboard
    from membench_eval.report.records import PromptResult
    from membench_eval.report.render import to_markdown

    def result(pid: str, top1: float) -> PromptResult:
        return PromptResult("base", "base", "trigger", pid, 2, {"top1_sscd": top1, "top3_sscd": top1 - 0.1,
                                                                "sscd_gt_05": float(top1 > 0.5), "top1_any": top1},
                            memorized_ids=(f"m-{pid}",))

    results = [result(f"mv{i}", 0.9) for i in range(3)] + [result(f"tv{i}", 0.2) for i in range(5)]
    types = {r.prompt_id: r.prompt_id[:2].upper() for r in results}
    board = build_leaderboard(results, suite="toy", kinds={"base": "base"}, n_resamples=20,
                              metadata={"memorization_types": types})
    text = to_markdown(board)
    assert "## Per memorization type" in text
    rows = {tuple(c.strip() for c in line.split("|")[1:4]): line for line in text.splitlines()}
    assert "| 0.900 [0.900, 0.900] | 0.800 [0.800, 0.800] | 1.000 [1.000, 1.000] |" in rows[("base", "MV", "3")]
    assert "| 0.200 [0.200, 0.200] | 0.100 [0.100, 0.100] | 0.000 [0.000, 0.000] |" in rows[("base", "TV", "5")]


def test_sd2_v_at_512_warns_with_the_trained_size(tmp_path: Path) -> None:
    from membench_eval.models.trained_sizes import ImageSizeWarning

    (tmp_path / "p.txt").write_text("a prompt\n")
    body = '[model]\nid = "stabilityai/stable-diffusion-2"\n[general]\nfile = "p.txt"\n'
    (tmp_path / "s.toml").write_text('name = "t"\n' + body + "[generation]\nheight = 512\nwidth = 512\n")
    with pytest.warns(ImageSizeWarning, match="trained at 768x768; generating at 512x512"):
        get_suite(str(tmp_path / "s.toml"))
    (tmp_path / "s.toml").write_text('name = "t"\n' + body + "[generation]\nheight = 768\nwidth = 768\n")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ImageSizeWarning)
        get_suite(str(tmp_path / "s.toml"))


def test_unknown_pipeline_class_names_the_supported_ones(tmp_path: Path) -> None:
    from membench_eval.errors import DataError

    (tmp_path / "p.txt").write_text("a prompt\n")
    (tmp_path / "s.toml").write_text('name = "t"\n[model]\nid = "x/y"\npipeline = "KandinskyPipeline"\n'
                                     '[general]\nfile = "p.txt"\n')
    with pytest.raises(DataError, match="'KandinskyPipeline' is not a supported pipeline; supported: .*"
                                        "StableDiffusionPipeline"):
        get_suite(str(tmp_path / "s.toml"))


def test_rv_trigger_run_says_text_only(shared_data_dir: Path) -> None:
    from membench_eval.errors import DataError
    from membench_eval.evaluation.applicability import no_reference_error

    suite = get_suite("rv", shared_data_dir)
    err = no_reference_error(suite, None)
    assert isinstance(err, DataError) and "text only (no reference images were published)" in str(err)
    assert "membench detect --suite rv" in str(err)


def test_coco_if_is_stage_one_at_its_trained_size(shared_data_dir: Path) -> None:
    """IF's general-prompt suite: COCO's 5000 captions on IF-I-XL stage I at IFPipeline's defaults,
    64 px (its trained size: no size warning), no trigger scenario (MemBench's IF list is unreleased)."""
    import warnings

    from membench_eval.models.trained_sizes import ImageSizeWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", ImageSizeWarning)
        suite = get_suite("coco_if", shared_data_dir)
    assert suite.model == "DeepFloyd/IF-I-XL-v1.0" and suite.trigger is None and len(suite.general) == 5000
    assert suite.generation_defaults == {"height": 64, "width": 64, "num_inference_steps": 100, "guidance_scale": 7.0}
