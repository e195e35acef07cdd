"""No stale or silently wrong numbers: an edited method regenerates, errors under xdist are shown as
in a serial run, and a failing hook shows the user's own traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from membench_eval.plugins.source import fingerprint_file

pytest_plugins = ("pytester",)

METHOD = '''
from membench_eval.mitigation import Mitigation


class Suffix(Mitigation):
    name = "suffix"
    word: str = "painting"

    def rewrite_prompt(self, prompt, rng):
        return prompt + " " + self.word
'''

HELPER_METHOD = '''
from membench_eval.mitigation import Mitigation
from helper_words import WORD


class Suffix(Mitigation):
    name = "suffix"

    def rewrite_prompt(self, prompt, rng):
        return prompt + " " + WORD
'''

FAILING = '''
from membench_eval.mitigation import Mitigation


def shorten(prompt):
    return prompt[:3] / 2  # the user's bug


class Broken(Mitigation):
    name = "broken"

    def rewrite_prompt(self, prompt, rng):
        return shorten(prompt)
'''


def plugin_args() -> list[str]:
    import importlib.metadata

    installed = any(e.value == "membench_eval.pytest_plugin" for e in importlib.metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "membench_eval.pytest_plugin"]


def test_fingerprint_covers_the_file_and_its_local_imports(tmp_path: Path):
    method = tmp_path / "m.py"
    method.write_text(HELPER_METHOD)
    (tmp_path / "helper_words.py").write_text("WORD = 'oil'\n")
    first = fingerprint_file(method)
    assert [Path(f).name for f in first.files] == ["m.py", "helper_words.py"]
    (tmp_path / "helper_words.py").write_text("WORD = 'ink'\n")  # only the helper changes
    assert fingerprint_file(method).sha256 != first.sha256
    # Harness helpers imported by a method are covered too; the plugin API module is versioned instead.
    rna = fingerprint_file(Path(__file__).resolve().parents[2] / "mitigations" / "rna.py")
    assert any(f.endswith("prompt_edits.py") for f in rna.files)
    assert not any(f.endswith("mitigation.py") for f in rna.files)


@pytest.mark.parametrize("source, params, expected", [
    ("def broken(:\n", [], "*SyntaxError*method.py*line 1*"),
    ("X = 1\n", [], "*method.py: defines no Mitigation subclass*"),
    (METHOD, ["--membench-param", "colour=red"], "*method 'suffix' has no parameter 'colour'*"),
    (METHOD, ["--membench-param", "word=1,"], "*empty value*"),
])
def test_bad_method_or_parameter_under_xdist_is_a_usage_error(pytester: pytest.Pytester, tmp_path: Path, source,
                                                               params, expected):
    method = tmp_path / "method.py"
    method.write_text(source)
    result = pytester.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider", "-n", "2", "--membench",
                                           str(method), *params, "--membench-store", str(tmp_path / "store"))
    assert result.ret == 4, result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines([expected])


@pytest.mark.slow
def test_editing_a_method_regenerates_its_images(tmp_path: Path, capsys, tiny_suite_file: Path):
    from membench_eval.cli import main

    method = tmp_path / "suffix.py"
    method.write_text(METHOD)
    # The tiny suite file: the mini's model at 32x32, one prompt, one image (base + the method: 2 images).
    args = ["run", str(method), "--suite", str(tiny_suite_file), "--store", str(tmp_path / "store"),
            "--out", str(tmp_path / "lb"), "--no-progress", "--no-stored-baselines"]
    assert main(args) == 0
    assert "2 images generated, 0 reused" in capsys.readouterr().out
    first = json.loads((tmp_path / "lb" / "tiny.json").read_text())
    assert main(args) == 0
    assert "0 images generated, 2 reused" in capsys.readouterr().out
    method.write_text(METHOD.replace("return prompt + \" \" + self.word", "return self.word"))  # same name, params
    assert main(args) == 0
    assert "1 images generated, 1 reused" in capsys.readouterr().out  # only the edited method's image
    again = json.loads((tmp_path / "lb" / "tiny.json").read_text())
    row = next(r for r in again["rows"] if r["label"] == "suffix word=painting")
    assert row["method_sha256"] == fingerprint_file(method).sha256 != next(
        r for r in first["rows"] if r["label"] == "suffix word=painting")["method_sha256"]
    assert row["method_path"] == str(method.resolve())


@pytest.mark.slow
def test_hook_exception_shows_the_users_traceback(pytester: pytest.Pytester, tmp_path: Path, capsys,
                                                 tiny_suite_file: Path):
    broken = tmp_path / "broken.py"
    broken.write_text(FAILING)
    result = pytester.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider", "--membench", str(broken),
                                           "--membench-suite", str(tiny_suite_file),
                                           "--membench-store", str(tmp_path / "store"),
                                           "--membench-out", str(tmp_path / "lb"))
    assert result.ret == 6  # the method's own exception: the same status as `membench run` (errors.EXIT_METHOD_RAISED)
    result.stdout.fnmatch_lines([
        "*MitigationError: method 'broken', rewrite_prompt: raised TypeError*(prompt *, image 0)*",
        f"*File \"{broken.resolve()}\", line 13, in rewrite_prompt*",
        f"*File \"{broken.resolve()}\", line 6, in shorten*",
        "*return prompt[[]:3] / 2  # the user's bug*",
        "TypeError: unsupported operand type(s) for /: 'str' and 'int'",
    ])
    # A run with failing items does not overwrite a good leaderboard.
    assert (tmp_path / "lb" / "tiny.failed.md").is_file() and not (tmp_path / "lb" / "tiny.md").exists()
    import subprocess
    import sys

    # A subprocess: pytester restores sys.modules after the test (in-process imports would be dropped).
    done = subprocess.run([sys.executable, "-m", "membench_eval.cli", "run", str(broken), "--suite", str(tiny_suite_file),
                           "--store", str(tmp_path / "store"), "--out", str(tmp_path / "lb"), "--no-progress"],
                          capture_output=True, text=True, timeout=600)
    code, err = done.returncode, done.stderr
    assert code == 6 and "rewrite_prompt: raised TypeError" in err  # the same status as under pytest
    assert f'File "{broken.resolve()}", line 6, in shorten' in err and "site-packages" not in err


def test_readme_generate_override_example_runs(tmp_path: Path, make_tiny_pipeline):
    """The manual's complete generate() example (docs/writing-a-method.md, moved there from the README),
    run through the engine on a tiny random model."""
    import re

    from membench_eval.generation.engine import generate
    from membench_eval.generation.seeding import plan_requests
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.plugins.mitigations import load_mitigation
    from membench_eval.store.run_store import RunStore
    from membench_eval.suites.types import Prompt

    readme = (Path(__file__).resolve().parents[2] / "docs" / "writing-a-method.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "class StrongGuidance" in b)
    (tmp_path / "strong.py").write_text(block)
    method = load_mitigation(tmp_path / "strong.py", params={"factor": "2.0"})
    pipe = make_tiny_pipeline(seed=3, sample_size=32)
    settings = GenerationSettings(num_inference_steps=2, height=32, width=32, batch_size=4)
    requests = plan_requests([Prompt("p0", "a cat"), Prompt("p1", "a dog")], 1, 0)
    store = RunStore(tmp_path / "store")
    report = generate(pipe, requests, method, settings, store, progress=False)
    base = generate(pipe, requests, None, settings, store, progress=False)
    # The engine measures the override's cost too: 2 steps x [uncond, cond] rows per image.
    assert report.new == 2 and all(store.record(k)["records"] == {"guidance_used": 15.0, "unet_evals": 4.0}
                                   for k in report.keys)
    assert all(store.image_path(a).read_bytes() != store.image_path(b).read_bytes()
               for a, b in zip(report.keys, base.keys))
