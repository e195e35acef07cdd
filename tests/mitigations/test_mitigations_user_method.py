"""A method written as a new user would (the README's worked example) runs end to end:
file -> load_mitigation -> generation engine -> run store, under its own store key."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

# The README's worked example ("Writing a mitigation"), as `membench init` writes it; checked
# against the README below and in tests/cli/test_init.py.
from membench_eval.cli.init_files import METHOD as README_EXAMPLE  # noqa: E402

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_example_matches_this_test():
    """When the README carries the example, it is this exact code (so the test proves the README)."""
    if not README.exists() or "class DropWords(Mitigation)" not in README.read_text():
        pytest.skip("README has no worked example yet")
    assert README_EXAMPLE.strip() in README.read_text()


def test_user_method_runs_end_to_end(tmp_path, make_tiny_pipeline):
    from membench_eval.generation.engine import generate
    from membench_eval.generation.seeding import plan_requests
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.plugins.mitigations import load_mitigation, load_mitigations
    from membench_eval.store.run_store import RunStore
    from membench_eval.suites.types import Prompt

    method_file = tmp_path / "drop_words.py"
    method_file.write_text(README_EXAMPLE)
    method = load_mitigation(method_file, params={"p": "0.3"})
    assert method.label() == "drop_words p=0.3"
    assert [m.label() for m in load_mitigations(method_file, param_items=["p=0.1,0.2"])] == ["drop_words p=0.1", "drop_words p=0.2"]

    pipe = make_tiny_pipeline(seed=0)
    settings = GenerationSettings(num_inference_steps=2, height=64, width=64, batch_size=4)
    prompts = [Prompt("p0", "a photo of an astronaut riding a horse on the moon"), Prompt("p1", "a cup of coffee")]
    requests = plan_requests(prompts, 2, run_seed=0)
    store = RunStore(tmp_path / "store")
    report = generate(pipe, requests, method, settings, store, progress=False)
    base = generate(pipe, requests, None, settings, store, progress=False)

    assert report.new == 4 and base.new == 4
    assert set(report.keys).isdisjoint(base.keys)
    rows = [store.record(k) for k in report.keys]
    assert all(store.get_image(k).size == (64, 64) for k in report.keys)
    used = [row["prompt_used"] for row in rows]
    assert any(u != r.prompt for u, r in zip(used, requests))
    assert all(set(u.split()) <= set(r.prompt.split()) for u, r in zip(used, requests))
    # Re-running is a no-op: everything is already stored under the method's keys.
    assert generate(pipe, requests, method, settings, store, progress=False).reused == 4
