"""A full disk names the file and what was being written (issue 33, case 7): the OS's "No space
left on device" named neither, so the user could not tell the store from the leaderboard folder."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from membench_eval.cli import main
from membench_eval.store import atomic, jsonl
from membench_eval.store.run_store import RunStore


def _full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_png_and_row_writes_on_a_full_disk_name_path_and_what(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    store = RunStore(tmp_path, shard="w")
    key = "ab" * 32
    monkeypatch.setattr(atomic.os, "replace", _full)
    with pytest.raises(OSError) as info:
        store.put_image(key, Image.fromarray(np.zeros((4, 4, 3), np.uint8)), {})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(store.image_path(key))
    assert f"writing the PNG of image key {key}" in str(info.value)
    assert not list(tmp_path.rglob("*.tmp"))
    monkeypatch.undo()
    monkeypatch.setattr(jsonl.os, "write", _full)
    with pytest.raises(OSError) as info:
        store.put_score(key, "sscd", "disc", 0.5)
    assert info.value.filename == str(tmp_path / "scores" / "w.jsonl") and "appending a score row" in str(info.value)


def test_the_cli_prints_the_named_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    from membench_eval.cli import store as store_cli

    target = tmp_path / "lb" / "mini.md"
    monkeypatch.setattr(store_cli, "run_verify", lambda args: atomic.write_atomic(target, "table", "leaderboard"))
    monkeypatch.setattr(atomic.os, "replace", _full)
    assert main(["store", "verify", str(tmp_path)]) == 3
    assert f"membench: error: {target}: No space left on device (writing the leaderboard (5 bytes)" in capsys.readouterr().err
