"""Loading a method from a file: class discovery, typed parameters, sweeps, clear errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from membench_eval.errors import MitigationError
from membench_eval.mitigation import Mitigation
from membench_eval.plugins.mitigations import load_mitigation, load_mitigations, parse_params

REPO = Path(__file__).resolve().parents[2]

METHOD = '''
from __future__ import annotations
from membench_eval import Mitigation
from membench_eval.mitigation import Mitigation as AlsoImported  # imported names never count


class Suffix(Mitigation):
    """Appends words."""
    name = "suffix"
    sweep = {"n": [1, 2, 3]}
    strongest = {"n": 3}
    n: int = 1
    scale: float = 1.0
    loud: bool = False
    word: str = "cat"
    cap: int | None = None

    def rewrite_prompt(self, prompt, rng):
        return prompt + (" " + self.word) * self.n
'''


def _write(tmp_path: Path, text: str, name: str = "method.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_loads_the_class_defined_in_the_file_with_typed_params(tmp_path):
    path = _write(tmp_path, METHOD)
    m = load_mitigation(path, params={"n": "6", "scale": "1.3", "loud": "true", "word": "dog", "cap": "none"})
    assert isinstance(m, Mitigation) and type(m).__name__ == "Suffix"
    assert m.params() == {"n": 6, "scale": 1.3, "loud": True, "word": "dog", "cap": None}
    assert m.label() == "suffix n=6 scale=1.3 loud=True word=dog cap=None"
    assert load_mitigation(path, params={"loud": "0", "scale": 2, "cap": "4"}).params()["loud"] is False
    assert load_mitigation(path, params={"scale": 2}).scale == 2.0 and isinstance(load_mitigation(path, params={"scale": 2}).scale, float)
    assert load_mitigation(path, name="suffix").n == 1 and load_mitigation(path, name="Suffix").n == 1


def test_parse_params_expands_sweeps():
    assert parse_params(None) == [{}]
    assert parse_params(["n=1,2,3", "c=1.3"]) == [{"n": "1", "c": "1.3"}, {"n": "2", "c": "1.3"}, {"n": "3", "c": "1.3"}]
    assert parse_params(["a=1,2", "b=x,y"]) == [{"a": "1", "b": "x"}, {"a": "1", "b": "y"}, {"a": "2", "b": "x"}, {"a": "2", "b": "y"}]
    for bad in (["n"], ["=3"], ["n=1,,2"], ["n=1", "n=2"]):
        with pytest.raises(MitigationError, match="--param"):
            parse_params(bad)


def test_load_mitigations_sweep_strongest_and_base(tmp_path):
    path = _write(tmp_path, METHOD)
    assert [m.n for m in load_mitigations(path, param_items=["n=1,2", "word=x"])] == [1, 2]
    assert [m.n for m in load_mitigations(path, param_items=["sweep"])] == [1, 2, 3]
    assert [(m.n, m.word) for m in load_mitigations(path, param_items=["strongest", "word=z"])] == [(3, "z")]
    (base,) = load_mitigations(None)
    assert base.name == "base" and base.params() == {}


@pytest.mark.parametrize(
    ("params", "pattern"),
    [
        ({"m": "1"}, r"method\.py: method 'suffix' has no parameter 'm' \(parameters: n: int, scale: float"),
        ({"n": "1.5"}, r"method\.py: parameter 'n' of method 'suffix': expected an int, got '1.5'"),
        ({"scale": "abc"}, r"parameter 'scale'.*expected a float"),
        ({"loud": "maybe"}, r"parameter 'loud'.*expected a bool \(true/false/1/0\)"),
        ({"n": True}, r"expected an int"),
    ],
)
def test_bad_parameters_are_named(tmp_path, params, pattern):
    with pytest.raises(MitigationError, match=pattern):
        load_mitigation(_write(tmp_path, METHOD), params=params)


def test_file_errors_name_the_file_and_list_classes(tmp_path):
    none = _write(tmp_path, "from membench_eval import Mitigation\nX = 1\n", "empty.py")
    with pytest.raises(MitigationError, match=r"empty\.py: defines no Mitigation subclass"):
        load_mitigation(none)
    two = _write(tmp_path, METHOD + "\n\nclass Other(Mitigation):\n    name = 'other'\n    baseline = True\n", "two.py")
    with pytest.raises(MitigationError, match=r"two\.py: defines several.*Suffix \(name 'suffix'\), Other \(name 'other'\)"):
        load_mitigation(two)
    assert load_mitigation(two, name="other").name == "other"
    with pytest.raises(MitigationError, match=r"two\.py: no single Mitigation named 'third'"):
        load_mitigation(two, name="third")
    broken = _write(tmp_path, "import does_not_exist_anywhere\n", "broken.py")
    with pytest.raises(MitigationError, match=r"broken\.py: importing the file failed: ModuleNotFoundError") as info:
        load_mitigation(broken)
    assert isinstance(info.value.__cause__, ImportError)
    with pytest.raises(MitigationError, match="not found"):
        load_mitigation(tmp_path / "missing.py")


def test_two_files_with_the_same_stem_do_not_clash(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = _write(tmp_path / "a", "from membench_eval import Mitigation\nclass A(Mitigation):\n    name = 'a'\n    baseline = True\n", "m.py")
    two = _write(tmp_path / "b", "from membench_eval import Mitigation\nclass B(Mitigation):\n    name = 'b'\n    baseline = True\n", "m.py")
    assert (load_mitigation(one).name, load_mitigation(two).name) == ("a", "b")


def test_repository_base_method_loads():
    m = load_mitigation(REPO / "mitigations" / "base.py")
    assert m.name == "base" and m.params() == {}
