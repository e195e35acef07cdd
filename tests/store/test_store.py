"""Run store: content keys, atomic PNG + row writes, tolerant shard reading, scores."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from membench_eval.errors import DataError, StoreError
from membench_eval.store import RunStore, canonical_json, image_key, key_fields

FIELDS = dict(
    model="CompVis/stable-diffusion-v1-4", revision="abc", scheduler={"class": "DDIMScheduler", "config": {"a": 1}},
    method="base", params={}, method_source="s" * 64, engine="membench-generation/v2", prompt_id="p0",
    prompt="a cat", seed=1, num_inference_steps=50, guidance_scale=7.5, height=512, width=512, batch_shape=10,
    device_type="cpu", dtype="float32",
)


def _image(value: int) -> Image.Image:
    arr = np.full((8, 8, 3), value, dtype=np.uint8)
    arr[0, 0] = (1, 2, 3)
    return Image.fromarray(arr)


def test_key_covers_every_field_and_is_canonical():
    base = image_key(key_fields(**FIELDS))
    assert len(base) == 64 and base == image_key(key_fields(**dict(reversed(list(FIELDS.items())))))
    changes = dict(
        model="other", revision="def", scheduler={"class": "DDIMScheduler", "config": {"a": 2}}, method="rna",
        params={"n": 6}, prompt_id="p1", prompt="a dog", seed=2, num_inference_steps=49, guidance_scale=7.0,
        height=256, width=256, method_source="t" * 64, engine="membench-generation/v3", batch_shape=4,
        device_type="cuda", dtype="float16",
    )
    for name, value in changes.items():
        assert image_key(key_fields(**{**FIELDS, name: value})) != base, name
    # Method parameters are part of the identity, order-insensitively.
    a = key_fields(**{**FIELDS, "params": {"n": 1, "m": 2}})
    b = key_fields(**{**FIELDS, "params": {"m": 2, "n": 1}})
    assert image_key(a) == image_key(b)
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_put_get_reopen_and_verify(tmp_path):
    store = RunStore(tmp_path / "s", shard="w1")
    key = image_key(key_fields(**FIELDS))
    assert not store.has(key)
    store.put_image(key, _image(10), {"prompt_id": "p0", "records": {"iterations": 3}})
    assert store.has(key) and key in store
    assert np.array_equal(np.asarray(store.get_image(key)), np.asarray(_image(10)))
    store.close()
    again = RunStore(tmp_path / "s")
    assert again.has(key) and len(again) == 1
    row = again.record(key)
    assert row["records"] == {"iterations": 3} and row["png"] == f"images/{key[:2]}/{key}.png"
    assert again.verify() == []
    again.image_path(key).write_bytes(b"not a png")
    assert again.verify() == [key]


def test_row_only_after_png_and_missing_png_means_not_stored(tmp_path):
    store = RunStore(tmp_path)
    key = "ab" * 32
    store.put_image(key, _image(1), {})
    store.image_path(key).unlink()
    assert not store.has(key)  # a row without its image is regenerated
    assert not list(tmp_path.rglob("*.tmp"))


def test_torn_last_line_is_ignored_but_mid_file_corruption_is_reported(tmp_path):
    store = RunStore(tmp_path, shard="a")
    keys = ["%064x" % i for i in range(3)]
    for k in keys:
        store.put_image(k, _image(5), {})
    store.close()
    shard = tmp_path / "records" / "a.jsonl"
    whole = shard.read_bytes()
    shard.write_bytes(whole + b'{"key": "torn-by-a-kil')  # a writer killed mid-line
    reopened = RunStore(tmp_path)
    assert sorted(r["key"] for r in reopened.records()) == keys
    # New writes go to a new shard, never after a torn line.
    reopened.put_image("ff" * 32, _image(6), {})
    assert reopened.shard != "a" and (tmp_path / "records" / f"{reopened.shard}.jsonl").exists()
    shard.write_bytes(b"garbage\n" + whole)
    damaged = RunStore(tmp_path)  # set aside and reported, not fatal (tests/store/test_store_damage.py)
    assert any("a.jsonl, line 1: corrupt JSON line" in line for line in damaged.problems)


def test_shards_merge_and_duplicates_are_dropped(tmp_path, monkeypatch):
    # Two hosts on a shared file system: each indexes the log itself (its own index folder).
    from membench_eval.store.index_location import INDEX_DIR_ENV

    monkeypatch.setenv(INDEX_DIR_ENV, str(tmp_path / "host-a"))
    a = RunStore(tmp_path / "s", shard="a")
    monkeypatch.setenv(INDEX_DIR_ENV, str(tmp_path / "host-b"))
    b = RunStore(tmp_path / "s", shard="b")
    monkeypatch.delenv(INDEX_DIR_ENV)
    tmp_path = tmp_path / "s"
    a.put_image("01" * 32, _image(1), {"w": "a"})
    b.put_image("01" * 32, _image(1), {"w": "b"})  # a concurrent writer of the same key
    b.put_image("02" * 32, _image(2), {"w": "b"})
    merged = RunStore(tmp_path)
    assert sorted(r["key"] for r in merged.records()) == ["01" * 32, "02" * 32]
    assert a.has("01" * 32) and not a.has("02" * 32)
    a.refresh()
    assert a.has("02" * 32)


def test_scores_by_metric_and_backend(tmp_path):
    store = RunStore(tmp_path, shard="s1")
    store.put_score("k1", "sscd", "disc_mixup_onnx", [0.1, 0.9])
    store.put_scores([{"key": "k1", "metric": "sscd", "backend": "disc_large", "value": [0.2, 0.8]},
                      {"key": "k2", "metric": "clip", "backend": "ViT-g-14", "value": 0.31}])
    store.put_score("k2", "clip", "ViT-g-14", 0.32)  # a re-score replaces the older value
    store.close()
    again = RunStore(tmp_path)
    assert again.scores(metric="sscd", backend="disc_large") == {("k1", "sscd", "disc_large"): [0.2, 0.8]}
    assert again.scores(metric="clip") == {("k2", "clip", "ViT-g-14"): 0.32}
    assert again.has_score("k1", "sscd", "disc_mixup_onnx") and not again.has_score("k1", "clip", "ViT-g-14")
    with pytest.raises(ValueError, match="lacks"):
        again.put_scores([{"key": "k1", "metric": "m"}])
    rows = [json.loads(line) for line in (tmp_path / "scores" / "s1.jsonl").read_text().splitlines()]
    assert len(rows) == 4


def test_refuses_foreign_store_format(tmp_path):
    (tmp_path / "STORE.json").write_text(json.dumps({"format": "something-else", "version": 9}))
    with pytest.raises(StoreError, match="STORE.json"):
        RunStore(tmp_path)
    os.remove(tmp_path / "STORE.json")
    RunStore(tmp_path)
    assert json.loads((tmp_path / "STORE.json").read_text())["format"] == "membench-run-store"
