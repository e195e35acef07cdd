"""The faster paths of a cached rerun at scale (issue 34) give what the plain ones gave: the
leaderboard JSON file is ``to_json`` of its board, a score row kept compressed in the index reads as
the text an older index kept, and a prompt's cache key is the sha256 of its fields' canonical JSON."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

from PIL import Image

from membench_eval.evaluation.prompt_cache import CACHE_SCHEME, cache_key, metric_definition
from membench_eval.report import to_json, write_leaderboard
from membench_eval.store import index_db
from membench_eval.store.run_store import RunStore
from membench_eval.store.keys import canonical_json
from tests.report.test_report_synthetic import synthetic_run


def test_the_json_file_is_to_json_with_one_line_per_prompt(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path)
    board = run.board()
    _, path = write_leaderboard(board, tmp_path / "out")
    text = path.read_text()
    written = json.loads(text)
    assert written == json.loads(json.dumps(to_json(board), default=str))
    assert written["memorization"]["roles"]["trigger"], "the band section made it into the file"
    lines = text.splitlines()
    start = lines.index(' "per_prompt": [')
    assert len(lines) - start - 3 == len(board.results)  # the list's lines, "]" and "}" after it
    assert json.loads(lines[start + 1].rstrip(",")) == board.results[0].to_dict()


def test_a_score_row_of_an_older_index_reads_as_a_compressed_one(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "s")
    key = "ab" * 32
    store.put_image(key, Image.new("RGB", (8, 8), (1, 2, 3)), {"prompt_id": "p"})
    store.put_scores([{"key": key, "metric": "sscd", "backend": "b", "value": {"m0": 0.25, "m1": 0.5}},
                      {"key": key, "metric": "clip_score", "backend": "c", "value": 0.3}])
    packed = store.query("SELECT row FROM scores WHERE metric = 'sscd'")[0][0]
    assert isinstance(packed, bytes) and json.loads(index_db.row_text(packed))["value"] == {"m0": 0.25, "m1": 0.5}
    with index_db.transaction(store._db) as db:  # as an index written before the rows were packed
        db.execute("UPDATE scores SET row = ? WHERE metric = 'sscd'", (index_db.row_text(packed),))
    assert store.get_score(key, "sscd", "b") == {"m0": 0.25, "m1": 0.5}
    assert store.get_scores([key, "cd" * 32], "sscd", "b") == {key: {"m0": 0.25, "m1": 0.5}}
    assert store.get_scores([key], "clip_score", "c") == {key: 0.3}
    assert store.record_values([key], "$.prompt_id") == {key: "p"}
    store.close()


def test_the_cache_key_is_the_sha256_of_the_canonical_fields() -> None:
    method = SimpleNamespace(name='ré"n')
    prompt = SimpleNamespace(prompt_id="t1", memorized_ids=("m2", "m1"))
    images = [("k1", "d1"), ("k0", "d0")]
    fields = {"scheme": CACHE_SCHEME, "definition": metric_definition(), "scorers": {"sscd": "x", "clip": "y"},
              "references": ["m0", "m1", "m2"], "run_seed": 7, "method": method.name, "role": "trigger",
              "prompt_id": "t1", "memorized_ids": ["m2", "m1"], "images": [["k1", "d1"], ["k0", "d0"]]}
    want = hashlib.sha256(canonical_json(fields).encode()).hexdigest()
    assert cache_key(scorers={"sscd": "x", "clip": "y"}, reference_ids={"m2", "m0", "m1"}, run_seed=7,
                     method=method, role="trigger", prompt=prompt, images=images) == want
