"""The bundled mini suite loads, is self-consistent, and its model folder is a diffusers pipeline."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from membench_eval import paths
from membench_eval.errors import DataError, MissingWeightsError
from membench_eval.suites.mini import load_mini_suite
from membench_eval.suites.types import memorized_image_id

MINI = paths.MINI_DIR


def test_mini_suite_counts_and_references() -> None:
    suite = load_mini_suite()
    assert suite.name == "mini"
    assert suite.sscd_backend == "disc_mixup_onnx"
    assert suite.generation_defaults["height"] == suite.generation_defaults["width"] == 64
    assert suite.trigger is not None and suite.general is not None
    assert suite.trigger.images_per_prompt == 10 and suite.general.images_per_prompt == 1
    # 16 memorized photos (>= 15: the intervals resample photos), one trained caption each as its
    # trigger prompt; 20-40 general prompts.
    assert len(suite.memorized) == 16
    assert len(suite.trigger) == 16
    assert 20 <= len(suite.general) <= 40
    for image in suite.memorized.values():
        assert image.is_local and Path(image.source).is_file()
        assert Path(image.source).parent == suite.reference_dir
    per_image = {i: 0 for i in suite.memorized}
    for p in suite.trigger.prompts:
        assert len(p.memorized_ids) == 1 and p.memorized_ids[0] in suite.memorized
        per_image[p.memorized_ids[0]] += 1
    assert set(per_image.values()) == {1}
    ids = [p.prompt_id for s in suite.prompt_sets() for p in s.prompts]
    assert len(ids) == len(set(ids))
    texts = [p.text for s in suite.prompt_sets() for p in s.prompts]
    assert len(texts) == len(set(texts))
    assert all(not p.memorized_ids for p in suite.general.prompts)


def _rows(name: str) -> list[list[str]]:
    with open(MINI / name, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_mini_csv_is_membench_format_and_ids_come_from_urls() -> None:
    rows = _rows("trigger_prompts.csv")
    assert rows[0] == ["", "prompt", "urls"]  # MemBench's columns
    suite = load_mini_suite()
    assert [int(r[0]) for r in rows[1:]] == list(range(len(rows) - 1))
    for row, prompt in zip(rows[1:], suite.trigger.prompts):
        assert row[1] == prompt.text
        assert prompt.memorized_ids == (memorized_image_id(row[2]),)
        assert MINI / "references" / row[2].removeprefix("mini://") == Path(suite.memorized[prompt.memorized_ids[0]].source)


def test_general_prompts_were_not_training_captions() -> None:
    captions = json.loads((MINI / "training_captions.json").read_text(encoding="utf-8"))
    seen = set(captions["general"]) | {c for cs in captions["memorized"].values() for c in cs}
    suite = load_mini_suite()
    assert not seen & {p.text for p in suite.general.prompts}
    assert {p.text for p in suite.trigger.prompts} <= seen
    paraphrases = _rows("paraphrase_prompts.csv")
    assert paraphrases[0] == ["", "prompt", "urls"] and len(paraphrases) == 17
    assert not {r[1] for r in paraphrases[1:]} & seen  # held out: never trained
    # one paraphrase per memorized photo, pointing at the same reference files
    assert sorted(r[2] for r in paraphrases[1:]) == sorted(r[2] for r in _rows("trigger_prompts.csv")[1:])


def test_references_are_training_resolution_rgb() -> None:
    from PIL import Image

    for image in load_mini_suite().memorized.values():
        with Image.open(image.source) as im:
            assert im.mode == "RGB" and im.size == (64, 64)


def test_model_folder_layout_and_size() -> None:
    model = MINI / "model"
    index = json.loads((model / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["safety_checker"] == [None, None]
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (model / sub).is_dir(), sub
    sched = json.loads((model / "scheduler" / "scheduler_config.json").read_text())
    assert sched["_class_name"] == "DDIMScheduler" and sched["beta_schedule"] == "scaled_linear"
    total = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    assert total < 30 * 2**20, total


def test_shipped_tokenizer_is_the_sd_tokenizer() -> None:
    from transformers import CLIPTokenizer

    from membench_eval.models.tokenizer import build_clip_tokenizer

    shipped = CLIPTokenizer.from_pretrained(MINI / "model" / "tokenizer")
    real = build_clip_tokenizer()
    for text in [p.text for p in load_mini_suite().trigger.prompts] + ["Ünïcode, 12345 & emoji-free text!"]:
        assert shipped(text).input_ids == real(text).input_ids


def test_bad_mini_data_names_file_row_field(tmp_path: Path) -> None:
    root = tmp_path / "mini"
    shutil.copytree(MINI / "references", root / "references")
    shutil.copy(MINI / "general_prompts.txt", root / "general_prompts.txt")
    with pytest.raises(MissingWeightsError, match=r"mini model folder is missing; rebuild with "
                       r"`python benchmark_data/mini/build.py` \(needs scikit-image"):
        load_mini_suite(root)
    with pytest.raises(MissingWeightsError, match=r"mini-sd3 model folder is missing; .*benchmark_data/mini_sd3/build.py"):
        load_mini_suite(root, name="mini-sd3")
    (root / "model").mkdir()
    (root / "model" / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    (root / "trigger_prompts.csv").write_text(",prompt,urls\n0,a cat,mini://chelsea.png\n1,a dog,mini://dog.png\n")
    with pytest.raises(DataError, match=r"row 3, field 'urls'"):
        load_mini_suite(root)
    (root / "trigger_prompts.csv").write_text(",prompt,urls\n0,a cat,mini://../escape.png\n")
    with pytest.raises(DataError, match=r"row 2, field 'urls'"):
        load_mini_suite(root)
    (root / "trigger_prompts.csv").write_text(",prompt,urls\n0,a cat,mini://chelsea.png\n")
    suite = load_mini_suite(root)
    assert len(suite.trigger) == 1 and suite.model == str(root / "model")
