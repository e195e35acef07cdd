"""Evaluation planning (no model loaded): prompt selection, reference coverage, stored baselines,
and the promise that the plugin and CLI stay light at import time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from membench_eval.errors import DataError, MitigationError
from membench_eval.evaluation import EvalOptions, Evaluation, select_prompts
from membench_eval.generation.seeding import image_seed
from membench_eval.store.keys import image_key, key_fields
from membench_eval.store.run_store import RunStore
from membench_eval.suites.types import MemorizedImage, Prompt, PromptSet, Suite

pytest_plugins = ("pytester",)

REPO = Path(__file__).resolve().parents[2]
RNA = REPO / "mitigations" / "rna.py"


def plugin_args() -> list[str]:
    """``-p membench_eval.pytest_plugin`` unless the pytest11 entry point already loads it."""
    import importlib.metadata

    installed = any(e.value == "membench_eval.pytest_plugin" for e in importlib.metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "membench_eval.pytest_plugin"]


def _suite(tmp_path: Path, *, missing_ref: bool = False) -> Suite:
    refs = tmp_path / "refs"
    refs.mkdir(exist_ok=True)
    for name in ("a", "b") if not missing_ref else ("a",):
        Image.new("RGB", (8, 8), (10, 20, 30)).save(refs / f"{name}.png")
    memorized = {"mA": MemorizedImage("mA", "a.png"), "mB": MemorizedImage("mB", "b.png")}
    trigger = PromptSet("trigger", (
        Prompt("t0", "zero", ("mA",)), Prompt("t1", "one", ("mA",)),
        Prompt("t2", "two", ("mB",)), Prompt("t3", "three", ("mA", "mB")),
    ), images_per_prompt=2)
    general = PromptSet("general", (Prompt("g0", "gen zero"), Prompt("g1", "gen one"), Prompt("g2", "gen two")), 1)
    return Suite("toy", str(tmp_path / "model"), trigger, general, memorized, reference_dir=refs,
                 generation_defaults={"height": 64, "width": 64, "num_inference_steps": 4},
                 sscd_backend="disc_mixup_onnx")


def test_stratified_subset_takes_one_prompt_per_memorized_image(tmp_path: Path) -> None:
    prompts = _suite(tmp_path).trigger.prompts
    assert [p.prompt_id for p in select_prompts(prompts, role="trigger", limit=None, subset="stratified")] == ["t0", "t2"]
    assert [p.prompt_id for p in select_prompts(prompts, role="trigger", limit=3, subset=None)] == ["t0", "t1", "t2"]
    general = _suite(tmp_path).general.prompts
    assert len(select_prompts(general, role="general", limit=None, subset="stratified")) == 3


def test_plan_base_first_then_sweep_and_limit(tmp_path: Path) -> None:
    ev = Evaluation(EvalOptions(store_dir=str(tmp_path / "store"), limit=2), suite=_suite(tmp_path))
    plan = ev.plan([str(RNA)], ["n=1,6"])
    assert [(m.label, m.kind) for m in plan.methods] == [("base", "base"), ("rna n=1", "method"), ("rna n=6", "method")]
    assert {r: [p.prompt_id for p in ps] for r, ps in plan.prompts.items()} == {"trigger": ["t0", "t1"],
                                                                                  "general": ["g0", "g1"]}
    assert len(plan.items()) == 3 * 4
    with pytest.raises(MitigationError, match="no parameter 'm'"):
        ev.plan([str(RNA)], ["m=1"])


def test_trigger_prompts_without_available_reference_are_excluded_and_counted(tmp_path: Path) -> None:
    ev = Evaluation(EvalOptions(store_dir=str(tmp_path / "store")), suite=_suite(tmp_path, missing_ref=True))
    plan = ev.plan([], [])
    assert [p.prompt_id for p in plan.prompts["trigger"]] == ["t0", "t1", "t3"]
    assert plan.excluded_prompts == 1
    assert plan.coverage.images_ok == 1


def test_no_reference_at_all_is_a_clear_error(tmp_path: Path) -> None:
    suite = _suite(tmp_path)
    for f in (tmp_path / "refs").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="no memorized reference image is available"):
        Evaluation(EvalOptions(store_dir=str(tmp_path / "store")), suite=suite).plan([], [])


def _store_method(store: RunStore, ev: Evaluation, prompts: dict, *, path: Path, params: dict, label: str,
                  skip: int = 0) -> None:
    """Rows as the engine writes them (current key scheme, engine version, method fingerprint)."""
    from membench_eval.generation.engine import GENERATION_CODE_VERSION
    from membench_eval.plugins.source import fingerprint_file
    from membench_eval.evaluation.stored_configs import current_compute

    s = ev.settings
    source = fingerprint_file(path)
    device_type, dtype = current_compute(None)
    img = Image.new("RGB", (64, 64))
    rows = [(p, i) for role, ps in prompts.items() for p in ps for i in range(s.images_per_prompt(role))]
    for p, i in rows[skip:]:
        fields = key_fields(model="local", revision="sha256:x", scheduler={}, method=path.stem, params=params,
                            method_source=source.sha256, engine=GENERATION_CODE_VERSION, prompt_id=p.prompt_id,
                            prompt=p.text, seed=image_seed(s.seed, p.prompt_id, i),
                            num_inference_steps=s.num_inference_steps, guidance_scale=s.guidance_scale,
                            height=s.height, width=s.width, batch_shape=s.batch_size, device_type=device_type,
                            dtype=dtype)
        store.put_image(image_key(fields), img, {**fields, "label": label, "model_path": ev.model_name,
                                                 "method_path": source.path, "method_sha256": source.sha256})


def test_configs_complete_in_the_store_join_the_plan(tmp_path: Path) -> None:
    suite = _suite(tmp_path)
    (tmp_path / "model").mkdir()
    user_file = tmp_path / "methods" / "drop.py"
    user_file.parent.mkdir()
    user_file.write_text(USER_METHOD)
    ev = Evaluation(EvalOptions(store_dir=str(tmp_path / "store"), limit=2), suite=suite)
    prompts = ev.plan([], []).prompts
    with RunStore(tmp_path / "store") as store:
        _store_method(store, ev, prompts, path=RNA, params={"n": 3}, label="rna n=3")
        _store_method(store, ev, prompts, path=REPO / "mitigations" / "rta.py", params={"n": 2}, label="rta n=2",
                      skip=1)  # incomplete
        _store_method(store, ev, prompts, path=user_file, params={"p": 0.1}, label="drop p=0.1")
    ev = Evaluation(EvalOptions(store_dir=str(tmp_path / "store"), limit=2), suite=suite)
    assert [(m.label, m.kind) for m in ev.plan([], []).methods] == [
        ("base", "base"), ("rna n=3", "baseline"), ("drop p=0.1", "stored")]
    # The user's own method wins over a stored config of the same label.
    assert [(m.label, m.kind) for m in ev.plan([str(RNA)], ["n=3"]).methods] == [
        ("base", "base"), ("drop p=0.1", "stored"), ("rna n=3", "method")]
    ev = Evaluation(EvalOptions(store_dir=str(tmp_path / "store"), limit=3), suite=suite)
    assert [m.label for m in ev.plan([], []).methods] == ["base"]  # more prompts than stored
    # An edited method file is stale: its stored images are never shown as its results.
    user_file.write_text(USER_METHOD.replace("return prompt", "return prompt + ' edited'"))
    ev = Evaluation(EvalOptions(store_dir=str(tmp_path / "store"), limit=2), suite=suite)
    assert [m.label for m in ev.plan([], []).methods] == ["base", "rna n=3"]


USER_METHOD = """
from membench_eval.mitigation import Mitigation


class Drop(Mitigation):
    name = "drop"
    p: float = 0.1

    def rewrite_prompt(self, prompt, rng):
        return prompt
"""


def test_plugin_and_cli_import_no_heavy_library() -> None:
    code = ("import sys, membench_eval.pytest_plugin, membench_eval.evaluation, membench_eval.cli.run, "
            "membench_eval.evaluation.gates, membench_eval.report; "
            "print(sorted(m for m in ('torch', 'diffusers', 'open_clip', 'onnxruntime', 'transformers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_options_are_one_group_all_prefixed(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help", *plugin_args())
    text = result.stdout.str()
    section = text[text.index("memorization-mitigation benchmark"):]
    for opt in ("--membench=FILE", "--membench-suite", "--membench-param", "--membench-limit", "--membench-subset",
                "--membench-out", "--membench-gate", "--membench-clip-pretrained"):
        assert opt in section
