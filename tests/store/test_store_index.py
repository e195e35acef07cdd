"""The run store's SQLite index (issue 34): derived from the JSONL log, rebuilt when missing or when
the log was rewritten, ingesting appended lines incrementally; verification recorded by stat
identity; per-prompt aggregates cached by content, and a cached rerun's leaderboard byte-identical
to a fresh one's (also after the index is deleted, as a store written before the index is read)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from membench_eval.store import index_db
from membench_eval.store.run_store import RunStore


def _image(value: int) -> Image.Image:
    arr = np.full((8, 8, 3), value, dtype=np.uint8)
    arr[0, 0] = (1, 2, 3)
    return Image.fromarray(arr)


def _drop_index(store: RunStore) -> None:
    store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store.index_file}{suffix}").unlink(missing_ok=True)


def _age(path: Path, seconds: float = 60) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))


def test_index_lives_beside_a_local_store_and_is_rebuilt_from_the_log(tmp_path: Path) -> None:
    with RunStore(tmp_path, shard="w") as store:
        keys = [f"{i:064x}" for i in range(3)]
        for i, k in enumerate(keys):
            store.put_image(k, _image(i), {"prompt_id": f"p{i}", "seed": i})
            store.put_score(k, "clip_score", "b", 0.1 * i)
        index_file = store.index_file
    assert index_file.parent == tmp_path / "index" and index_file.is_file()
    before = RunStore(tmp_path)
    rows, scores = before.records(), before.scores()
    _drop_index(before)
    again = RunStore(tmp_path)
    assert again.records() == rows and again.scores() == scores and len(again) == 3
    assert again.find_records("p1", 1) == [rows[1]] and again.has(keys[2])


def test_appended_lines_are_ingested_incrementally_and_a_rewrite_rebuilds(tmp_path: Path) -> None:
    reader = RunStore(tmp_path, shard="r")
    writer_dir = tmp_path / "other-host"
    os.environ[index_db_env()] = str(writer_dir)  # the writer indexes elsewhere: the reader sees only the log
    try:
        writer = RunStore(tmp_path, shard="w")
    finally:
        del os.environ[index_db_env()]
    writer.put_image("aa" * 32, _image(1), {"n": 1})
    assert not reader.has("aa" * 32)
    reader.refresh()
    assert reader.has("aa" * 32)
    offset = reader.query("SELECT offset FROM shards WHERE path LIKE '%records/w.jsonl'")[0][0]
    writer.put_image("bb" * 32, _image(2), {"n": 2})
    reader.refresh()  # only the new line is read: the offset moves by its length
    shard = tmp_path / "records" / "w.jsonl"
    assert reader.query("SELECT offset FROM shards WHERE path LIKE '%records/w.jsonl'")[0][0] == shard.stat().st_size
    assert shard.stat().st_size > offset and len(reader) == 2
    lines = shard.read_text().splitlines()
    shard.write_text(lines[1] + "\n")  # rewritten (as prune does): the first image is gone
    reader.refresh()
    assert [r["key"] for r in reader.records()] == ["bb" * 32]


def index_db_env() -> str:
    from membench_eval.store.index_location import INDEX_DIR_ENV

    return INDEX_DIR_ENV


def test_a_verified_png_is_not_read_again_until_its_stat_changes(tmp_path: Path, monkeypatch) -> None:
    key = "cd" * 32
    with RunStore(tmp_path) as store:
        store.put_image(key, _image(5), {})
    path = RunStore(tmp_path).image_path(key)
    _age(path)  # older than RACY_NS: its verification is recorded
    assert RunStore(tmp_path).has(key)
    reads: list[Path] = []
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or real(self))
    assert RunStore(tmp_path).has(key) and reads == []  # another process: the recorded check holds
    data = bytearray(real(path))
    data[-20] ^= 0x01  # same size, same inode, new mtime
    path.write_bytes(bytes(data))
    _age(path, 30)
    store = RunStore(tmp_path)
    assert not store.has(key) and reads == [path]  # re-read, caught, quarantined
    assert any("damaged" in p for p in store.problems)


def test_a_fresh_png_is_not_recorded_as_verified(tmp_path: Path) -> None:
    """A same-size rewrite within the file system's clock tick could keep the mtime: a PNG
    modified in the last RACY_NS is hashed on every check."""
    with RunStore(tmp_path) as store:
        store.put_image("ef" * 32, _image(9), {})
        assert store.has("ef" * 32)
        assert store.query("SELECT COUNT(*) FROM verified") == [(0,)]


# --- a cached rerun through the evaluation: byte-identical leaderboards ------------------------------


class _FakeSSCD:
    """A deterministic stand-in for SSCD: the mean colour and a few pixel statistics, normalised."""

    fingerprint = "fake-sscd"
    dim = 4

    def embed(self, images: list[Any], **_: Any) -> np.ndarray:
        out = []
        for im in images:
            im = im if isinstance(im, Image.Image) else Image.open(im)
            a = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
            v = np.array([a[..., 0].mean(), a[..., 1].mean(), a[..., 2].mean(), a.std() + 0.1])
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32)


@pytest.fixture(scope="module")
def tiny_parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import torch

    from membench_eval.models.tiny import build_random_tiny_pipeline
    from membench_eval.suites.types import MemorizedImage, Prompt, PromptSet, Suite

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("refs")
    rng = np.random.default_rng(0)
    memorized = {}
    for rid in ("mA", "mB"):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / f"{rid}.png")
        memorized[rid] = MemorizedImage(rid, str(root / f"{rid}.png"))
    trigger = PromptSet("trigger", (Prompt("t0", "a red car", ("mA",)), Prompt("t1", "a blue boat", ("mA", "mB"))), 2)
    general = PromptSet("general", (Prompt("g0", "a green field"),), 1)
    suite = Suite("mini", "tiny-random-in-memory", trigger, general, memorized, reference_dir=root,
                  generation_defaults={"height": 16, "width": 16, "num_inference_steps": 1},
                  sscd_backend="disc_mixup_onnx", allow_missing_quality_weights=True)
    return {"suite": suite, "pipe": build_random_tiny_pipeline(seed=0, sample_size=16)}


def _board_json(parts: dict[str, Any], store: Path, out: Path) -> tuple[str, dict[str, int]]:
    from membench_eval.evaluation import EvalOptions, Evaluation

    ev = Evaluation(EvalOptions(store_dir=str(store), out_dir=str(out), device="cpu", bootstrap_resamples=50,
                                batch_size=2), suite=parts["suite"])
    ev.models.put("pipeline", parts["pipe"])
    ev.models.put("sscd", _FakeSSCD())
    ev.quality_scorers = {"clip": None, "aesthetic": None, "clip_reason": "off", "aesthetic_reason": "off"}
    plan = ev.plan([], [])
    board = ev.leaderboard(plan, ev.evaluate_plan(plan))
    from membench_eval.report.output import to_json

    text = json.dumps(to_json(board), sort_keys=True)
    ev.store.close()
    return text, dict(ev.counts)


def test_cached_rerun_and_rebuilt_index_give_the_same_leaderboard(tiny_parts: dict[str, Any], tmp_path: Path) -> None:
    store = tmp_path / "store"
    fresh, counts = _board_json(tiny_parts, store, tmp_path / "a")
    assert counts["generated"] == 5 and counts["scored"] == 5
    cached, counts = _board_json(tiny_parts, store, tmp_path / "b")
    assert counts == {"generated": 0, "reused": 5, "scored": 0, "scores_reused": 5}
    assert cached == fresh
    with RunStore(store) as s:
        assert s.query("SELECT COUNT(*) FROM aggregates") == [(3,)]  # one row per prompt
        _drop_index(s)  # as a store written before the index existed: only the log
    rebuilt, counts = _board_json(tiny_parts, store, tmp_path / "c")
    assert counts == {"generated": 0, "reused": 5, "scored": 0, "scores_reused": 5}
    assert rebuilt == fresh


def test_a_regenerated_image_is_aggregated_again(tiny_parts: dict[str, Any], tmp_path: Path) -> None:
    store = tmp_path / "store"
    fresh, _ = _board_json(tiny_parts, store, tmp_path / "a")
    with RunStore(store) as s:
        key = next(r["key"] for r in s.records() if r["prompt_id"] == "t1")
        s.image_path(key).write_bytes(b"damaged")
    again, counts = _board_json(tiny_parts, store, tmp_path / "b")
    assert counts["generated"] == 1 and counts["scored"] == 1  # its prompt missed the cache
    assert again == fresh  # deterministic pixels: the same numbers


def test_batch_image_keys_equal_one_by_one_keys() -> None:
    from membench_eval.store.keys import image_key, image_keys

    shared = {"class": "DDIM", "config": {"betas": [0.1, 2.5, (3, 4)], 7: "int key", "flag": True}}
    fields = [{"scheduler": shared, "params": {"n": i, "t": (1, 2)}, "seed": i, "prompt": f"é {i}"} for i in range(5)]
    assert image_keys(fields) == [image_key(f) for f in fields]
    with pytest.raises(ValueError, match="non-finite"):
        image_keys([{"scheduler": shared, "g": float("nan")}])


def test_template_keys_equal_full_keys_for_awkward_prompts() -> None:
    from membench_eval.generation.request_keys import keys_and_fields, template_keys
    from membench_eval.store.keys import image_key

    common = {"scheme": "s", "scheduler": {"config": {"b": [1.5, 2]}}, "params": {"n": 3}, "width": 16}
    per_image = [("p0", 'a "quoted" prompt\\', 1), ("p\u00e91", "caf\u00e9 \x01membench seed\x01 \n", 2**40),
                 ("p2", "\\u0001membench prompt\\u0001", 0)]
    full = [{**common, "prompt_id": pid, "prompt": text, "seed": seed} for pid, text, seed in per_image]
    assert template_keys(common, per_image) == [image_key(f) for f in full]
    # A shared field holding a marker cannot be split safely: the full path is taken, same keys.
    odd = {**common, "note": "\x01membench prompt\x01"}
    assert template_keys(odd, per_image) is None
    keys, fields = keys_and_fields(lambda i: {**odd, **dict(zip(("prompt_id", "prompt", "seed"), per_image[i]))},
                                   per_image)
    assert keys == [image_key({**odd, "prompt_id": p, "prompt": t, "seed": s}) for p, t, s in per_image]
    assert fields[1]["seed"] == 2**40 and len(fields) == 3
