"""`membench export` (the Hub dataset layout, `.eval_results` YAML, upload to a loopback fake of the Hub
API) and `membench board` (two runs of the mini with different methods merged into one table; a run of
another model in its own table), the site checked in headless Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from membench_eval.cli import main
from membench_eval.report import build_leaderboard, write_leaderboard, write_report
from tests.report.test_report_html import _Dom, dump_dom
from tests.report.test_report_synthetic import GENERAL, KINDS, TRIGGER, synthetic_run

pytestmark = pytest.mark.slow  # the module fixture: a synthetic run, two reports, three exports (~10 s)


def _run(tmp: Path, results, labels: set[str], name: str, **meta) -> Path:
    """One run's leaderboard folder holding the rows ``labels`` of the synthetic results."""
    run = results
    kinds = {k: v for k, v in KINDS.items() if k in labels}
    board = build_leaderboard([r for r in run.results if r.label in labels], suite="mini", kinds=kinds,
                              metadata={**run.metadata, **meta}, n_resamples=100,
                              expected={"trigger": sorted(TRIGGER), "general": list(GENERAL)})
    out = tmp / name
    if meta:
        write_leaderboard(board, out)  # no figures: the third run only shows the separate table
    else:
        write_report(board, out)  # the frontier PNG the board shows (no store: no galleries)
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("export")
    run = synthetic_run(tmp)
    dirs = {"a": _run(tmp, run, {"base", "rna n=6"}, "lb-a"), "b": _run(tmp, run, {"base", "wen l=2"}, "lb-b"),
            "c": _run(tmp, run, {"base", "rna n=1"}, "lb-c", model="other/model")}
    for name, lb in dirs.items():
        assert main(["export", "--out", str(lb), "--to", str(tmp / f"export-{name}")]) == 0
    return {**{f"lb-{k}": v for k, v in dirs.items()}, **{k: tmp / f"export-{k}" for k in dirs}, "tmp": tmp}


def test_export_is_a_hub_dataset_with_its_provenance(exported: dict[str, Path]) -> None:
    from datasets import load_dataset

    out = exported["a"]
    source = json.loads((exported["lb-a"] / "mini.json").read_text())
    # the leaderboard JSON travels byte for byte; results.json carries the provenance
    assert (out / "leaderboard" / "mini.json").read_bytes() == (exported["lb-a"] / "mini.json").read_bytes()
    prov = json.loads((out / "results.json").read_text())["provenance"]
    assert prov["model"] == "CompVis/stable-diffusion-v1-4" and prov["suite_hash"].startswith("prompt-set:")
    assert prov["methods"]["rna n=6"]["sha256"] and prov["versions"] == source["metadata"].get("versions", {})
    assert prov["scorers"]["clip_model"].startswith("clip_model=ViT-g-14")
    cache = str(exported["tmp"] / "hf-cache")  # never the user's cache
    samples = load_dataset(str(out), "samples", split="train", cache_dir=cache)
    assert len(samples) == len(source["per_prompt"])
    want = {(p["label"], p["prompt_id"]): p["metrics"].get("top1_sscd") for p in source["per_prompt"]}
    assert {(r["label"], r["prompt_id"]): r["metric_top1_sscd"] for r in samples} == want
    table = load_dataset(str(out), "leaderboard", split="train", cache_dir=cache)
    row = next(r for r in table if r["label"] == "rna n=6" and r["column"] == "top1_sscd")
    cell = next(r for r in source["rows"] if r["label"] == "rna n=6")["metrics"]["top1_sscd"]
    assert (row["mean"], row["delta"]) == (cell["mean"], cell["delta_to_base"]["mean"])
    evals = yaml.safe_load((out / ".eval_results" / "membench-mini.yaml").read_text())
    top1 = next(e for e in evals if e["dataset"]["task_id"] == "top1_sscd" and e["notes"].startswith("rna n=6"))
    assert top1["value"] == round(cell["mean"], 4) and top1["dataset"]["id"] == "membench/mini"


def test_upload_goes_through_huggingface_hub_to_the_given_endpoint(exported: dict[str, Path]) -> None:
    from tests.report.fake_hub import FakeHub

    hub = FakeHub()
    try:
        code = main(["export", "--out", str(exported["lb-a"]), "--to", str(exported["tmp"] / "up"),
                     "--repo-id", "me/membench-mini", "--token", "hf_test", "--endpoint", hub.base])
    finally:
        hub.close()
    assert code == 0 and "Bearer hf_test" in hub.auth
    assert hub.files["results.json"] == (exported["tmp"] / "up" / "results.json").read_bytes()
    assert {"README.md", "data/samples.parquet", ".eval_results/membench-mini.yaml"} <= set(hub.files)


def test_board_merges_comparable_runs_and_separates_the_rest(exported: dict[str, Path], tmp_path: Path) -> None:
    site = tmp_path / "site"
    assert main(["board", str(exported["a"]), str(exported["b"]), str(exported["c"]), "--out", str(site)]) == 0
    dom = _Dom()
    dom.feed(dump_dom(site / "index.html", tmp_path / "profile"))
    assert dom.rows["board-1"] == ["base", "rna n=6", "base", "wen l=2"]  # both methods in one table
    assert dom.rows["board-2"] == ["base", "rna n=1"]  # another model: its own table, saying why
    assert "Not compared with table 1: differs in model." in (site / "index.html").read_text()
    assert dom.body.get("data-images-loaded") == "all" and dom.body.get("data-images-total") == "2"
    page = (site / "index.html").read_text()
    links = re.findall(r'href="([^"#]+)"', page)
    assert len(links) == 6 and all((site / link).is_file() for link in links)
    for link in set(links):  # each provenance page's own links resolve too
        sub = (site / link).parent
        assert all((sub / h).is_file() for h in re.findall(r'href="([^"#]+)"', (site / link).read_text()))
