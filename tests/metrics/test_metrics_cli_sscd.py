"""``membench sscd A B`` prints just the similarity."""

from __future__ import annotations

import pytest

from membench_eval.cli import main


def test_prints_the_similarity_of_the_memorized_pair(memorized_pair, capsys):
    assert main(["sscd", str(memorized_pair[0]), str(memorized_pair[1]), "--backend", "disc_mixup_onnx"]) == 0
    out = capsys.readouterr()
    value = float(out.out.strip())
    assert out.out.strip().count("\n") == 0
    assert value >= 0.85
    assert "disc_mixup_onnx" in out.err


def test_missing_image_is_a_one_line_error(memorized_pair, tmp_path, capsys):
    rc = main(["sscd", str(memorized_pair[0]), str(tmp_path / "nope.png"), "--backend", "disc_mixup_onnx"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "nope.png" in err and err.count("\n") == 1


def test_weights_without_backend_is_refused(memorized_pair, tmp_path, capsys):
    rc = main(["sscd", str(memorized_pair[0]), str(memorized_pair[1]), "--weights", str(tmp_path / "w.pt")])
    assert rc == 2
    assert "--backend" in capsys.readouterr().err
