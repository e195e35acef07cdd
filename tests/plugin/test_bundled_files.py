"""Bundled plugin files: found inside an installed package or in the checkout, named without a path,
and fingerprinted the same wherever they sit (the fingerprint enters every image's store key)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from membench_eval import bundle, paths
from membench_eval.errors import DetectorError, MitigationError
from membench_eval.plugins import loader
from membench_eval.plugins.mitigations import load_mitigations
from membench_eval.plugins.source import fingerprint_file

REPO = Path(__file__).resolve().parents[2]


def test_a_bundled_method_is_named_without_a_path() -> None:
    assert loader.resolve_file("rna") == bundle.folder("mitigations") / "rna.py"
    assert [m.label() for m in load_mitigations("rna", None, ["n=6"])] == ["rna n=6"]
    assert loader.resolve_file("wen_single", loader.DETECTOR).name == "wen_single.py"


def test_a_near_miss_of_a_bundled_name_suggests_it() -> None:
    with pytest.raises(MitigationError, match=r"unknown method 'rnaa'.*bundled: .*rna.*did you mean 'rna'\?"):
        loader.resolve_file("rnaa")
    with pytest.raises(DetectorError, match="unknown detector 'rna'"):
        loader.resolve_file("rna", loader.DETECTOR)


def test_a_path_is_taken_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's own file wins, also one whose stem is a bundled name."""
    own = tmp_path / "mitigations" / "rna.py"
    own.parent.mkdir()
    own.write_text("from membench_eval.mitigation import Mitigation\n\n\nclass Mine(Mitigation):\n"
                   "    name = 'mine'\n\n    def rewrite_prompt(self, prompt, rng):\n        return prompt\n")
    monkeypatch.chdir(tmp_path)
    assert loader.resolve_file("mitigations/rna.py") == Path("mitigations/rna.py")
    assert [m.label() for m in load_mitigations("mitigations/rna.py")] == ["mine"]
    with pytest.raises(MitigationError, match="file not found"):
        load_mitigations("mitigations/missing.py")


def test_the_installed_copy_is_preferred_to_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert bundle.folder("mitigations") == REPO / "mitigations"  # this checkout has no _bundled/
    (tmp_path / "_bundled" / "mitigations").mkdir(parents=True)
    monkeypatch.setattr(bundle.resources, "files", lambda package: tmp_path)
    assert bundle.folder("mitigations") == tmp_path / "_bundled" / "mitigations"
    assert bundle.folder("detectors") == REPO / "detectors"  # not installed: the checkout's
    with pytest.raises(ValueError, match="not a bundled folder"):
        bundle.folder("leaderboard")


def test_paths_point_at_the_bundled_benchmark_data() -> None:
    """paths.py is hashed into nemo's and wen_gated's store keys, so it is re-pointed, never edited."""
    assert paths.BENCHMARK_DATA == bundle.folder("benchmark_data") and paths.MINI_DIR == paths.BENCHMARK_DATA / "mini"
    assert (paths.MINI_DIR / "model" / "model_index.json").is_file()


def test_fingerprints_do_not_depend_on_where_the_files_are_installed(tmp_path: Path) -> None:
    """The wheel carries mitigations/ as membench_eval/_bundled/mitigations/: same store keys."""
    installed = tmp_path / "site-packages" / "membench_eval" / "_bundled" / "mitigations"
    shutil.copytree(REPO / "mitigations", installed)
    for source in sorted((REPO / "mitigations").glob("*.py")):
        assert fingerprint_file(installed / source.name).sha256 == fingerprint_file(source).sha256, source.name
