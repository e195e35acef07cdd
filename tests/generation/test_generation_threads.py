"""One CPU thread count for generation in every process (issue 33, case 11): serial runs, xdist
workers and Ray actors made different images when each kept torch's own default."""

from __future__ import annotations

import pytest
import torch

from membench_eval import paths
from membench_eval.errors import MembenchError
from membench_eval.models.cuda import compute_flags
from membench_eval.models.loading import load_pipeline
from membench_eval.runtime import CPU_THREADS_ENV, generation_cpu_threads


@pytest.fixture()
def threads_restored():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_cpu_generation_uses_one_thread_whatever_torch_had(threads_restored, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(CPU_THREADS_ENV, raising=False)
    torch.set_num_threads(2)  # a serial run on a 2-core machine started like this
    pipe = load_pipeline(str(paths.MINI_DIR / "model"), device="cpu")
    assert torch.get_num_threads() == 1
    assert "cpu_threads" not in compute_flags(pipe)  # the default key: the same images as -n N


def test_a_chosen_thread_count_is_used_and_bad_values_are_named(threads_restored, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(CPU_THREADS_ENV, "2")
    pipe = load_pipeline(str(paths.MINI_DIR / "model"), device="cpu")
    assert torch.get_num_threads() == 2 and compute_flags(pipe)["cpu_threads"] == 2
    monkeypatch.setenv(CPU_THREADS_ENV, "two")
    with pytest.raises(MembenchError, match=CPU_THREADS_ENV):
        generation_cpu_threads()
