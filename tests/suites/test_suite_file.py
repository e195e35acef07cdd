"""Suite files (TOML): what they build, and the errors naming file, key and value for bad ones."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from membench_eval import paths
from membench_eval.errors import DataError
from membench_eval.suites import get_suite
from membench_eval.suites.suite_file import load_suite_file

MINI = paths.MINI_DIR

BASE_TOML = """name = "mymini"
[model]
path = "model"
[trigger]
file = "t.csv"
references = "refs"
id_prefix = "mini"
[general]
file = "g.txt"
[generation]
height = 64
width = 64
num_inference_steps = 20
[scoring]
sscd_backend = "disc_mixup_onnx"
"""


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """A suite folder: a symlink to the mini model, two reference files, a CSV and a TXT."""
    (tmp_path / "model").symlink_to(MINI / "model", target_is_directory=True)
    (tmp_path / "refs").mkdir()
    for name in ("astronaut.png", "coffee.png"):
        shutil.copy(MINI / "references" / name, tmp_path / "refs" / name)
    with open(tmp_path / "t.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["", "prompt", "urls"])
        w.writerow(["t000", "official nasa portrait of astronaut eileen collins", "['astronaut.png']"])
        w.writerow(["t001", "a cup of espresso on a red saucer on a wooden table", "coffee.png, astronaut.png"])
    (tmp_path / "g.txt").write_text("a red bicycle\na bowl of soup\n", encoding="utf-8")
    (tmp_path / "s.toml").write_text(BASE_TOML, encoding="utf-8")
    return tmp_path


def test_suite_file_builds_a_suite(folder: Path) -> None:
    suite = get_suite(str(folder / "s.toml"))
    assert suite.name == "mymini" and suite.model == str((MINI / "model").resolve())
    assert [p.prompt_id for p in suite.trigger.prompts] == ["mini-t000", "mini-t001"]
    assert [p.prompt_id for p in suite.general.prompts] == ["mymini-g-0", "mymini-g-1"]
    assert suite.trigger.images_per_prompt == 10 and suite.general.images_per_prompt == 1
    assert suite.generation_defaults == {"height": 64, "width": 64, "num_inference_steps": 20}
    assert len(suite.memorized) == 2 and all(Path(im.source).is_file() for im in suite.memorized.values())
    assert suite.trigger.prompts[1].memorized_ids == (suite.trigger.prompts[1].memorized_ids[0],
                                                      suite.trigger.prompts[0].memorized_ids[0])
    assert suite.result_key == f"mymini@{suite.content_sha256[:12]}"
    # Built-in suites carry no hash: their result files and keys are unchanged.
    assert get_suite("mini").content_sha256 is None and get_suite("mini").result_key == "mini"


def test_hash_follows_every_file_read_and_reference_ids_follow_content(folder: Path) -> None:
    first = load_suite_file(folder / "s.toml")
    assert load_suite_file(folder / "s.toml").content_sha256 == first.content_sha256
    shutil.copy(MINI / "references" / "rocket.png", folder / "refs" / "coffee.png")  # same name, new bytes
    second = load_suite_file(folder / "s.toml")
    assert second.content_sha256 != first.content_sha256 and second.name == first.name
    assert set(second.memorized) != set(first.memorized)  # never reuses a similarity to the old file
    (folder / "g.txt").write_text("a red bicycle\n", encoding="utf-8")
    assert load_suite_file(folder / "s.toml").content_sha256 != second.content_sha256


def test_jsonl_and_txt_trigger_formats(folder: Path) -> None:
    (folder / "t.jsonl").write_text(json.dumps({"id": "a", "prompt": "p one", "references": ["astronaut.png"]}) + "\n"
                                    + json.dumps({"prompt": "p two", "reference": "coffee.png"}) + "\n")
    (folder / "t.txt").write_text("p one\tastronaut.png\np two\tcoffee.png,astronaut.png\n")
    for name, ids in (("t.jsonl", ["x-a", "x-1"]), ("t.txt", ["x-0", "x-1"])):
        toml = BASE_TOML.replace('file = "t.csv"', f'file = "{name}"').replace('id_prefix = "mini"', 'id_prefix = "x"')
        (folder / "s.toml").write_text(toml)
        suite = load_suite_file(folder / "s.toml")
        assert [p.prompt_id for p in suite.trigger.prompts] == ids
        assert [len(p.memorized_ids) for p in suite.trigger.prompts] == ([1, 1] if name == "t.jsonl" else [1, 2])


def test_url_references_use_the_membench_reader(folder: Path) -> None:
    (folder / "u.csv").write_text(',prompt,urls\n0,p one,"[\'https://example.org/a.jpg\']"\n')
    toml = BASE_TOML.replace('file = "t.csv"\nreferences = "refs"\n', 'file = "u.csv"\n')
    (folder / "s.toml").write_text(toml)
    suite = load_suite_file(folder / "s.toml")
    (image,) = suite.memorized.values()
    assert image.source == "https://example.org/a.jpg" and not image.is_local


def _error(folder: Path, toml: str) -> str:
    (folder / "s.toml").write_text(toml, encoding="utf-8")
    with pytest.raises(DataError) as info:
        get_suite(str(folder / "s.toml"))
    return str(info.value)


@pytest.mark.parametrize("edit, expected", [
    (lambda t: "colour = 'red'\n" + t, ["s.toml", "field 'colour'", "unknown key", "'red'"]),
    (lambda t: t.replace("[scoring]", "[scoring]\nsscd = 'x'"), ["field 'scoring.sscd'", "unknown key", "'x'"]),
    (lambda t: t.replace('name = "mymini"\n', ""), ["s.toml", "field 'name'", "missing required key"]),
    (lambda t: t.replace('file = "g.txt"\n', ""), ["field 'general.file'", "missing required key"]),
    (lambda t: t.replace('name = "mymini"', 'name = "mini"'), ["field 'name'", "'mini'", "built-in"]),
    (lambda t: t.replace("height = 64", "height = 60"), ["field 'generation.height'", "60", "multiple of 8"]),
    (lambda t: t.replace("height = 64", 'height = "64"'), ["field 'generation.height'", "expected int", "'64'"]),
    (lambda t: t.replace('references = "refs"', 'references = "nowhere"'),
     ["field 'trigger.references'", "'nowhere'", "does not exist"]),
    (lambda t: t.replace('path = "model"', 'path = "model"\npipeline = "KandinskyPipeline"'),
     ["field 'model.pipeline'", "'KandinskyPipeline'", "not a supported pipeline"]),
    (lambda t: t.replace('path = "model"', 'path = "refs"'), ["field 'model.path'", "no model_index.json"]),
    (lambda t: t.replace("disc_mixup_onnx", "disc_tiny"), ["field 'scoring.sscd_backend'", "'disc_tiny'"]),
    (lambda t: t + "[targets]\ntop1_sscd = 0.1\n", ["field 'targets.sscd_backend'", "measured with"]),
    (lambda t: t.replace("[model]", "[model"), ["s.toml", "not valid TOML", "line 2"]),
])
def test_bad_suite_files_name_file_key_and_value(folder: Path, edit, expected: list[str]) -> None:
    message = _error(folder, edit(BASE_TOML))
    for part in expected:
        assert part in message, message


def test_model_folder_of_another_pipeline_class(folder: Path) -> None:
    (folder / "xl").mkdir()
    (folder / "xl" / "model_index.json").write_text(json.dumps({"_class_name": "KandinskyPipeline"}))
    message = _error(folder, BASE_TOML.replace('path = "model"', 'path = "xl"'))
    assert "field 'model.path'" in message and "'KandinskyPipeline'" in message


def test_prompt_file_errors_name_row_and_field(folder: Path) -> None:
    (folder / "t.csv").write_text(",prompt,urls\nt0,p one,astronaut.png\nt1,p two,missing.png\n")
    message = _error(folder, BASE_TOML)
    assert "t.csv, row 3, field 'urls'" in message and "'missing.png' points nowhere" in message
    (folder / "t.csv").write_text(",prompt,urls\nt0,,astronaut.png\n")
    assert "t.csv, row 2, field 'prompt'" in _error(folder, BASE_TOML)
    (folder / "t.csv").write_text(",prompt,urls\nt0,p one,astronaut.png\nt1,p  one,coffee.png\n")
    assert "t.csv, row 3" in (m := _error(folder, BASE_TOML)) and "duplicated prompt text" in m
    (folder / "t.jsonl").write_text('{"prompt": "p", "references": ["astronaut.png"]}\n{"prompt": 3}\n')
    message = _error(folder, BASE_TOML.replace('file = "t.csv"', 'file = "t.jsonl"'))
    assert "t.jsonl, row 2, field 'prompt'" in message and "3" in message
    (folder / "u.csv").write_text(",prompt,urls\n0,p,\"['not a url']\"\n")
    message = _error(folder, BASE_TOML.replace('file = "t.csv"\nreferences = "refs"\n', 'file = "u.csv"\n'))
    assert "u.csv, row 2, field 'urls'" in message and "'not a url'" in message


def test_suite_check_cli(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from membench_eval.cli import main

    assert main(["suite", "check", str(folder / "s.toml"), "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert (counts["trigger_prompts"], counts["general_prompts"], counts["reference_images"]) == (2, 2, 2)
    assert counts["sha256"] == load_suite_file(folder / "s.toml").content_sha256
    assert main(["suite", "check", str(folder / "s.toml")]) == 0
    assert "trigger prompts: 2 (x10 images); general prompts: 2 (x1 images)" in capsys.readouterr().out
    (folder / "s.toml").write_text("colour = 1\n" + BASE_TOML)
    assert main(["suite", "check", str(folder / "s.toml")]) == 2
    assert "field 'colour'" in capsys.readouterr().err


def test_references_from_a_caption_jsonl(folder: Path) -> None:
    (folder / "wen.jsonl").write_text(json.dumps({"caption": "p  one", "url": "https://example.org/1.jpg"}) + "\n")
    (folder / "t.txt").write_text("p one\np two\n")  # no TAB: references come only from the JSONL
    toml = BASE_TOML.replace('file = "t.csv"\nreferences = "refs"', 'file = "t.txt"\nreferences_from = "wen.jsonl"')
    (folder / "s.toml").write_text(toml)
    suite = load_suite_file(folder / "s.toml")
    assert [len(p.memorized_ids) for p in suite.trigger.prompts] == [1, 0]  # p two: kept, unscorable
    assert [im.source for im in suite.memorized.values()] == ["https://example.org/1.jpg"]


def test_webster_suites(shared_data_dir: Path, tmp_path: Path) -> None:
    """Webster's lists as built-in suite files: counts, references from Wen's URLs, provenance."""
    from membench_eval.suites import list_suites
    from membench_eval.fetch.download import MANIFEST_PATH

    assert {"sd1_mem345", "sd2_mem219"} <= set(list_suites())
    sd1, sd2 = get_suite("sd1_mem345", shared_data_dir), get_suite("sd2_mem219", shared_data_dir)
    assert (len(sd1.trigger), len(sd2.trigger), len(sd1.general), len(sd2.general)) == (345, 219, 500, 500)
    assert all(len(p.memorized_ids) == 1 for p in sd1.trigger.prompts) and len(sd1.memorized) == 345
    assert sum(1 for p in sd2.trigger.prompts if p.memorized_ids) == 172
    assert sd1.model == "CompVis/stable-diffusion-v1-4" and sd1.generation_defaults["height"] == 512
    assert sd2.model == "stabilityai/stable-diffusion-2" and sd2.generation_defaults["height"] == 768
    assert sd1.trigger.prompts[0].prompt_id == "sd1_mem345-0" and sd1.general.prompts[0].prompt_id == "nonmem500-0"
    assert all(not im.is_local for im in sd1.memorized.values())
    provenance = json.loads(MANIFEST_PATH.read_text())["suites"]
    assert {"sd1_mem345", "sd2_mem219"} <= set(provenance)
    # A user's copy of a built-in file may not take its name (results are filed by name).
    copy = tmp_path / "mine.toml"
    copy.write_text((paths.BENCHMARK_DATA / "suites" / "sd1_mem345.toml").read_text())
    with pytest.raises(DataError, match="field 'name'.*built-in"):
        load_suite_file(copy, shared_data_dir)


def test_saved_web_reference_is_filed_by_result_key(tmp_path: Path) -> None:
    """Results filed by suite name take the content hash of a suite file (built-ins: the bare name)."""
    from membench_eval.reference.api_reference import ApiReference, load_saved, save

    for key in ("mine@0123456789ab", "mine@ba9876543210"):
        save(ApiReference("ref", [], False, {"suite": "mine", "suite_key": key, "label": key}), tmp_path)
    assert load_saved(tmp_path, "mine@0123456789ab")["label"] == "mine@0123456789ab"
    assert load_saved(tmp_path, "mine@ba9876543210")["label"] == "mine@ba9876543210"
    assert load_saved(tmp_path, "mine") is None
    save(ApiReference("ref", [], False, {"suite": "sd1", "label": "old"}), tmp_path)  # built-in / older file
    assert (tmp_path / "reference-sd1.json").is_file()


def test_python_api_takes_a_suite_file(folder: Path, tmp_path: Path) -> None:
    """EvalOptions(suite=FILE.toml): the same get_suite path; planning sees the file's prompts."""
    from membench_eval.evaluation import EvalOptions, Evaluation

    ev = Evaluation(EvalOptions(suite=str(folder / "s.toml"), store_dir=str(tmp_path / "store"),
                                out_dir=str(tmp_path / "out"), reference=False))
    plan = ev.plan([])
    assert ev.suite.name == "mymini" and ev.settings.height == 64 and ev.settings.num_inference_steps == 20
    assert [p.prompt_id for p in plan.prompts["trigger"]] == ["mini-t000", "mini-t001"]
    assert len(plan.prompts["general"]) == 2 and plan.coverage.images_ok == 2


