"""A damaged line never jams the store (issue 33, cases 3 and 4): it is set aside to quarantine with
its shard and line number, the run goes on, and ``store verify`` reports the store as it is now;
``--repair`` does what it says and says what it did."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from membench_eval.cli import main
from membench_eval.store.run_store import RunStore


def _image(value: int) -> Image.Image:
    return Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8))


@pytest.fixture()
def store_root(tmp_path: Path) -> Path:
    store = RunStore(tmp_path / "s", shard="w")
    for i in range(3):
        key = f"{i:064x}"
        store.put_image(key, _image(i), {"prompt_id": f"p{i}"})
        store.put_score(key, "sscd", "disc", 0.1 * i)
    store.close()
    return tmp_path / "s"


def _flip_line(shard: Path, number: int, new: bytes) -> None:
    lines = shard.read_bytes().split(b"\n")
    lines[number - 1] = new
    shard.write_bytes(b"\n".join(lines))


def test_a_corrupt_complete_line_is_set_aside_and_repaired(store_root: Path, capsys):
    shard = store_root / "records" / "w.jsonl"
    _flip_line(shard, 2, b'{"key": "00\xff broken')  # not the torn last line: a complete bad one
    store = RunStore(store_root)  # a run opening the store goes on
    assert len(store) == 2 and store.has(f"{0:064x}") and not store.has(f"{1:064x}")  # p1 is regenerated
    copy = store_root / "quarantine" / "lines" / "records.w.line2.jsonl"
    assert copy.read_bytes() == b'{"key": "00\xff broken\n'
    assert any(f"{shard}, line 2: corrupt JSON line" in p and str(copy) in p for p in store.problems)
    store.close()
    assert main(["store", "verify", str(store_root)]) == 3  # still in its shard
    assert "1 damaged row(s) or line(s)" in capsys.readouterr().out
    assert main(["store", "verify", str(store_root), "--repair"]) == 3
    out = capsys.readouterr().out
    assert f"repaired: {shard}: removed line(s) 2" in out and "repaired: moved" not in out
    assert main(["store", "verify", str(store_root)]) == 0
    assert len(RunStore(store_root)) == 2


def test_an_edited_score_row_rescored_since_is_history(store_root: Path, capsys):
    shard = store_root / "scores" / "w.jsonl"
    row = json.loads(shard.read_bytes().split(b"\n")[0])
    row["value"] = 0.99  # edited: the checksum no longer matches
    _flip_line(shard, 1, json.dumps(row).encode())
    assert main(["store", "verify", str(store_root)]) == 3  # no valid score for that image now
    capsys.readouterr()
    rescoring = RunStore(store_root, shard="run2")
    assert not rescoring.has_score(row["key"], "sscd", "disc")
    rescoring.put_score(row["key"], "sscd", "disc", 0.0)  # what the next run does
    rescoring.close()
    assert main(["store", "verify", str(store_root)]) == 0
    assert "1 more already superseded by a valid row (history" in capsys.readouterr().out


def test_repair_of_a_missing_png_claims_nothing_and_a_read_only_store_is_named(store_root: Path, capsys):
    RunStore(store_root).image_path(f"{2:064x}").unlink()
    assert main(["store", "verify", str(store_root), "--repair"]) == 0  # the next run regenerates it
    out = capsys.readouterr().out
    assert "PNG missing" in out and "quarantined" not in out and "repaired: nothing to repair" in out
    _flip_line(store_root / "records" / "w.jsonl", 1, b"garbage")


def test_repair_on_a_read_only_store_says_it_repaired_nothing(store_root: Path, capsys, monkeypatch):
    from membench_eval.store import damage

    _flip_line(store_root / "records" / "w.jsonl", 1, b"garbage")

    def read_only(path, data):
        raise PermissionError(13, "Read-only file system", str(path))

    monkeypatch.setattr(damage, "write_atomic", read_only)  # root ignores chmod: fail the write itself
    assert main(["store", "verify", str(store_root), "--repair"]) == 3
    err = capsys.readouterr()
    assert "line 1: corrupt JSON line" in err.out and "ignored (not copied to quarantine" in err.out
    assert "cannot remove damaged lines" in err.err and "repaired:" not in err.out
    assert (store_root / "records" / "w.jsonl").read_bytes().startswith(b"garbage\n")
