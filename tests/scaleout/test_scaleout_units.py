"""Work units of the Ray engine (``scaleout.units``), checked without Ray or a model: they are the
serial run's pipeline calls, pickle, rebuild the driver's methods, and the core never imports ray."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from membench_eval.errors import MembenchError
from membench_eval.evaluation import EvalOptions, Evaluation
from membench_eval.generation.seeding import plan_requests
from membench_eval.scaleout.units import (generation_units, load_method, method_refs, ray_device, score_slices,
                                          unit_requests)

REPO = Path(__file__).resolve().parents[2]
RNA, WEN = REPO / "mitigations" / "rna.py", REPO / "mitigations" / "wen.py"


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory):
    ev = Evaluation(EvalOptions(suite="mini", limit=3, store_dir=str(tmp_path_factory.mktemp("store")),
                                stored_baselines=False, batch_size=4))
    return ev, ev.plan([str(RNA), str(WEN)])


def test_units_are_the_serial_pipeline_calls(planned):
    ev, plan = planned
    s = ev.settings
    refs = method_refs(plan)
    assert [r.label for r in refs] == [m.label for m in plan.methods if m.mitigation is not None]
    units = generation_units(plan, s)
    assert [u["unit"] for u in units] == list(range(len(units)))
    for index, ref in enumerate(refs):
        by_prompt = ref.name == "wen"
        for role, prompts in plan.prompts.items():
            mine = [u for u in units if u["method"] == index and u["role"] == role]
            requests = [r for u in mine for r in unit_requests(u)]
            assert requests == plan_requests(prompts, s.images_per_prompt(role), s.seed)  # serial order, all once
            n = s.images_per_prompt(role)
            if by_prompt:  # a prompt's images never split over two calls
                assert all(len({r.prompt_id for r in unit_requests(u)}) * n == len(u["seed"]) for u in mine)
            else:  # full calls of batch_size, the last one short
                assert [len(u["seed"]) for u in mine[:-1]] == [s.batch_size] * (len(mine) - 1)
                assert 0 < len(mine[-1]["seed"]) <= s.batch_size


def test_units_and_refs_pickle_and_reload(planned):
    ev, plan = planned
    refs = method_refs(plan)
    units = generation_units(plan, ev.settings)
    assert pickle.loads(pickle.dumps(units)) == units
    assert pickle.loads(pickle.dumps(ev.options)) == ev.options
    for ref in pickle.loads(pickle.dumps(refs)):
        spec = load_method(ref)
        original = next(m for m in plan.methods if m.label == ref.label)
        assert (spec.label, spec.kind, spec.params) == (original.label, original.kind, original.params)
        assert spec.mitigation.label() == ref.label and type(spec.mitigation).__name__ == type(original.mitigation).__name__


def test_reload_refuses_other_code(planned, tmp_path: Path):
    _, plan = planned
    ref = next(r for r in method_refs(plan) if r.path == str(RNA.resolve()))
    edited = tmp_path / "rna.py"
    edited.write_text(RNA.read_text() + "\n# edited on this node\n")
    with pytest.raises(MembenchError, match="is not the driver's"):
        load_method(type(ref)(**{**ref.__dict__, "path": str(edited)}))
    with pytest.raises(MembenchError, match="not found on host"):
        load_method(type(ref)(**{**ref.__dict__, "path": str(tmp_path / "missing.py")}))


def test_score_slices_follow_the_units():
    rows = [{"unit": 1, "keys": ["c"], "texts": ["t"]}, {"unit": 0, "keys": ["a", "b"], "texts": ["t", "u"]}]
    assert score_slices(rows) == [{"slice": 0, "keys": ["a", "b"], "texts": ["t", "u"]},
                                  {"slice": 1, "keys": ["c"], "texts": ["t"]}]


def test_ray_device_rule():
    assert [ray_device(d, 2) for d in (None, "auto", "cuda", "cpu")] == ["cuda", "cuda", "cuda", "cpu"]
    assert [ray_device(d, 0) for d in (None, "auto", "cpu")] == ["cpu", "cpu", "cpu"]
    with pytest.raises(MembenchError, match="no GPU"):
        ray_device("cuda", 0)
    with pytest.raises(MembenchError, match="assigns one GPU"):
        ray_device("cuda:1", 4)


def test_engine_option_checked():
    with pytest.raises(MembenchError, match="unknown engine"):
        EvalOptions(engine="spark")
    with pytest.raises(MembenchError, match="actors must be >= 1"):
        EvalOptions(engine="ray", ray_actors=0)


def test_core_never_imports_ray_and_missing_ray_is_a_clear_error():
    code = ("import sys\n"
            "sys.modules['ray'] = None  # as if not installed\n"
            "import membench_eval.cli, membench_eval.pytest_plugin, membench_eval.evaluation\n"
            "import membench_eval.scaleout.ray_engine as r\n"
            "from membench_eval.errors import MembenchError\n"
            "try:\n    r.import_ray()\nexcept MembenchError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert 'pip install -e ".[ray]"' in done.stdout


def test_actor_errors_come_back_as_the_same_error():
    """Ray keeps only the text of an exception raised in a Dataset's actor: the engine ships a
    MembenchError as data and raises it on the driver with its class, details and exit status."""
    import numpy as np

    from membench_eval.errors import DataError, MitigationError, StoreError
    from membench_eval.scaleout.units import each_row, raise_errors

    def work(row):
        if row["x"] == 1:
            raise MitigationError("method 'broken', rewrite_prompt: raised ValueError", details="Traceback: user frame")
        return {"x": int(row["x"]), "keys": ["k"]}

    out = each_row({"x": np.array([0, 1])}, work, {"x": 0, "keys": [""]})
    assert out["x"] == [0, 0] and out["keys"] == [["k"], [""]] and out["error"][0] == ""
    rows = [dict(zip(out, values)) for values in zip(*out.values())]
    with pytest.raises(MitigationError, match="rewrite_prompt") as got:
        raise_errors(rows)
    assert got.value.details == "Traceback: user frame"
    for exc, cls, code in ((StoreError("store/x: damaged"), StoreError, 3), (DataError("f.csv", "bad row"), MembenchError, 2)):
        def fails(row, exc=exc):
            raise exc
        row = {k: v[0] for k, v in each_row({"x": np.array([0])}, fails, {}).items()}
        with pytest.raises(cls) as got:
            raise_errors([row])
        assert got.value.exit_code == code and str(exc) in str(got.value)
    raise_errors(rows[:1])  # no error: nothing raised
