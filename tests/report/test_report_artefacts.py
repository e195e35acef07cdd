"""write_report: every artefact beside the markdown, plot and gallery errors as warnings, LaTeX/CSV
content, the AMS/UMS section, and the paper beside ours (sd1 only)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from membench_eval.report import build_leaderboard, to_json, to_markdown, write_report
from membench_eval.report.artefacts import NO_STORE
from membench_eval.report.exports import to_csv, to_latex
from membench_eval.report.frontier import panel_points, plot_frontier
from membench_eval.report.paper import paper_comparison
from membench_eval.store.run_store import RunStore
from membench_eval.suites import SD1_TARGETS
from tests.report.test_report_synthetic import GENERAL, KINDS, PAPER_META, TRIGGER, synthetic_run

NO_CLIP = "clip score not available: no CLIP weights offline"


def _write(tmp_path: Path, board, **kw):
    with RunStore(tmp_path / "store") as store:
        return write_report(board, tmp_path / "out", store=store, **kw)


def test_every_artefact_is_written_and_linked(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path)
    files = _write(tmp_path, run.board(), references=run.refs)
    out = tmp_path / "out"
    assert files.markdown == out / "mini.md" and files.json == out / "mini.json"
    assert (files.html, files.latex, files.csv) == (out / "mini.html", out / "mini.tex", out / "mini.csv")
    assert [p.name for p in files.frontier] == ["frontier.png", "frontier.svg"]
    assert set(files.galleries) == {"base", "rna n=1", "rna n=6", "wen l=2"}
    for path in files.paths():
        assert path.is_file() and path.stat().st_size > 0, path
    assert files.galleries["rna n=6"].name == "gallery-rna_n-6.png"
    with Image.open(files.frontier[0]) as im:
        assert im.width > 600
    with Image.open(files.galleries["base"]) as im:  # 4 worst copies: 4 rows of image | reference
        assert im.height > im.width
    assert files.warnings == []
    md = files.markdown.read_text()
    assert "](mini_files/frontier.png)" in md and "](mini_files/frontier.svg)" in md
    assert "](mini_files/gallery-wen_l-2.png)" in md and "[mini.html](mini.html)" in md
    data = json.loads(files.json.read_text())
    assert data["metadata"]["reference_images"] == {k: str(v) for k, v in run.refs.items()}
    assert data["memorization"]["bands"]["text"] == "low < 0.5, mid 0.5-0.6, high > 0.6"
    assert data["paper"] is None  # mini: no published numbers
    assert len(data["per_prompt"][0]["per_image"]["best_sscd"]) == data["per_prompt"][0]["n_images"]


def test_worst_copies_are_the_highest_top1_with_their_image(tmp_path: Path) -> None:
    from membench_eval.report.gallery import StoreImages, worst_copies

    run = synthetic_run(tmp_path)
    board = run.board()
    with RunStore(run.store_dir) as store:
        copies = worst_copies(board, "base", StoreImages(store, board.metadata), run.refs, k=2)
        top = sorted((r for r in run.results if r.label == "base" and r.role == "trigger"),
                     key=lambda r: -r.metrics["top1_sscd"])[:2]
        assert [c.prompt_id for c in copies] == [r.prompt_id for r in top]
        c, r = copies[0], top[0]
        assert c.score == pytest.approx(r.metrics["top1_sscd"])
        i = r.per_image["own_sscd"].index(max(r.per_image["own_sscd"]))
        assert (c.image_index, c.seed, c.ref_id) == (i, r.per_image["seed"][i], r.per_image["own_ref"][i])
        assert c.prompt == f"a photo of memorized thing {c.prompt_id}"
        assert c.image is not None and c.image.size == (64, 64) and c.reference.size == (80, 80)
        assert c.problems == []


def test_plot_and_gallery_errors_are_reported_not_raised(tmp_path: Path, monkeypatch) -> None:
    import membench_eval.report.frontier as frontier
    import membench_eval.report.gallery as gallery

    def boom(*a, **k):
        raise RuntimeError("no fonts today")

    monkeypatch.setattr(frontier, "plot_frontier", boom)
    monkeypatch.setattr(gallery, "draw_gallery", boom)
    run = synthetic_run(tmp_path)
    files = _write(tmp_path, run.board(), references=run.refs)
    assert files.frontier == [] and files.galleries == {}
    assert "trade-off frontier not drawn: RuntimeError: no fonts today" in files.warnings
    assert any(w.startswith("worst-copy gallery of base not drawn: RuntimeError") for w in files.warnings)
    for path in (files.markdown, files.json, files.html, files.latex, files.csv):
        assert path.is_file()
    assert "Trade-off frontier: not drawn" in files.markdown.read_text()
    html = files.html.read_text()
    assert "no fonts today" in html and "<img" not in html
    assert any("warning: trade-off frontier not drawn" in line for line in files.summary_lines())


def test_without_a_store_the_gallery_is_skipped_with_a_note(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path)
    files = write_report(run.board(), tmp_path / "out")
    assert files.galleries == {} and files.warnings == [NO_STORE]
    assert files.frontier and files.frontier[0].is_file()


def test_missing_images_and_references_are_gallery_notes(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path, skip_images={("base", "t0"), ("base", "t1"), ("base", "t2"), ("base", "t3"),
                                               ("base", "t4")})
    refs = {k: v for k, v in run.refs.items() if k != "m0"}
    files = _write(tmp_path, run.board(), references=refs)
    assert "base" in files.galleries  # drawn, with placeholders
    assert any(w.startswith("worst-copy gallery of base: image not in the run store") for w in files.warnings)
    assert any("reference m0 not available" in w for w in files.warnings)


def test_unavailable_clip_draws_a_panel_that_says_so(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path)
    unavailable = {c: NO_CLIP for c in ("clip", "coco_clip", "aesthetic", "coco_aesthetic")}
    board = run.board(unavailable=unavailable)
    points, why = panel_points(board, "clip")
    assert points == [] and why == NO_CLIP
    paths = plot_frontier(board, tmp_path / "f")
    assert all(p.is_file() for p in paths)
    svg = paths[1].read_text()  # text as text (svg.fonttype none)
    assert "CLIP (trigger prompts): not available in this run" in svg
    assert "COCO CLIP (general prompts): not available in this run" in svg and "no CLIP weights" in svg
    ok, none = panel_points(run.board(), "clip")
    assert none is None and {p.row for p in ok} == {"base", "rna n=1", "rna n=6", "wen l=2"}
    rna = [p for p in ok if p.method == "rna"]
    assert [p.text for p in rna] == ["n=1", "n=6"] and all(p.xerr is not None for p in rna)


def test_latex_and_csv_hold_the_main_table(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path)
    board = run.board(suite="sd1", targets=SD1_TARGETS,
                      unavailable={"coco_aesthetic": "aesthetic 100% & not_here"})
    tex = to_latex(board)
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex and "\\end{tabular}" in tex
    assert "\\begin{tabular}{lccccccc}" in tex  # method + the paper's 7 columns
    assert "SSCD\\textgreater{}0.5" in tex
    base = board.row("base").cells["top1_sscd"].estimate
    assert f"base & {base.mean:.3f} [{base.low:.3f}, {base.high:.3f}]\\textsuperscript{{\\dag}}" in tex
    assert "reference (MemBench paper, image-search reference) & 0.088 &" in tex
    assert "n/a \\textsuperscript{1}" in tex and "aesthetic 100\\% \\& not\\_here" in tex
    rows = list(csv.DictReader(io.StringIO(to_csv(board))))
    assert [r["method"] for r in rows] == [r.label for r in board.rows]
    b = next(r for r in rows if r["method"] == "base")
    assert float(b["top1_sscd"]) == pytest.approx(base.mean) and float(b["top1_sscd_low"]) == pytest.approx(base.low)
    assert b["top1_sscd_delta"] == "" and b["coco_aesthetic"] == "" and "not_here" in b["coco_aesthetic_note"]
    w = next(r for r in rows if r["method"] == "wen l=2")
    assert float(w["top1_sscd_delta"]) == pytest.approx(board.row("wen l=2").cells["top1_sscd"].delta.mean)
    assert json.loads(w["params"]) == {"l": 2.0} and w["kind"] == "method" and w["complete"] == "true"
    ref = rows[0]
    assert ref["kind"] == "reference" and float(ref["top1_sscd"]) == 0.088
    assert ref["top1_sscd_note"] == "published value"


def test_the_paper_beside_ours_on_sd1(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path)
    board = run.board(suite="sd1")
    data = paper_comparison(board)
    assert data["columns"] == ["top1_sscd", "top3_sscd", "sscd_gt_05", "clip", "aesthetic"]  # sd1: trigger only
    assert set(data["rows"]) == {"base", "rna n=1", "rna n=6", "wen l=2"}
    base = data["rows"]["base"]["top1_sscd"]
    ours = board.row("base").cells["top1_sscd"].estimate.mean
    assert base["paper"] == 0.641 and base["ours"] == pytest.approx(ours)
    assert base["difference"] == pytest.approx(ours - 0.641)
    assert data["rows"]["rna n=6"]["top3_sscd"]["paper"] == 0.189
    assert data["rows"]["wen l=2"]["aesthetic"]["paper"] == 4.97
    md = to_markdown(board)
    assert "## The paper beside ours (MemBench Table 3)" in md
    line = next(x for x in md.splitlines() if x.startswith("| rna n=6") and " / 0.228 / " in x)
    assert f"{board.row('rna n=6').cells['top1_sscd'].estimate.mean:.3f} / 0.228 / " in line
    # sd1+coco adds the COCO columns; a run scored with another SSCD keeps the paper's value, no difference
    other = run.board(suite="sd1+coco", metadata={**PAPER_META, "sscd_backend": "disc_mixup_onnx"})
    d2 = paper_comparison(other)
    assert d2["columns"][-2:] == ["coco_clip", "coco_aesthetic"]
    coco = d2["rows"]["base"]["coco_clip"]
    assert coco["paper"] == 0.321 and coco["difference"] is not None
    c = d2["rows"]["base"]["top1_sscd"]
    assert c["paper"] == 0.641 and c["difference"] is None and "disc_mixup_onnx" in c["reason"]
    assert "0.641 / - [^" in to_markdown(other).replace(f"{c['ours']:.3f} / ", "")


def test_no_paper_section_without_published_numbers(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path)
    board = run.board(suite="mini")
    assert paper_comparison(board) is None
    assert "paper beside ours" not in to_markdown(board)
    assert to_json(board)["paper"] is None


def test_memorization_section_in_markdown_and_n_g_marks(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path)
    # rna n=1 misses a trigger prompt: fewer generated images than base -> its UMS is marked
    results = [r for r in run.results if not (r.label == "rna n=1" and r.prompt_id == "t0")]
    board = build_leaderboard(results, suite="mini", kinds=KINDS, metadata=run.metadata, n_resamples=200,
                              expected={"trigger": sorted(TRIGGER), "general": list(GENERAL)})
    md = to_markdown(board)
    assert "## Memorization bands (AMS / UMS), trigger prompts" in md
    assert "## Memorization bands (AMS / UMS), general prompts" in md
    assert "compare UMS only between rows with the same N_G" in md
    rna = next(x for x in md.splitlines() if x.startswith("| rna n=1 (4/5 trigger prompts)") and "AMS" not in x
               and "refs)" in x)
    assert "‡" in rna and rna.rstrip(" |").endswith("12")  # N_G = 4 prompts x 3 images
    assert "‡ N_G differs from base's (12, 15 here)" in md
    base = next(x for x in md.splitlines() if x.startswith("| base ") and "refs)" in x)
    assert "‡" not in base
