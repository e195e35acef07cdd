"""A method is checked when it is loaded, before anything runs: a misspelt hook or no hook at all would
run as base (exit 0, delta 0.000); a parameter outside its declared bounds would run unnoticed."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from membench_eval.errors import DetectorError, MitigationError
from membench_eval.plugins.detectors import load_detectors
from membench_eval.plugins.mitigations import load_mitigations


def _method(tmp_path: Path, body: str, head: str = "") -> Path:
    path = tmp_path / "m.py"
    path.write_text("from membench_eval.mitigation import Mitigation\nfrom membench_eval.hyperparams import bounded\n"
                    + head + "\n\nclass M(Mitigation):\n    name = 'm'\n" + textwrap.indent(textwrap.dedent(body), "    "))
    return path


@pytest.mark.parametrize("typo, hook", [("rewrite_promt(self, prompt, rng)", "rewrite_prompt"),
                                        ("edit_embedding(self, pipe, e, n, latents, ctx)", "edit_embeddings"),
                                        ("guidence(self, pipe, step, t, x, eu, ec, ctx)", "guidance")])
def test_a_misspelt_hook_is_an_error_with_the_hook_it_meant(tmp_path: Path, typo: str, hook: str) -> None:
    path = _method(tmp_path, f"def {typo}:\n    return None\n")
    with pytest.raises(MitigationError, match=rf"m.py: method 'm' defines '{typo.split('(')[0]}', which is no hook; "
                                              rf"did you mean '{hook}'\?"):
        load_mitigations(path)


def test_helpers_with_other_names_stay_allowed(tmp_path: Path) -> None:
    path = _method(tmp_path, """
        def shorten(self, prompt):
            return prompt[:10]

        def setup_words(self):
            return []

        def rewrite_prompt(self, prompt, rng):
            return self.shorten(prompt)
    """)
    assert [m.label() for m in load_mitigations(path)] == ["m"]


def test_overriding_no_hook_is_an_error_unless_declared_a_baseline(tmp_path: Path) -> None:
    with pytest.raises(MitigationError, match="method 'm' overrides no hook .* would run as base; .*baseline = True"):
        load_mitigations(_method(tmp_path, "paper = 'none'\n"))
    assert [m.label() for m in load_mitigations(_method(tmp_path, "baseline = True\n"))] == ["m"]


def test_bounds_are_checked_before_anything_runs(tmp_path: Path) -> None:
    path = _method(tmp_path, """
        p: float = bounded(0.1, low=0.0, high=1.0)
        n: int = bounded(1, low=1)

        def rewrite_prompt(self, prompt, rng):
            return prompt
    """)
    assert [m.label() for m in load_mitigations(path, None, ["p=0,1"])] == ["m p=0.0 n=1", "m p=1.0 n=1"]
    with pytest.raises(MitigationError, match=r"parameter 'p' of method 'm' is 2.0, outside \[0.0, 1.0\]"):
        load_mitigations(path, None, ["p=0.5,2"])
    with pytest.raises(MitigationError, match=r"parameter 'n' of method 'm' is 0, outside \[1, inf\]"):
        load_mitigations(path, None, ["n=0"])
    bad_default = _method(tmp_path, "q: float = bounded(1.5, high=1.0)\nbaseline = True\n")
    with pytest.raises(MitigationError, match=r"parameter 'q' .* is 1.5, outside \[-inf, 1.0\]"):
        load_mitigations(bad_default)


def test_detectors_are_checked_against_their_own_hooks(tmp_path: Path) -> None:
    path = tmp_path / "d.py"
    path.write_text("from membench_eval.detector import Detector\n\n\nclass D(Detector):\n    name = 'd'\n\n"
                    "    def scroe(self, pipe, requests, ctx):\n        return [0.0]\n")
    with pytest.raises(DetectorError, match="detector 'd' defines 'scroe', which is no hook; did you mean 'score'"):
        load_detectors(path)
