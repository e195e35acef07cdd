"""Upstream file readers: real files give the published counts; each kind of bad input fails
with a DataError naming the file, row and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from membench_eval.errors import DataError
from membench_eval.suites.loaders import (
    DuplicatePromptWarning,
    load_caption_jsonl,
    load_coco_prompts,
    load_prompt_lines,
    load_trigger_prompts,
)
from membench_eval.suites.types import memorized_image_id

URL_A = "https://example.com/a.jpg"
URL_B = "http://example.org/b.png?x=1"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- real data --------------------------------------------------------------------------------

def test_sd1_csv_counts_and_ids(shared_data_dir: Path) -> None:
    prompts, images = load_trigger_prompts(shared_data_dir / "membench" / "SD1_final.csv")
    assert len(prompts) == 3000 and len(images) == 151
    assert prompts.role == "trigger" and prompts.images_per_prompt == 10
    assert sum(len(p.memorized_ids) for p in prompts.prompts) == 7260
    assert prompts.prompts[0].prompt_id == "sd1-0" and prompts.prompts[-1].prompt_id == "sd1-2999"
    assert prompts.prompts[0].text == "fire us army garden flag single"
    assert len({p.prompt_id for p in prompts.prompts}) == 3000
    assert len({" ".join(p.text.split()) for p in prompts.prompts}) == 3000  # no duplicated texts: loads by default
    assert all(1 <= len(p.memorized_ids) <= 16 for p in prompts.prompts)
    referenced = {i for p in prompts.prompts for i in p.memorized_ids}
    assert referenced == set(images)
    for image_id, image in images.items():
        assert image_id == memorized_image_id(image.source) and not image.is_local


def test_sd1_ids_are_stable_across_runs(shared_data_dir: Path) -> None:
    path = shared_data_dir / "membench" / "SD1_final.csv"
    a, ia = load_trigger_prompts(path)
    b, ib = load_trigger_prompts(path)
    assert a == b and ia == ib


def test_coco_first_caption_per_image_ordered_by_id(shared_data_dir: Path) -> None:
    path = shared_data_dir / "coco" / "captions_val2017.json"
    prompts = load_coco_prompts(path)
    assert len(prompts) == 5000 and prompts.role == "general" and prompts.images_per_prompt == 1
    ids = [int(p.prompt_id.removeprefix("coco-")) for p in prompts.prompts]
    assert ids == sorted(ids) and len(set(ids)) == 5000
    data = json.loads(path.read_text(encoding="utf-8"))
    first: dict[int, str] = {}
    for ann in data["annotations"]:  # independent check: first in file order, like the reference
        first.setdefault(ann["image_id"], ann["caption"])
    assert [p.text for p in prompts.prompts] == [first[i] for i in ids]
    assert all(p.memorized_ids == () for p in prompts.prompts)


def test_webster_lists(shared_data_dir: Path) -> None:
    web = shared_data_dir / "webster"
    assert len(load_prompt_lines(web / "sd1_mem345.txt")) == 345
    assert len(load_prompt_lines(web / "sd2_mem219.txt")) == 219
    nonmem = load_prompt_lines(web / "nonmem500.txt")
    assert not (web / "nonmem500.txt").read_bytes().endswith(b"\n")  # the case we must handle
    assert len(nonmem) == 500 and nonmem[-1].endswith("France.")
    wen = load_caption_jsonl(web / "sdv1_500_memorized.jsonl")
    assert len(wen) == 500 and wen[0].caption == "The No Limits Business Woman Podcast"
    assert wen[0].url.startswith("https://") and isinstance(wen[0].index, int)


# --- small synthetic files -----------------------------------------------------------------------

def test_trigger_dedupes_urls_and_shares_images(tmp_path: Path) -> None:
    csv_text = (",prompt,urls\n"
                f"0,first prompt,\"['{URL_A}', '{URL_B}', '{URL_A}']\"\n"
                f"7,second prompt,['{URL_B}']\n")
    prompts, images = load_trigger_prompts(write(tmp_path, "SD2_final.csv", csv_text))
    assert [p.prompt_id for p in prompts.prompts] == ["sd2-0", "sd2-7"]  # prefix from the file name
    assert prompts.prompts[0].memorized_ids == (memorized_image_id(URL_A), memorized_image_id(URL_B))
    assert list(images) == [memorized_image_id(URL_A), memorized_image_id(URL_B)]


def test_trigger_without_index_column_uses_row_number(tmp_path: Path) -> None:
    path = write(tmp_path, "x.csv", f"prompt,urls\na,['{URL_A}']\nb,['{URL_B}']\n")
    prompts, _ = load_trigger_prompts(path, id_prefix="sd1")
    assert [p.prompt_id for p in prompts.prompts] == ["sd1-0", "sd1-1"]


@pytest.mark.parametrize(
    ("body", "row", "field", "words"),
    [
        (f"0,a,['{URL_A}']\n", 1, "urls", "missing column"),  # header lacks urls
        ("0,a,['https://x.com/a.jpg'\n", 2, "urls", "not a Python list literal"),
        ("0,a,[]\n", 2, "urls", "empty list"),
        ("0,a,['ftp://x.com/a.jpg']\n", 2, "urls", "not an http(s) URL"),
        ("0,a,\"['https://x.com/a.jpg', 3]\"\n", 2, "urls", "not an http(s) URL"),
        ("0,a,\"{'u': 1}\"\n", 2, "urls", "expected a list"),
        ("0,a,__import__('os')\n", 2, "urls", "not a Python list literal"),  # never eval'd
        (f"0,a,['{URL_A}']\n0,b,['{URL_B}']\n", 3, "index", "duplicated prompt id 'sd1-0'"),
        (f"0,,['{URL_A}']\n", 2, "prompt", "empty prompt"),
    ],
    ids=["missing-column", "unparseable", "empty-list", "non-http", "non-string", "not-a-list",
         "code-not-run", "duplicate-id", "empty-prompt"],
)
def test_trigger_bad_input(tmp_path: Path, body: str, row: int, field: str, words: str) -> None:
    header = ",prompt,urls\n" if words != "missing column" else ",prompt,links\n"
    path = write(tmp_path, "sd1_bad.csv", header + body)
    with pytest.raises(DataError) as info:
        load_trigger_prompts(path)
    message = str(info.value)
    assert str(path) in message and words in message and f"row {row}" in message
    assert info.value.row == row and info.value.field == field


def test_trigger_duplicated_prompt_text_names_both_rows(tmp_path: Path) -> None:
    long_text = "a very long prompt text that goes on " * 4
    body = (f",prompt,urls\n0,{long_text},['{URL_A}']\n1,other,['{URL_B}']\n"
            f"5,{long_text.replace(' ', '  ')},['{URL_B}']\n")  # extra spaces: still the same prompt
    path = write(tmp_path, "sd2_final.csv", body)
    with pytest.raises(DataError) as info:
        load_trigger_prompts(path)
    message = str(info.value)
    assert message.startswith(f"{path}, row 4, field 'prompt': same prompt text as row 2 ")
    assert "a very long prompt text" in message and long_text not in message  # shortened
    assert "allow_duplicates=True" in message and (info.value.row, info.value.field) == (4, "prompt")


def test_trigger_allow_duplicates_keeps_first_row_with_union_of_ids(tmp_path: Path) -> None:
    body = (f",prompt,urls\n0,a cat,['{URL_A}']\n1,A cat,['{URL_A}']\n"  # case differs: not a duplicate
            f"2,a cat ,\"['{URL_B}', '{URL_A}']\"\n")
    path = write(tmp_path, "sd2_final.csv", body)
    with pytest.warns(DuplicatePromptWarning, match="1 duplicated prompt text.*row 4 repeats row 2") as record:
        prompts, images = load_trigger_prompts(path, allow_duplicates=True)
    assert [w.message.duplicates for w in record] == [((2, 4, "a cat "),)]
    assert [(p.prompt_id, p.text) for p in prompts.prompts] == [("sd2-0", "a cat"), ("sd2-1", "A cat")]
    assert prompts.prompts[0].memorized_ids == (memorized_image_id(URL_A), memorized_image_id(URL_B))
    assert set(images) == {memorized_image_id(URL_A), memorized_image_id(URL_B)}


def test_trigger_header_only_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no prompts"):
        load_trigger_prompts(write(tmp_path, "a.csv", ",prompt,urls\n"))
    with pytest.raises(DataError, match="empty file"):
        load_trigger_prompts(write(tmp_path, "b.csv", ""))
    with pytest.raises(DataError, match="file not found"):
        load_trigger_prompts(tmp_path / "absent.csv")


def test_coco_synthetic_first_caption_and_order(tmp_path: Path) -> None:
    data = {"annotations": [
        {"image_id": 9, "id": 5, "caption": "nine first"},
        {"image_id": 2, "id": 1, "caption": "two first"},
        {"image_id": 9, "id": 2, "caption": "nine second (lower annotation id, later in file)"},
        {"image_id": 2, "id": 8, "caption": "two second"},
    ]}
    prompts = load_coco_prompts(write(tmp_path, "c.json", json.dumps(data)))
    assert [(p.prompt_id, p.text) for p in prompts.prompts] == [("coco-2", "two first"), ("coco-9", "nine first")]


@pytest.mark.parametrize(
    ("text", "words", "field"),
    [
        ("", "empty caption file", None),
        ('{"annotations": []}', "empty caption file", "annotations"),
        ('{"annotations": [{"image_id": 1, "caption": "a"},', "invalid JSON", None),
        ('{"images": []}', "no top-level 'annotations'", "annotations"),
        ('{"annotations": [{"image_id": 1, "caption": "  "}]}', "empty caption", "caption"),
        ('{"annotations": [{"image_id": "1", "caption": "a"}]}', "non-integer image id", "image_id"),
    ],
    ids=["empty-file", "no-annotations", "invalid-json", "wrong-shape", "blank-caption", "bad-image-id"],
)
def test_coco_bad_input(tmp_path: Path, text: str, words: str, field: str | None) -> None:
    path = write(tmp_path, "captions.json", text)
    with pytest.raises(DataError) as info:
        load_coco_prompts(path)
    assert str(path) in str(info.value) and words in str(info.value) and info.value.field == field


def test_prompt_lines_edge_cases(tmp_path: Path) -> None:
    assert load_prompt_lines(write(tmp_path, "a.txt", "x\ny")) == ["x", "y"]
    assert load_prompt_lines(write(tmp_path, "b.txt", "x\ny\n\n")) == ["x", "y"]
    assert load_prompt_lines(write(tmp_path, "c.txt", "x\r\ny\r\n")) == ["x", "y"]
    with pytest.raises(DataError, match=r"row 2, field 'prompt': blank line"):
        load_prompt_lines(write(tmp_path, "d.txt", "x\n\ny\n"))
    with pytest.raises(DataError, match="empty prompt list"):
        load_prompt_lines(write(tmp_path, "e.txt", "\n"))


def test_caption_jsonl_bad_input(tmp_path: Path) -> None:
    good = json.dumps({"caption": "c", "url": URL_A, "index": 3})
    with pytest.raises(DataError, match=r"row 2: invalid JSON") as info:
        load_caption_jsonl(write(tmp_path, "a.jsonl", good + "\n{\"caption\": \n"))
    assert "a.jsonl" in str(info.value)
    with pytest.raises(DataError, match=r"row 1, field 'url'"):
        load_caption_jsonl(write(tmp_path, "b.jsonl", json.dumps({"caption": "c", "url": "file:///etc/passwd"})))
    with pytest.raises(DataError, match=r"row 1, field 'caption'"):
        load_caption_jsonl(write(tmp_path, "c.jsonl", json.dumps({"url": URL_A})))
    with pytest.raises(DataError, match="empty JSONL"):
        load_caption_jsonl(write(tmp_path, "d.jsonl", ""))
