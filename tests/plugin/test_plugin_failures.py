"""A hook failure fails its items under every scheduler (issue 33, cases 1 and 2): no retry turns a
flaky batch into a pass, and under ``-n 2`` the prompts of one chunk (one pipeline call) run on one
worker, so serial and xdist runs fail the same items."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from membench_eval import paths
from membench_eval.errors import EXIT_METHOD_RAISED
from membench_eval.pytest_plugin.items import MembenchItem
from membench_eval.pytest_plugin.session import MembenchSession
from tests.plugin.test_plugin_trust import plugin_args

pytest_plugins = ("pytester",)


class _FlakyEvaluation:
    """``evaluate_prompts`` that raises on its first call only (a batch out of memory)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def evaluate_prompts(self, method, role, prompts):
        self.calls.append([p.prompt_id for p in prompts])
        if len(self.calls) == 1:
            raise RuntimeError("out of memory in this batch")
        return [f"result {p.prompt_id}" for p in prompts]


def _items(session: MembenchSession, chunks: dict[str, str]) -> list[MembenchItem]:
    items = []
    for prompt_id, chunk in chunks.items():
        item = object.__new__(MembenchItem)  # no pytest collection needed for the grouping logic
        item.method = SimpleNamespace(label="m")
        item.role, item.prompt, item.chunk = "general", SimpleNamespace(prompt_id=prompt_id), chunk
        items.append(item)
    for item in items:
        item.session = SimpleNamespace(items=items)
    return items


def test_a_failed_chunk_fails_every_item_of_it_and_is_not_retried():
    session = object.__new__(MembenchSession)
    session._ray_error, session._prefetched, session._failed = None, {}, {}
    session.is_worker = False
    session._evaluation = ev = _FlakyEvaluation()
    a, b, c = _items(session, {"p0": "m|general|0", "p1": "m|general|0", "p2": "m|general|1"})
    for item in (a, b):
        with pytest.raises(RuntimeError, match="out of memory"):
            session.result_for(item)
    assert session.result_for(c) == "result p2"  # the other chunk is its own pipeline call
    assert ev.calls == [["p0", "p1"], ["p2"]]  # serial groups by chunk too; nothing retried


FLAKY = '''
import os
from pathlib import Path
from membench_eval.mitigation import Mitigation


class Flaky(Mitigation):
    name = "flaky"

    def rewrite_prompt(self, prompt, rng):
        mark = Path(os.environ["FLAKY_MARK"])
        if "soup" in prompt and not mark.exists():  # fails once: a retry would pass
            mark.write_text("failed once")
            raise RuntimeError("flaky once")
        return prompt
'''

SUITE = """name = "flaky"
[model]
path = "model"
[trigger]
file = "t.csv"
references = "refs"
images_per_prompt = 1
[general]
file = "g.txt"
images_per_prompt = 1
[generation]
height = 64
width = 64
num_inference_steps = 2
[scoring]
sscd_backend = "disc_mixup_onnx"
allow_missing_quality_weights = true
"""


def tiny_suite(folder: Path) -> Path:
    """A suite file on the mini model: one trigger prompt, four general ones, two DDIM steps."""
    (folder / "model").symlink_to(paths.MINI_DIR / "model", target_is_directory=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "astronaut.png").write_bytes((paths.MINI_DIR / "references" / "astronaut.png").read_bytes())
    (folder / "t.csv").write_text(",prompt,urls\nt0,official nasa portrait of astronaut,\"['astronaut.png']\"\n")
    (folder / "g.txt").write_text("a red bicycle\na bowl of soup\na green car\na blue house\n")
    (folder / "s.toml").write_text(SUITE)
    return folder / "s.toml"


@pytest.mark.slow
def test_flaky_hook_under_xdist_fails_its_chunk_on_one_worker(pytester: pytest.Pytester, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch):
    suite = tiny_suite(tmp_path)
    (tmp_path / "flaky.py").write_text(FLAKY)
    monkeypatch.setenv("FLAKY_MARK", str(tmp_path / "mark"))
    out = tmp_path / "lb"
    result = pytester.runpytest_subprocess(
        *plugin_args(), "-p", "no:cacheprovider", "-n", "2", "-v", "--membench", str(tmp_path / "flaky.py"),
        "--membench-suite", str(suite), "--membench-store", str(tmp_path / "store"), "--membench-out", str(out),
        "--membench-batch-size", "2", timeout=240)
    text = result.stdout.str()
    assert result.ret == EXIT_METHOD_RAISED, text + result.stderr.str()  # the method raised: 6 in both shells
    failed = [ln for ln in text.splitlines() if ln.startswith("[gw") and " FAILED " in ln]
    assert len(failed) == 2 and all(ln.count("@flaky|general|0") == 1 for ln in failed), text  # g-0, g-1: one batch
    assert len({ln.split()[0] for ln in failed}) == 1, text  # one worker ran the whole chunk
    assert "RuntimeError: flaky once" in text and (out / "flaky.failed.md").is_file()
    assert not (out / "flaky.md").exists()
