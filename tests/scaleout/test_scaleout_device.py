"""Per-worker devices under pytest-xdist (``runtime.device_for_worker``), with a faked device count:
this machine has no GPU, the rule must still be right on an 8-GPU runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from membench_eval import runtime
from membench_eval.runtime import device_for_worker, spread_device, visible_cuda_count, xdist_worker_index


def _fake_cuda(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_worker_ids():
    assert [xdist_worker_index(w) for w in ("gw0", "gw7", "gw12")] == [0, 7, 12]
    assert [xdist_worker_index(w) for w in (None, "", "master", "gw", "gwx")] == [None] * 5


@pytest.mark.parametrize("requested", [None, "auto", "cuda"])
def test_open_requests_are_spread_round_robin(requested):
    assert [spread_device(requested, n, 4) for n in range(6)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3",
                                                                 "cuda:0", "cuda:1"]


@pytest.mark.parametrize("requested", ["cpu", "cuda:1", "cuda:0", "mps"])
def test_explicit_devices_stay_as_given(requested):
    assert spread_device(requested, 3, 4) == requested


def test_no_worker_or_no_cuda_changes_nothing():
    assert spread_device(None, None, 8) is None and spread_device("cuda", None, 8) == "cuda"  # serial run
    assert spread_device(None, 3, 0) is None and spread_device("auto", 3, 0) == "auto"  # CPU machine


def test_device_for_worker_uses_the_visible_count(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    _fake_cuda(monkeypatch, 2)
    assert [device_for_worker(None, f"gw{n}") for n in range(4)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert device_for_worker("cuda:1", "gw0") == "cuda:1" and device_for_worker("cpu", "gw1") == "cpu"
    assert device_for_worker(None, None) is None  # not under xdist: load_pipeline's own choice
    _fake_cuda(monkeypatch, 0)
    assert device_for_worker(None, "gw1") is None  # CPU machine: unchanged


def test_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch):
    # torch's count honours CUDA_VISIBLE_DEVICES ("1,3" -> two devices, cuda:0 and cuda:1).
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    _fake_cuda(monkeypatch, 2)
    assert visible_cuda_count() == 2 and device_for_worker("auto", "gw3") == "cuda:1"
    # Every device hidden: no CUDA device, whatever torch was told before.
    _fake_cuda(monkeypatch, 4)
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert visible_cuda_count() == 0 and device_for_worker("cuda", "gw2") == "cuda"


def test_explicit_device_needs_no_torch(monkeypatch: pytest.MonkeyPatch):
    def boom() -> int:
        raise AssertionError("the device count was read for an explicit device")

    monkeypatch.setattr(runtime, "visible_cuda_count", boom)
    assert device_for_worker("cuda:1", "gw5") == "cuda:1" and device_for_worker(None, None) is None


def test_plugin_options_take_the_worker_device(monkeypatch: pytest.MonkeyPatch):
    from membench_eval import pytest_plugin

    _fake_cuda(monkeypatch, 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    class Config:
        def __init__(self, workerid: str | None, device: str | None):
            if workerid is not None:
                self.workerinput = {"workerid": workerid}
            self.device = device
            self.invocation_params = pytest.Config.InvocationParams(args=(), plugins=None, dir=Path.cwd())

        def getoption(self, name: str):
            return {"membench_device": self.device, "membench_engine": "local"}.get(name)

    assert pytest_plugin._options(Config("gw6", None)).device == "cuda:2"
    assert pytest_plugin._options(Config("gw6", "cuda:3")).device == "cuda:3"
    assert pytest_plugin._options(Config(None, None)).device is None  # the controller / a serial run
