"""``membench store verify`` and ``prune`` know the detector-score area (``detections/``): a damaged
row is reported (exit 3), the rows of an edited or removed detector file are deleted, the others kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from membench_eval.generation.settings import GenerationSettings
from membench_eval.suites.types import Prompt

DETECTOR = '''
from membench_eval.detector import Detector


class Words(Detector):
    """Words in the prompt (a text-only detector for the store tests)."""
    name = "words"
    needs_model = False

    def score(self, pipe, ctx):
        return [float(len(p.split())) for p in ctx.prompts]
'''
PROMPTS = [Prompt("p0", "a cup of coffee"), Prompt("p1", "an astronaut on the moon at night")]


def _score(store_dir: Path, detector_file: Path) -> int:
    from membench_eval.detection.run import score_prompts
    from membench_eval.plugins.detectors import load_detector
    from membench_eval.store.detections import DetectionStore

    with DetectionStore(store_dir) as store:
        return score_prompts(load_detector(detector_file), PROMPTS, GenerationSettings(), store).new


def _membench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "membench_eval.cli", *args], capture_output=True, text=True)


def test_verify_reports_a_damaged_detection_row(tmp_path: Path):
    store, det = tmp_path / "store", tmp_path / "words.py"
    det.write_text(DETECTOR)
    assert _score(store, det) == 2
    ok = _membench("store", "verify", str(store))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "2 detector score(s) checked, 0 damaged" in ok.stdout
    shard = next((store / "detections").glob("*.jsonl"))
    rows = [json.loads(line) for line in shard.read_text().splitlines()]
    rows[0]["score"] = 99.0  # edited by hand: its checksum no longer matches
    shard.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bad = _membench("store", "verify", str(store))
    assert bad.returncode == 3
    assert "checksum mismatch" in bad.stdout and "1 detector score(s) checked, 1 damaged" in bad.stdout
    assert _score(store, det) == 1  # the damaged prompt is scored again, the other reused


def test_prune_removes_scores_of_an_edited_detector_only(tmp_path: Path):
    store, kept, edited = tmp_path / "store", tmp_path / "kept.py", tmp_path / "edited.py"
    kept.write_text(DETECTOR)
    edited.write_text(DETECTOR.replace('name = "words"', 'name = "words2"'))
    assert _score(store, kept) == 2 and _score(store, edited) == 2
    edited.write_text(edited.read_text() + "\n# edited\n")
    dry = _membench("store", "prune", "--dry-run", str(store))
    assert dry.returncode == 0 and "2 stale detector score(s), would remove 2 row(s)" in dry.stdout
    done = _membench("store", "prune", str(store))
    assert done.returncode == 0 and "removed 2 row(s)" in done.stdout
    assert _score(store, kept) == 0  # still stored
    assert _score(store, edited) == 2  # the edited detector scores anew
