"""`membench generate`: suite in, store out; twice = zero new images; --method FILE --param k=v."""

from __future__ import annotations

import textwrap

import pytest

from membench_eval.cli import main
from membench_eval.store.run_store import RunStore
from membench_eval.suites.types import Prompt, PromptSet, Suite

METHOD = textwrap.dedent('''
    from membench_eval import Mitigation


    class AddNumber(Mitigation):
        """Inserts a number at the end of the prompt, n times."""
        name = "add_number"
        n: int = 1

        def rewrite_prompt(self, prompt, rng):
            return prompt + "".join(f" {rng.randrange(100000)}" for _ in range(self.n))
''')


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Suite:
    import torch

    from membench_eval.models.tiny import build_random_tiny_pipeline

    torch.set_num_threads(1)
    model = tmp_path_factory.mktemp("model")
    build_random_tiny_pipeline(seed=5, sample_size=32).save_pretrained(model)
    return Suite(
        name="tinycli", model=str(model),
        trigger=PromptSet("trigger", (Prompt("t0", "a trigger prompt"), Prompt("t1", "another one")), 2),
        general=PromptSet("general", (Prompt("g0", "a general prompt"), Prompt("g1", "more")), 1),
        generation_defaults={"height": 32, "width": 32, "num_inference_steps": 2},
    )


@pytest.fixture()
def cli(monkeypatch, suite):
    import membench_eval.suites as suites

    def get_suite(name, data_dir=None):
        assert name == "tinycli"
        return suite

    monkeypatch.setattr(suites, "get_suite", get_suite)
    return lambda *argv: main(["generate", "--suite", "tinycli", "--device", "cpu", "--no-progress", *argv])


def test_generate_twice_reuses_everything(cli, tmp_path, capsys):
    out = tmp_path / "store"
    assert cli("--store", str(out), "--limit", "1") == 0
    assert "base: 3 new, 0 reused" in capsys.readouterr().out  # first prompt of each role: 2 + 1 images
    assert cli("--store", str(out)) == 0
    assert "base: 3 new, 3 reused" in capsys.readouterr().out
    rows = RunStore(out).records()
    assert sorted((r["prompt_id"], r["image_index"]) for r in rows) == [
        ("g0", 0), ("g1", 0), ("t0", 0), ("t0", 1), ("t1", 0), ("t1", 1)]
    assert {r["batch_shape"] for r in rows} == {10}
    # Another batch size is another compute shape (pixels may differ in the last bit): its own keys.
    assert cli("--store", str(out), "--batch-size", "1") == 0
    assert "base: 6 new, 0 reused" in capsys.readouterr().out
    assert cli("--store", str(out), "--batch-size", "1") == 0
    assert "base: 0 new, 6 reused" in capsys.readouterr().out


def test_method_file_and_param_sweep_store_under_their_own_keys(cli, tmp_path, capsys):
    method = tmp_path / "add_number.py"
    method.write_text(METHOD)
    out = tmp_path / "store"
    assert cli("--store", str(out), "--role", "trigger", "--limit", "1") == 0
    assert cli("--store", str(out), "--role", "trigger", "--limit", "1", "--method", str(method), "--param", "n=1,6") == 0
    printed = capsys.readouterr().out
    assert "add_number n=1: 2 new, 0 reused" in printed and "add_number n=6: 2 new, 0 reused" in printed
    rows = RunStore(out).records()
    assert len({r["key"] for r in rows}) == 6
    by_label = {(r["label"], r["image_index"]): r for r in rows}
    assert by_label[("base", 0)]["prompt_used"] == "a trigger prompt"
    assert len(by_label[("add_number n=6", 0)]["prompt_used"].split()) == 3 + 6
    assert by_label[("add_number n=6", 0)]["params"] == {"n": 6}


def test_user_errors_are_one_line(cli, tmp_path, capsys):
    method = tmp_path / "add_number.py"
    method.write_text(METHOD)
    assert cli("--store", str(tmp_path / "s"), "--method", str(method), "--param", "k=2") == 2
    err = capsys.readouterr().err
    assert err.startswith("membench: error: ") and "has no parameter 'k'" in err and err.count("\n") == 1
    assert cli("--store", str(tmp_path / "s"), "--method", str(method), "--param", "n=two") == 2
    assert "expected an int, got 'two'" in capsys.readouterr().err
