"""Run-store integrity: checksums checked on read, damaged entries quarantined and regenerated,
edited rows ignored, stale entries pruned, fail-fast on unwritable folders, exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from membench_eval.cli import main
from membench_eval.errors import StoreError
from membench_eval.store.run_store import RunStore


def _image(value: int) -> Image.Image:
    arr = np.full((8, 8, 3), value, dtype=np.uint8)
    arr[0, 0] = (1, 2, 3)
    return Image.fromarray(arr)


def _png(value: int) -> bytes:
    import io

    buf = io.BytesIO()
    _image(value).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def filled(tmp_path: Path) -> tuple[Path, str]:
    store = RunStore(tmp_path / "s", shard="w")
    key = "ab" * 32
    store.put_image(key, _image(10), {"prompt_id": "p0"})
    store.put_score(key, "clip_score", "mini", 0.25)
    store.close()
    return tmp_path / "s", key


def test_swapped_png_is_quarantined_and_its_scores_dropped(filled):
    root, key = filled
    store = RunStore(root)
    store.image_path(key).write_bytes(_png(200))  # another valid image under the same name
    assert store.get_score(key, "clip_score", "mini") == 0.25  # not yet looked at
    assert not store.has(key)  # the check: quarantined, so generation redoes it
    assert store.get_score(key, "clip_score", "mini") is None  # its scores are recomputed too
    assert any(key in line and "damaged (" in line and "will be regenerated" in line for line in store.problems)
    moved = list((root / "quarantine" / "files").glob(f"{key}.*.png"))
    assert len(moved) == 1 and moved[0].read_bytes() == _png(200)
    # Another process opening the store sees the quarantine as well.
    other = RunStore(root)
    assert not other.has(key) and other.get_score(key, "clip_score", "mini") is None
    # Regenerated: the new row wins over the quarantined one.
    other.put_image(key, _image(10), {"prompt_id": "p0"})
    assert RunStore(root).has(key)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_truncated_or_flipped_png_is_detected_even_with_cached_scores(filled, damage):
    root, key = filled
    path = RunStore(root).image_path(key)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    store = RunStore(root)
    with pytest.raises(StoreError, match=rf"{key}.png: stored image of key {key} is damaged"):
        store.get_image(key)
    assert not store.has(key) and not path.exists()


def test_edited_score_row_fails_its_checksum_and_is_ignored(filled):
    root, key = filled
    shard = next((root / "scores").glob("*.jsonl"))
    row = json.loads(shard.read_text())
    row["value"] = 0.99
    shard.write_text(json.dumps(row) + "\n")
    store = RunStore(root)
    assert store.get_score(key, "clip_score", "mini") is None
    assert any("checksum mismatch (edited or damaged row)" in line and "row 1" in line for line in store.problems)


def test_edited_record_row_is_ignored_so_the_image_is_regenerated(filled):
    root, key = filled
    shard = next((root / "records").glob("*.jsonl"))
    row = json.loads(shard.read_text())
    row["prompt_id"] = "p1"
    shard.write_text(json.dumps(row) + "\n")
    assert not RunStore(root).has(key)


def test_first_writer_of_a_key_wins(tmp_path: Path):
    a, b = RunStore(tmp_path, shard="a"), RunStore(tmp_path, shard="b")
    key = "cd" * 32
    a.put_image(key, _image(1), {})
    b.refresh()
    b.put_image(key, _image(1), {})  # known key: dropped, not appended
    rows = [line for f in (tmp_path / "records").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert len(rows) == 1


def test_verify_and_repair_from_the_cli(filled, capsys):
    root, key = filled
    RunStore(root).image_path(key).write_bytes(_png(99))
    assert main(["store", "verify", str(root)]) == 3
    assert f"checksum mismatch (key {key})" in capsys.readouterr().out
    assert main(["store", "verify", str(root), "--repair"]) == 3
    assert "repaired: moved" in capsys.readouterr().out
    assert main(["store", "verify", str(root)]) == 0


def test_unknown_store_version_is_an_environment_fault(tmp_path: Path, capsys):
    (tmp_path / "STORE.json").write_text(json.dumps({"format": "membench-run-store", "version": 1}))
    with pytest.raises(StoreError, match="format v1 is not one this membench reads"):
        RunStore(tmp_path)
    assert main(["store", "verify", str(tmp_path)]) == 3
    assert "STORE.json: run store format v1" in capsys.readouterr().err


def test_prune_removes_entries_of_an_edited_method(tmp_path: Path):
    from membench_eval.generation.engine import GENERATION_CODE_VERSION
    from membench_eval.plugins.source import fingerprint_file
    from membench_eval.store.keys import KEY_SCHEME
    from membench_eval.store.maintenance import find_stale, prune

    method = tmp_path / "m.py"
    method.write_text("X = 1\n")
    store = RunStore(tmp_path / "s")
    current = {"scheme": KEY_SCHEME, "engine": GENERATION_CODE_VERSION}
    source = fingerprint_file(method)
    store.put_image("01" * 32, _image(1), {**current, "method_path": str(method), "method_sha256": source.sha256})
    store.put_image("02" * 32, _image(2), {**current})  # base: no method file
    store.put_image("03" * 32, _image(3), {**current, "engine": "membench-generation/v1"})
    store.put_score("01" * 32, "clip_score", "mini", 0.3)
    assert set(find_stale(store)) == {"03" * 32}
    method.write_text("X = 2\n")
    assert find_stale(store) == {"01" * 32: "method file edited since", "03" * 32: find_stale(store)["03" * 32]}
    report = prune(store)
    assert (report.rows_removed, report.scores_removed, report.files_removed) == (2, 1, 2)
    again = RunStore(tmp_path / "s")
    assert [r["key"] for r in again.records()] == ["02" * 32] and again.has("02" * 32)


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` read-only for this process, also as root (a read-only bind mount)."""
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        for p in [folder, *folder.rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            yield
        finally:
            for p in [folder, *folder.rglob("*")]:
                p.chmod(0o755 if p.is_dir() else 0o644)
            folder.chmod(mode)
        return
    done = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make a read-only folder as root here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.slow
def test_damaged_store_on_mini_regenerates_and_gives_the_undamaged_leaderboard(tmp_path: Path, capsys):
    """Each damage: a one-line message naming the key and file, exit 0, and the leaderboard of an
    undamaged run, byte for byte. Unwritable folders stop before any generation with exit 3."""
    store, out = tmp_path / "store", tmp_path / "lb"
    args = ["run", "--suite", "mini", "--limit", "1", "--store", str(store), "--out", str(out), "--no-progress"]
    assert main(args) == 0
    clean = (out / "mini.limit-1.md").read_text()
    capsys.readouterr()
    rows = RunStore(store).records()
    trigger_key = next(r["key"] for r in rows if r["image_index"] == 3)

    def damage_png(how: str) -> None:
        path = RunStore(store).image_path(trigger_key)
        data = bytearray(path.read_bytes())
        if how == "swap":
            other = next(r["key"] for r in rows if r["key"] != trigger_key)
            data = bytearray(RunStore(store).image_path(other).read_bytes())
        elif how == "truncate":
            data = data[: len(data) // 3]
        else:
            data[len(data) // 2] ^= 0x10
        path.write_bytes(bytes(data))

    for how in ("swap", "truncate", "flip"):
        damage_png(how)
        assert main(args) == 0, how
        err = capsys.readouterr().err
        assert f"{trigger_key}.png: damaged" in err and "will be regenerated" in err, (how, err)
        assert (out / "mini.limit-1.md").read_text() == clean, how

    shard = next(p for p in (store / "scores").glob("*.jsonl") if p.stat().st_size)
    lines = shard.read_text().splitlines()
    row = json.loads(lines[0])
    row["value"] = 0.5 if not isinstance(row["value"], dict) else {k: 0.9 for k in row["value"]}
    shard.write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")
    assert main(args) == 0
    assert "checksum mismatch (edited or damaged row)" in capsys.readouterr().err
    assert (out / "mini.limit-1.md").read_text() == clean

    # Unwritable --out (a file where a folder should be): exit 3 before anything is generated.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main([*args[:-3], "--out", str(blocker / "lb"), "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert f"{blocker / 'lb'}: the leaderboard folder (--out) is not writable" in err
    # A read-only store with one image missing: exit 3 at once, not after the evaluation.
    RunStore(store).image_path(trigger_key).unlink()
    with read_only(store):
        assert main(args) == 3
    err = capsys.readouterr().err
    assert "the run store is not writable" in err and "nothing was generated" in err
