"""Honest leaderboards: comparable reference targets only, incomplete rows marked (no delta, gates
fail), few-cluster intervals flagged, no "-0.000", the coverage line counts what ran, and file names
say what the run was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from membench_eval.evaluation import EvalOptions, Evaluation
from membench_eval.evaluation.gates import check_gates, parse_gate
from membench_eval.report import (
    NOT_COMPARED,
    PromptResult,
    build_leaderboard,
    fmt_number,
    leaderboard_stem,
    to_json,
    to_markdown,
    write_leaderboard,
)
from membench_eval.suites import SD1_TARGETS
from membench_eval.suites.types import MemorizedImage, Prompt, PromptSet, ReferenceTargets, Suite

# 6 trigger prompts on 6 distinct memorized images (6 clusters: no few-cluster mark), 3 general.
TRIGGER = [f"t{i}" for i in range(6)]
GENERAL = ["g0", "g1", "g2", "g3", "g4", "g5"]
EXPECTED = {"trigger": TRIGGER, "general": GENERAL}
CLIP_ID = ("clip_context_length=77|clip_dtype=float16|clip_model=ViT-g-14|clip_preprocessing=resize 224|"
           "clip_pretrained=laion2b_s12b_b42k|clip_truncation=sot + first (context_length - 2) bpe tokens + eot")


def _rows(label: str, shift: float, *, skip: tuple[str, ...] = (), mems=None) -> list[PromptResult]:
    out = []
    for i, pid in enumerate(TRIGGER):
        if pid in skip:
            continue
        v = 0.4 + 0.05 * i + shift
        out.append(PromptResult(label, label.split()[0], "trigger", pid, 2,
                                {"top1_sscd": v, "top3_sscd": v - 0.05, "sscd_gt_05": 0.5, "top1_any": v,
                                 "clip": 0.3 + 0.01 * i + shift / 10, "aesthetic": 5.0},
                                memorized_ids=(mems or {}).get(pid, (f"m{i}",))))
    for j, pid in enumerate(GENERAL):
        if pid in skip:
            continue
        out.append(PromptResult(label, label.split()[0], "general", pid, 1,
                                {"top1_any": 0.1 + 0.01 * j, "clip": 0.3 + 0.01 * j, "aesthetic": 5.0}))
    return out


def _board(results, *, targets=None, metadata=None, expected=EXPECTED, kinds=None):
    kinds = kinds or {"base": "base", "rna n=6": "method"}
    return build_leaderboard(results, suite="sd1", kinds=kinds, targets=targets, expected=expected,
                             metadata=metadata or {}, n_resamples=200)


def _md_row(md: str, label: str, table: int = 0) -> str:
    """The line of ``label`` in the ``table``-th markdown table."""
    tables, current = [], []
    for line in md.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return next(line for line in tables[table] if line.split("|")[1].strip() == label)


# --- A. reference targets only when comparable -------------------------------------------------


def test_mismatched_sscd_backend_withholds_the_target_with_reason() -> None:
    board = _board(_rows("base", 0.0) + _rows("rna n=6", -0.2), targets=SD1_TARGETS,
                   metadata={"sscd_backend": "disc_mixup_onnx", "clip_model": CLIP_ID})
    ref = board.rows[0]
    assert ref.kind == "reference"
    assert ref.cells["top1_sscd"].reference_value is None and not ref.cells["top1_sscd"].available
    reason = "published with disc_large; this run scores with disc_mixup_onnx, not comparable"
    assert ref.cells["top1_sscd"].reason == reason
    assert ref.cells["clip"].reference_value == pytest.approx(0.310)  # same CLIP model: shown
    md = to_markdown(board)
    line = _md_row(md, ref.label)
    assert "0.088" not in md and "0.310" in line and "n/a [^" in line
    assert f"]: {reason}" in md
    data = to_json(board)
    assert data["reference"]["targets"]["top1_sscd"] == {
        "value": 0.088, "measured_with": {"sscd_backend": "disc_large"}, "comparable": False, "reason": reason}
    assert data["reference"]["targets"]["clip"]["comparable"] is True and data["reference"]["row_shown"] is True
    cell = data["rows"][0]["metrics"]["top1_sscd"]
    assert cell["available"] is False and cell["comparable"] is False and cell["published_value"] == 0.088


def test_matching_backends_show_both_targets() -> None:
    board = _board(_rows("base", 0.0), kinds={"base": "base"}, targets=SD1_TARGETS,
                   metadata={"sscd_backend": "disc_large", "clip_model": CLIP_ID})
    ref = board.rows[0]
    assert ref.cells["top1_sscd"].value == pytest.approx(0.088) and ref.cells["clip"].value == pytest.approx(0.310)
    assert board.reference["row_shown"] and board.reference["note"] is None


def test_no_comparable_target_omits_the_reference_row_and_says_why() -> None:
    other_clip = CLIP_ID.replace("laion2b_s12b_b42k", "/ckpt/open_clip_pytorch_model.bin")
    board = _board(_rows("base", 0.0), kinds={"base": "base"}, targets=SD1_TARGETS,
                   metadata={"sscd_backend": "disc_mixup_onnx", "clip_model": other_clip})
    assert [r.kind for r in board.rows] == ["base"]
    md = to_markdown(board)
    note = board.reference["note"]
    assert note.startswith("Reference row (MemBench paper, image-search reference) not shown")
    assert "Top-1 SSCD: published with disc_large; this run scores with disc_mixup_onnx" in note
    assert "CLIP: published with open_clip ViT-g-14 / laion2b_s12b_b42k; this run scores with" in note
    assert note in md and "| reference" not in md
    data = json.loads(json.dumps(to_json(board)))
    assert data["reference"]["row_shown"] is False and data["reference"]["note"] == note
    # A run without CLIP scores cannot be compared with the CLIP target either.
    no_clip = _board(_rows("base", 0.0), kinds={"base": "base"}, targets=SD1_TARGETS,
                     metadata={"sscd_backend": "disc_mixup_onnx", "clip_model": None})
    assert "this run has no CLIP score" in no_clip.reference["note"]


def test_sd1_targets_name_the_papers_models() -> None:
    from membench_eval.metrics.clip_score import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED
    from membench_eval.metrics.backends import SSCD_BACKENDS

    assert SD1_TARGETS.sscd_backend == "disc_large" and SD1_TARGETS.sscd_backend in SSCD_BACKENDS
    assert (SD1_TARGETS.clip_model, SD1_TARGETS.clip_pretrained) == (DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED)
    # A target that does not say what measured it is never shown.
    board = _board(_rows("base", 0.0), kinds={"base": "base"}, targets=ReferenceTargets(top1_sscd=0.1),
                   metadata={"sscd_backend": "disc_large"})
    assert board.rows[0].kind == "base" and "does not say which SSCD backend" in board.reference["note"]


# --- B. row completeness -----------------------------------------------------------------------


def test_row_missing_prompts_is_marked_and_has_no_delta() -> None:
    board = _board(_rows("base", 0.0) + _rows("rna n=6", -0.2, skip=("t4", "t5")))
    rna = board.row("rna n=6")
    assert not rna.complete and rna.incomplete_reason() == "4/6 trigger prompts"
    assert rna.prompt_coverage["trigger"] == {"expected": 6, "present": 4, "missing": ["t4", "t5"], "extra": 0}
    top1 = rna.cells["top1_sscd"]
    assert top1.estimate.mean == pytest.approx(0.4 + 0.05 * 1.5 - 0.2)  # the mean is still shown
    assert top1.delta is None and top1.delta_reason == NOT_COMPARED
    assert rna.cells["coco_clip"].delta is not None  # the general role is complete: compared
    assert board.row("base").complete
    md = to_markdown(board)
    assert "rna n=6 (4/6 trigger prompts)" in _md_row(md, "rna n=6 (4/6 trigger prompts)")
    delta_line = _md_row(md, "rna n=6 (4/6 trigger prompts)", table=1)
    assert delta_line.split("|")[2].strip().startswith("- [^")
    assert f"]: {NOT_COMPARED}" in md
    assert "rna n=6 (method) (incomplete): 4 of 6 trigger prompts (missing 2, e.g. t4, t5)" in md
    row = next(r for r in to_json(board)["rows"] if r["label"] == "rna n=6")
    assert row["complete"] is False and row["prompt_coverage"]["trigger"]["present"] == 4
    assert row["metrics"]["top1_sscd"]["delta_to_base"] is None
    assert row["metrics"]["top1_sscd"]["delta_reason"] == NOT_COMPARED


def test_incomplete_base_gives_no_deltas_and_empty_row_appears() -> None:
    board = _board(_rows("base", 0.0, skip=("t0",)) + _rows("rna n=6", -0.2),
                   kinds={"base": "base", "rna n=6": "method", "wen l=2": "method"})
    assert board.row("rna n=6").complete
    assert board.row("rna n=6").cells["top1_sscd"].delta_reason == NOT_COMPARED
    wen = board.row("wen l=2")  # declared, no results at all: shown as 0/6, never silently absent
    assert wen.incomplete_reason() == "0/6 trigger prompts, 0/6 general prompts"
    assert "no results for this row" in wen.cells["top1_sscd"].reason


def test_gate_on_incomplete_row_fails_with_counts() -> None:
    board = _board(_rows("base", 0.0) + _rows("rna n=6", -0.2, skip=("t4", "t5")))
    res = check_gates([parse_gate("top1_sscd <= 1.0")], board, ["rna n=6"])["rna n=6"][0]
    assert not res.passed and "FAILED, incomplete: 4/6 trigger prompts" in res.message
    base_bad = _board(_rows("base", 0.0, skip=("t0",)) + _rows("rna n=6", -0.2))
    res = check_gates([parse_gate("top1_sscd <= base")], base_bad, ["rna n=6"])["rna n=6"][0]
    assert not res.passed and "base is incomplete: 5/6 trigger prompts" in res.message
    ok = _board(_rows("base", 0.0) + _rows("rna n=6", -0.2))
    assert check_gates([parse_gate("top1_sscd <= base")], ok, ["rna n=6"])["rna n=6"][0].passed


# --- C. intervals from few clusters ------------------------------------------------------------


def test_two_cluster_interval_gets_the_mark_and_json_flag() -> None:
    two = {pid: (("mA",) if i < 3 else ("mB",)) for i, pid in enumerate(TRIGGER)}
    board = _board(_rows("base", 0.0, mems=two) + _rows("rna n=6", -0.1, mems=two))
    cell = board.row("rna n=6").cells["top1_sscd"]
    assert cell.estimate.n_clusters == 2 and cell.few_clusters
    md = to_markdown(board)
    line = _md_row(md, "rna n=6")
    assert line.split("|")[2].strip().endswith("]†")
    assert _md_row(md, "rna n=6", table=1).split("|")[2].strip().endswith("]†")  # deltas too
    assert md.count("† interval from N < 5 memorized-image clusters (N = 2 here") == 1
    assert "resampling so few clusters understates the uncertainty" in md
    data = next(r for r in to_json(board)["rows"] if r["label"] == "rna n=6")["metrics"]["top1_sscd"]
    assert data["few_clusters"] is True and data["delta_to_base"]["few_clusters"] is True
    # Six clusters (and six general prompts): no mark, no footnote.
    many = _board(_rows("base", 0.0) + _rows("rna n=6", -0.1))
    assert not many.row("rna n=6").cells["top1_sscd"].few_clusters and "†" not in to_markdown(many)


# --- D. no "-0.000" ----------------------------------------------------------------------------


def test_values_rounding_to_zero_print_unsigned() -> None:
    assert fmt_number(-0.0004, 3) == "0.000" and fmt_number(-0.0004, 3, signed=True) == "0.000"
    assert fmt_number(0.0004, 3, signed=True) == "0.000" and fmt_number(0.0, 2, signed=True) == "0.00"
    assert fmt_number(-0.0006, 3) == "-0.001" and fmt_number(0.0006, 3, signed=True) == "+0.001"
    base = _rows("base", 0.0)
    tiny = [PromptResult(**{**r.__dict__, "label": "rna n=6", "method": "rna",
                            "metrics": {**r.metrics, "top1_any": r.metrics["top1_any"] - 0.0004}}) for r in base]
    md = to_markdown(_board(base + tiny))
    assert "-0.000" not in md and "+0.000" not in md
    # Top-1 SSCD (any memorized) differs from base by -0.0004 on every prompt.
    assert _md_row(md, "rna n=6", table=3).split("|")[1 + 1].strip() == "0.000 [0.000, 0.000]"
    assert _md_row(md, "rna n=6", table=1).split("|")[2].strip() == "0.000 [0.000, 0.000]"  # identical


# --- E. the coverage line counts what ran ------------------------------------------------------


def _suite(tmp_path: Path) -> Suite:
    refs = tmp_path / "refs"
    refs.mkdir()
    for name in "abc":
        Image.new("RGB", (8, 8), (10, 20, 30)).save(refs / f"{name}.png")
    memorized = {f"m{n}": MemorizedImage(f"m{n}", f"{n}.png") for n in "abcd"}  # md has no file
    trigger = PromptSet("trigger", (
        Prompt("t0", "zero", ("ma",)), Prompt("t1", "one", ("ma",)), Prompt("t2", "two", ("mb",)),
        Prompt("t3", "three", ("mc",)), Prompt("t4", "four", ("md",)),
    ), images_per_prompt=2)
    general = PromptSet("general", (Prompt("g0", "gen zero"), Prompt("g1", "gen one"), Prompt("g2", "gen two")), 1)
    return Suite("toy", str(tmp_path / "model"), trigger, general, memorized, reference_dir=refs,
                 generation_defaults={"height": 64, "width": 64, "num_inference_steps": 4},
                 sscd_backend="disc_mixup_onnx")


QUALITY = {"unavailable": {}, "clip_model": None, "aesthetic_model": None}


@pytest.mark.parametrize(("limit", "subset", "line"), [
    (2, None, "2 of 4 scorable trigger prompts run (limit 2), covering 1 of 3 available memorized images; "
              "2 of 3 general prompts run (limit 2); suite: reference images 3/4"),
    (None, "stratified", "3 of 4 scorable trigger prompts run (subset stratified), covering 3 of 3 available "
                         "memorized images; 3 of 3 general prompts run; suite: "),
    (None, None, "4 of 4 scorable trigger prompts run, covering 3 of 3 available memorized images; "
                 "3 of 3 general prompts run; suite: "),
])
def test_metadata_coverage_counts_prompts_run(tmp_path: Path, limit, subset, line) -> None:
    ev = Evaluation(EvalOptions(store_dir=str(tmp_path / "store"), limit=limit, subset=subset,
                                stored_baselines=False), suite=_suite(tmp_path))
    plan = ev.plan([])
    md = ev.metadata(plan, QUALITY)
    assert md["coverage"].startswith(line), md["coverage"]
    assert md["run_coverage"]["trigger_prompts_run"] == len(plan.prompts["trigger"])
    assert md["run_coverage"]["trigger_prompts_scorable"] == 4 and md["run_coverage"]["trigger_prompts_total"] == 5


def test_evaluation_leaderboard_passes_expected_and_targets(tmp_path: Path) -> None:
    suite = _suite(tmp_path)
    suite = Suite(**{**suite.__dict__, "targets": SD1_TARGETS})
    ev = Evaluation(EvalOptions(store_dir=str(tmp_path / "store"), limit=2, stored_baselines=False), suite=suite)
    plan = ev.plan([])
    results = [PromptResult("base", "base", "trigger", "t0", 2, {"top1_sscd": 0.5}, memorized_ids=("ma",))]
    board = ev.leaderboard(plan, results, QUALITY)
    assert board.expected == {"trigger": ["t0", "t1"], "general": ["g0", "g1"]}
    assert board.row("base").incomplete_reason() == "1/2 trigger prompts, 0/2 general prompts"
    # The run scores with disc_mixup_onnx and without CLIP: neither sd1 target is comparable.
    assert [r.kind for r in board.rows] == ["base"] and not board.reference["row_shown"]
    assert "2 of 4 scorable trigger prompts run (limit 2)" in to_markdown(board)


# --- F. file names -----------------------------------------------------------------------------


def test_leaderboard_stems() -> None:
    assert leaderboard_stem("sd1", None, None) == "sd1"
    assert leaderboard_stem("sd1", 2, None) == "sd1.limit-2"
    assert leaderboard_stem("sd1", None, "stratified") == "sd1.subset-stratified"
    assert leaderboard_stem("sd1+coco", 2, "stratified") == "sd1+coco.limit-2.subset-stratified"


def test_write_leaderboard_names_files_by_run_and_failure(tmp_path: Path) -> None:
    results = _rows("base", 0.0)
    full = _board(results, kinds={"base": "base"})
    assert [p.name for p in write_leaderboard(full, tmp_path)] == ["sd1.md", "sd1.json"]
    part = _board(results, kinds={"base": "base"}, metadata={"limit": 2, "subset": "stratified"})
    paths = write_leaderboard(part, tmp_path)
    assert [p.name for p in paths] == ["sd1.limit-2.subset-stratified.md", "sd1.limit-2.subset-stratified.json"]
    assert [p.name for p in write_leaderboard(part, tmp_path, failed=True)] == [
        "sd1.limit-2.subset-stratified.failed.md", "sd1.limit-2.subset-stratified.failed.json"]
    assert [p.name for p in write_leaderboard(full, tmp_path, failed=True)] == ["sd1.failed.md", "sd1.failed.json"]
    assert json.loads((tmp_path / "sd1.json").read_text())["schema_version"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
        "sd1.md", "sd1.json", "sd1.failed.md", "sd1.failed.json", "sd1.limit-2.subset-stratified.md",
        "sd1.limit-2.subset-stratified.json", "sd1.limit-2.subset-stratified.failed.md",
        "sd1.limit-2.subset-stratified.failed.json"])
