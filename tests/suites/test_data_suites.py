"""The suite registry: sd1, coco, mini (delegated), and a+b merges."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from membench_eval.errors import DataError
from membench_eval.suites import SD1_MODEL, get_suite, list_suites, merge_suites
from membench_eval.suites.types import MemorizedImage, Prompt, PromptSet, ReferenceTargets, Suite


def test_sd1_suite(shared_data_dir: Path) -> None:
    suite = get_suite("sd1", shared_data_dir)
    assert suite.name == "sd1" and suite.model == "CompVis/stable-diffusion-v1-4" == SD1_MODEL
    assert len(suite.trigger) == 3000 and suite.general is None and len(suite.memorized) == 151
    assert suite.targets == ReferenceTargets(top1_sscd=0.088, clip=0.310, sscd_backend="disc_large", clip_model="ViT-g-14", clip_pretrained="laion2b_s12b_b42k",
                                             source="MemBench paper, image-search reference")
    assert suite.sscd_backend == "disc_large"


def test_coco_and_merge(shared_data_dir: Path) -> None:
    coco = get_suite("coco", shared_data_dir)
    assert coco.trigger is None and len(coco.general) == 5000 and coco.memorized == {}
    merged = get_suite("sd1+coco", shared_data_dir)
    assert merged.name == "sd1+coco" and merged.model == SD1_MODEL
    assert len(merged.trigger) == 3000 and len(merged.general) == 5000 and len(merged.memorized) == 151
    assert merged.targets.top1_sscd == 0.088  # the trigger part's targets carry over
    assert [s.role for s in merged.prompt_sets()] == ["trigger", "general"]
    reverse = get_suite("coco+sd1", shared_data_dir)
    assert reverse.trigger == merged.trigger and reverse.targets == merged.targets


def test_data_dir_from_environment(shared_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBENCH_DATA_DIR", str(shared_data_dir))
    assert len(get_suite("coco").general) == 5000


def test_registry_names_and_errors() -> None:
    assert list_suites() == ["sd1", "coco", "mini", "mini-sd3", "sd1_mem345", "sd2_mem219", "sd2", "rv", "coco_sdxl", "coco_sd3",
                             "coco_flux", "coco_if"]
    with pytest.raises(DataError, match="unknown suite 'sd3'"):
        get_suite("sd3")
    with pytest.raises(DataError, match="twice"):
        get_suite("coco+coco")


def _fake(name: str, model: str, *, trigger: bool = False, general: bool = False, **kw: object) -> Suite:
    img = MemorizedImage(f"{name}-img", f"{name}.png")
    return Suite(
        name=name, model=model,
        trigger=PromptSet("trigger", (Prompt(f"{name}-0", "t", (img.image_id,)),), 2) if trigger else None,
        general=PromptSet("general", (Prompt(f"{name}-g", "g"),), 1) if general else None,
        memorized={img.image_id: img} if trigger else {}, **kw,  # type: ignore[arg-type]
    )


def test_mini_is_delegated_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    fake = types.ModuleType("membench_eval.suites.mini")

    def load_mini_suite(root: object = None, name: str = "mini") -> Suite:
        calls.append(name)
        return _fake("mini", "tiny-sd", trigger=True, general=True, generation_defaults={"height": 64})

    fake.load_mini_suite = load_mini_suite  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "membench_eval.suites.mini", fake)
    suite = get_suite("mini")
    assert calls == ["mini"] and suite.model == "tiny-sd" and suite.generation_defaults == {"height": 64}
    with pytest.raises(DataError, match="two parts give trigger prompts"):
        merge_suites([suite, _fake("other", "tiny-sd", trigger=True, generation_defaults={"height": 64})])


def test_merge_rules() -> None:
    trig = _fake("a", "m1", trigger=True, targets=ReferenceTargets(top1_sscd=0.1))
    gen = _fake("b", "m1", general=True)
    merged = merge_suites([trig, gen])
    assert merged.trigger == trig.trigger and merged.general == gen.general
    assert merged.memorized == trig.memorized and merged.targets.top1_sscd == 0.1
    with pytest.raises(DataError, match="is for m1.*for m2"):
        merge_suites([trig, _fake("c", "m2", general=True)])
    with pytest.raises(DataError, match="two parts give general prompts"):
        merge_suites([gen, _fake("d", "m1", general=True)])
    with pytest.raises(DataError, match="SSCD backends differ"):
        merge_suites([trig, _fake("e", "m1", general=True, sscd_backend="disc_mixup_onnx")])
    with pytest.raises(DataError, match="generation defaults differ"):
        merge_suites([trig, _fake("f", "m1", general=True, generation_defaults={"height": 64})])
