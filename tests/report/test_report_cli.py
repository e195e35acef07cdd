"""`membench report`: every artefact rebuilt from a leaderboard JSON plus the run store, no models;
bad input says what it expected (exit 2); prompts whose images are gone are reported incomplete."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from membench_eval.cli import main
from membench_eval.report import write_report
from membench_eval.store.run_store import RunStore
from membench_eval.suites import SD1_TARGETS
from tests.report.test_report_synthetic import synthetic_run


def _first_run(tmp_path: Path, suite: str = "mini", **kw):
    run = synthetic_run(tmp_path)
    board = run.board(suite=suite, **kw)
    with RunStore(run.store_dir) as store:
        files = write_report(board, tmp_path / "out", store=store, references=run.refs)
    return run, files


def _json_only(tmp_path: Path):
    """Just the leaderboard JSON of a synthetic run (cheap: no figures)."""
    from membench_eval.report import write_leaderboard

    run = synthetic_run(tmp_path)
    return run, write_leaderboard(run.board(), tmp_path / "out")[1]


def test_rebuilds_the_same_artefacts_from_the_json(tmp_path: Path, capsys) -> None:
    run, files = _first_run(tmp_path, suite="sd1", targets=SD1_TARGETS)
    before = {p.name: p.read_bytes() for p in files.paths()}
    out2 = tmp_path / "again"
    assert main(["report", "--json", str(files.json), "--out", str(out2), "--store", str(run.store_dir)]) == 0
    for name in ("sd1.md", "sd1.json", "sd1.html", "sd1.tex", "sd1.csv"):
        assert (out2 / name).read_bytes() == before[name], name
    assert (out2 / "sd1_files" / "frontier.svg").read_bytes() == before["frontier.svg"]
    assert sorted(p.name for p in (out2 / "sd1_files").iterdir()) == sorted(
        ["frontier.png", "frontier.svg", "gallery-base.png", "gallery-rna_n-1.png", "gallery-rna_n-6.png",
         "gallery-wen_l-2.png"])
    assert "membench: wrote" in capsys.readouterr().out
    # no generation and no model loading: a fresh process rebuilds without importing torch
    code = ("import sys; from membench_eval.cli import main; "
            f"rc = main(['report', '--out', {str(out2)!r}, '--store', {str(run.store_dir)!r}]); "
            "assert rc == 0, rc; bad = [m for m in ('torch', 'diffusers', 'open_clip', 'onnxruntime') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
    assert (out2 / "sd1.md").read_bytes() == before["sd1.md"]
    # in place, from the folder (the only leaderboard there is found by itself)
    assert main(["report", "--out", str(tmp_path / "out"), "--store", str(run.store_dir)]) == 0
    assert (tmp_path / "out" / "sd1.md").read_bytes() == before["sd1.md"]


def test_missing_images_make_rows_incomplete_not_averaged(tmp_path: Path, capsys) -> None:
    run, files = _first_run(tmp_path)
    data = json.loads(files.json.read_text())
    full = next(r for r in data["rows"] if r["label"] == "rna n=6")["metrics"]["top1_sscd"]["mean"]
    # delete the stored images of two prompts of rna n=6 (a pruned or partial store)
    gone = 0
    with RunStore(run.store_dir) as store:
        for row in store.records():
            if row["method"] == "rna" and row["params"] == {"n": 6} and row["prompt_id"] in ("t0", "t3"):
                store.image_path(row["key"]).unlink()
                gone += 1
    assert gone == 6
    assert main(["report", "--out", str(tmp_path / "out"), "--store", str(run.store_dir)]) == 0
    err = capsys.readouterr().err
    assert "rna n=6: 2 prompt(s) without their images" in err and "reported as incomplete" in err
    assert "t0 (trigger, 3 of 3 images)" in err
    data = json.loads(files.json.read_text())
    row = next(r for r in data["rows"] if r["label"] == "rna n=6")
    assert row["complete"] is False and row["prompt_coverage"]["trigger"]["missing"] == ["t0", "t3"]
    cell = row["metrics"]["top1_sscd"]
    kept = [d["metrics"]["top1_sscd"] for d in data["per_prompt"]
            if d["label"] == "rna n=6" and d["role"] == "trigger"]
    assert len(kept) == 3 and cell["mean"] == pytest.approx(sum(kept) / 3) and cell["mean"] != full
    assert cell["delta_to_base"] is None  # a different prompt set than base: not compared
    md = files.markdown.read_text()
    assert "| rna n=6 (3/5 trigger prompts)" in md
    base = next(r for r in data["rows"] if r["label"] == "base")
    assert base["complete"] is True
    assert "rna n=6: 2 prompt(s) without their images" in files.html.read_text()


def test_no_store_rebuilds_the_tables_only(tmp_path: Path, capsys) -> None:
    run, files = _first_run(tmp_path)
    md = files.markdown.read_text()
    shutil.rmtree(run.store_dir)
    assert main(["report", "--out", str(tmp_path / "out"), "--no-store"]) == 0
    assert "gallery skipped: no run store given" in capsys.readouterr().err
    text = files.markdown.read_text()
    assert text.split("## Figures and exports")[0] == md.split("## Figures and exports")[0]
    assert not list((tmp_path / "out" / "mini_files").glob("gallery-*"))


def test_other_bands_on_rebuild(tmp_path: Path) -> None:
    run, path = _json_only(tmp_path)
    assert main(["report", "--out", str(tmp_path / "out"), "--no-store", "--bands", "0.2,0.3"]) == 0
    data = json.loads(path.read_text())
    assert data["metadata"]["memorization_bands"] == {"mid_low": 0.2, "mid_high": 0.3}
    assert data["memorization"]["bands"]["text"] == "low < 0.2, mid 0.2-0.3, high > 0.3"
    assert "AMS low (γ < 0.2)" in path.with_suffix(".md").read_text()
    assert main(["report", "--out", str(tmp_path / "out"), "--no-store", "--bands", "0.6,0.2"]) == 2


@pytest.mark.parametrize("case", ["missing", "empty", "foreign", "foreign_json", "not_a_store", "several"])
def test_bad_input_says_what_it_expected(tmp_path: Path, capsys, case: str) -> None:
    out = tmp_path / "lb"
    args = ["report", "--out", str(out), "--no-store"]
    if case != "missing":
        out.mkdir()
    if case == "foreign":
        (out / "notes.txt").write_text("hello")
        (out / "data.json").write_text('{"rows": []}')
    if case == "foreign_json":
        (out / "x.json").write_text("[1, 2]")
        args = ["report", "--json", str(out / "x.json"), "--out", str(out), "--no-store"]
    if case in ("not_a_store", "several"):
        run, path = _json_only(tmp_path)
        out = path.parent
        args = ["report", "--out", str(out), "--store", str(tmp_path / "refs")]
        if case == "several":
            shutil.copy(path, out / "mini.limit-2.json")
            args = ["report", "--out", str(out), "--no-store"]
    store_before = sorted(p.name for p in (tmp_path / "refs").iterdir()) if (tmp_path / "refs").exists() else None
    assert main(args) == 2
    err = capsys.readouterr().err
    expected = {
        "missing": "no such folder; expected the leaderboard folder of a previous run",
        "empty": "the folder is empty; expected a leaderboard JSON written by `membench run`",
        "foreign": "the folder holds no leaderboard JSON; expected a leaderboard JSON",
        "foreign_json": "not a membench leaderboard (missing schema_version, suite, rows, per_prompt, bootstrap)",
        "not_a_store": "is not a run store; expected the run store the run wrote its images to (a folder with "
                       "STORE.json",
        "several": "several leaderboards (mini.json, mini.limit-2.json); choose one with --suite",
    }[case]
    assert expected in err, err
    assert err.count("\n") == 1  # one line
    if case == "not_a_store":  # never made into a store
        assert sorted(p.name for p in (tmp_path / "refs").iterdir()) == store_before


def test_suite_picks_the_leaderboard(tmp_path: Path) -> None:
    run, path = _json_only(tmp_path)
    shutil.copy(path, path.parent / "mini.limit-2.json")
    assert main(["report", "--out", str(path.parent), "--suite", "mini", "--limit", "2", "--no-store"]) == 0
    # the files are named by the run the JSON records (its metadata has no limit: mini.*), not by the file read
    assert (path.parent / "mini.html").is_file()
    assert main(["report", "--out", str(path.parent), "--suite", "sd1", "--no-store"]) == 2