def test_builtin_suites_are_suite_files(folder: Path) -> None:
    """mini, sd1, coco are TOML files read by the same loader; mini keeps its ids (mini-t000, mini://
    reference ids), so stored images and scores stay valid."""
    from membench_eval.suites import builtin_suite_file, list_suites
    from membench_eval.suites.types import memorized_image_id

    for name in list_suites():
        assert builtin_suite_file(name).is_file(), name
    mini = get_suite("mini")
    rows = list(csv.reader((MINI / "trigger_prompts.csv").open(encoding="utf-8")))[1:]
    assert [p.prompt_id for p in mini.trigger.prompts] == [f"mini-t{i:03d}" for i in range(len(rows))]
    assert [p.memorized_ids for p in mini.trigger.prompts] == [(memorized_image_id(r[2]),) for r in rows]
    assert mini.general.prompts[0].prompt_id == "mini-g000" and mini.content_sha256 is None
    assert mini.clip_backend[0] == "mini-clip" and mini.reference_gallery == MINI / "gallery"
    assert mini.allow_missing_quality_weights and mini.reference_dir == MINI / "references"
    # The scheme and id_format keys, in a user's file: ids by name, and bad formats named.
    (folder / "m.csv").write_text(",prompt,urls\n0,p one,mini://astronaut.png\n", encoding="utf-8")
    toml = BASE_TOML.replace('file = "t.csv"', 'file = "m.csv"\nreference_scheme = "mini://"').replace(
        'id_prefix = "mini"', 'id_format = "x{n:02d}"')
    (folder / "m.toml").write_text(toml, encoding="utf-8")
    suite = load_suite_file(folder / "m.toml")
    assert suite.trigger.prompts[0].prompt_id == "x00"
    assert suite.trigger.prompts[0].memorized_ids == (memorized_image_id("mini://astronaut.png"),)
    (folder / "m.toml").write_text(toml.replace("x{n:02d}", "x{nope}"), encoding="utf-8")
    with pytest.raises(DataError, match=r"field 'trigger.id_format'.*x\{nope\}"):
        load_suite_file(folder / "m.toml")
    (folder / "m.csv").write_text(",prompt,urls\n0,p one,astronaut.png\n", encoding="utf-8")
    (folder / "m.toml").write_text(toml, encoding="utf-8")
    with pytest.raises(DataError, match=r"m.csv, row 2, field 'urls'.*not a mini:// reference"):
        load_suite_file(folder / "m.toml")
