"""Gate parsing and checking on a hand-made leaderboard."""

from __future__ import annotations

import pytest

from membench_eval.evaluation.gates import GateSpecError, check_gates, gates_from_pyproject, parse_gate, parse_gates
from membench_eval.report import PromptResult, build_leaderboard


def _board():
    results = []
    for label, top1, clip in (("base", 0.6, 0.30), ("m", 0.25, 0.285)):
        for i in range(6):
            results.append(PromptResult(label, label, "trigger", f"p{i}", 4,
                                        {"top1_sscd": top1 + 0.01 * i, "clip": clip + 0.001 * i, "aesthetic": None},
                                        memorized_ids=(f"img{i // 2}",)))
    return build_leaderboard(results, suite="t", kinds={"base": "base", "m": "method"}, n_resamples=300,
                             unavailable={"aesthetic": "no aesthetic weights"})


def test_parse_forms() -> None:
    assert parse_gate("top1_sscd <= 0.3").threshold == 0.3
    g = parse_gate("clip >= base - 0.01")
    assert g.relative_to_base and g.threshold == pytest.approx(-0.01) and g.op == ">="
    assert parse_gate("clip>base").threshold == 0.0
    assert len(parse_gates(["top1_sscd <= 0.3; clip >= base - 0.01", "sscd_gt_05 < .1"])) == 3


@pytest.mark.parametrize("bad", ["top1 <= 0.3", "top1_sscd == 0.3", "top1_sscd <= basis", "clip >= base * 2"])
def test_bad_gates_are_clear_errors(bad: str) -> None:
    with pytest.raises(GateSpecError, match="gate"):
        parse_gate(bad)


def test_gate_pass_and_fail_messages_give_numbers_and_intervals() -> None:
    board = _board()
    res = check_gates(parse_gates(["top1_sscd <= 0.3", "clip >= base - 0.01", "top1_sscd < 0.2"]), board, ["m"])["m"]
    assert [r.passed for r in res] == [True, False, False]
    msg = res[1].message
    assert "FAILED" in msg and "clip = 0.2875 [95% CI" in msg and "base - 0.01 = 0.2925" in msg
    assert "paired difference to base -0.0150" in msg
    assert "top1_sscd = 0.2750 [95% CI" in res[2].message


def test_gate_on_unavailable_metric_fails() -> None:
    res = check_gates([parse_gate("aesthetic >= 5")], _board(), ["m"])["m"][0]
    assert not res.passed and "not available (no aesthetic weights)" in res.message


def test_gates_from_pyproject(tmp_path) -> None:
    p = tmp_path / "pyproject.toml"
    p.write_text('[tool.membench]\ngate = ["top1_sscd <= 0.3", "clip >= base - 0.01"]\n')
    assert gates_from_pyproject(p) == ["top1_sscd <= 0.3", "clip >= base - 0.01"]
    p.write_text('[tool.membench]\ngate = 3\n')
    with pytest.raises(GateSpecError, match="tool.membench.gate"):
        gates_from_pyproject(p)
    assert gates_from_pyproject(tmp_path / "absent.toml") == []
