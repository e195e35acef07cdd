"""A user's suite file, end to end: a copy of the mini model, a subset of its prompts, a local
reference folder; ``pytest --membench mitigations/rna.py --membench-suite that.toml`` gives the
built-in mini suite's per-prompt numbers for those prompts (on a fresh store: regenerated, rescored).
The one number that may differ is ``top1_any`` (the max over every reference of the SUITE), since
this suite holds fewer references: it can only be lower. Values agree to 1e-6, not bit for bit: the SSCD similarities are one
float32 matrix product of the images against ALL of a suite's references, and the BLAS kernel
rounds the last bit differently with the number of references (measured: <= 6e-8 on 7% of them).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from membench_eval import paths

pytest_plugins = ("pytester",)
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RNA = REPO / "mitigations" / "rna.py"
MINI = paths.MINI_DIR
TRIGGERS = (1, 2)  # of the built-in run's first three: a subset that is not a prefix
GENERAL = (1,)


def _plugin() -> list[str]:
    import importlib.metadata

    installed = any(e.value == "membench_eval.pytest_plugin" for e in importlib.metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "membench_eval.pytest_plugin"]


def _write_suite(folder: Path) -> Path:
    (folder / "model").symlink_to(MINI / "model", target_is_directory=True)  # a "copy" of the model
    (folder / "refs").mkdir()
    with open(MINI / "trigger_prompts.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    with open(folder / "prompts.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["", "prompt", "urls"])
        for i in TRIGGERS:
            name = rows[i][2].removeprefix("mini://")
            shutil.copy(MINI / "references" / name, folder / "refs" / name)
            w.writerow([f"t{i:03d}", rows[i][1], str([name])])
    general = [t.strip() for t in (MINI / "general_prompts.txt").read_text().splitlines() if t.strip()]
    (folder / "general.jsonl").write_text("".join(json.dumps({"id": f"g{i:03d}", "prompt": general[i]}) + "\n"
                                                  for i in GENERAL))
    toml = folder / "my_suite.toml"
    toml.write_text(f"""name = "my-mini"
[model]
path = "model"
[trigger]
file = "prompts.csv"
references = "refs"
id_prefix = "mini"
[general]
file = "general.jsonl"
id_prefix = "mini"
[generation]
height = 64
width = 64
num_inference_steps = 20
guidance_scale = 7.5
[scoring]
sscd_backend = "disc_mixup_onnx"
clip_model = "mini-clip"
clip_pretrained = "{MINI / 'clip' / 'open_clip_model.safetensors'}"
allow_missing_quality_weights = true
""")
    return toml


def _per_prompt(board: dict) -> dict[tuple[str, str], dict]:
    return {(r["label"], r["prompt_id"]): r for r in board["per_prompt"] if r["method"] != "reference"}


def test_suite_file_gives_the_builtin_numbers(pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory,
                                              monkeypatch: pytest.MonkeyPatch, shared_mini_store: Path) -> None:
    monkeypatch.setenv("MEMBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    toml = _write_suite(tmp_path_factory.mktemp("suite"))
    common = [*_plugin(), "-p", "no:cacheprovider", "--membench", str(RNA), "--membench-param", "n=6"]
    # The built-in run reads and writes the session's shared mini store (base and RNA n=6 at the
    # suite's settings: the mini CLIP trade-off test makes these images too, under the same keys);
    # the suite file's run below starts from an empty store, so it regenerates and rescores. (Only
    # base and RNA: the shared store's other configs are not this run's rows.)
    built_store, built_out = shared_mini_store, tmp_path_factory.mktemp("lb-mini")
    r1 = pytester.runpytest_subprocess(*common, "--membench-suite", "mini", "--membench-limit", "3",
                                       "--membench-store", str(built_store), "--membench-out", str(built_out),
                                       "--membench-no-stored-baselines")
    assert r1.ret == 0, r1.stdout.str()
    file_store, file_out = tmp_path_factory.mktemp("store-file"), tmp_path_factory.mktemp("lb-file")
    r2 = pytester.runpytest_subprocess(*common, "--membench-suite", str(toml),
                                       "--membench-store", str(file_store), "--membench-out", str(file_out))
    assert r2.ret == 0, r2.stdout.str()
    r2.stdout.fnmatch_lines(["*membench: * images generated, 0 reused from the store*",
                             "*membench leaderboard (my-mini)*"])
    built = json.loads((built_out / "mini.limit-3.json").read_text())
    mine = json.loads((file_out / "my-mini.json").read_text())
    assert mine["metadata"]["suite"] == "my-mini" and mine["metadata"]["suite_file"] == str(toml.resolve())
    assert len(mine["metadata"]["suite_sha256"]) == 64 and "suite_sha256" not in built["metadata"]
    ref, got = _per_prompt(built), _per_prompt(mine)
    wanted = {f"mini-t{i:03d}" for i in TRIGGERS} | {f"mini-g{i:03d}" for i in GENERAL}
    assert {pid for _, pid in got} == wanted and {label for label, _ in got} == {"base", "rna n=6"}
    for key, row in got.items():
        assert row["n_images"] == ref[key]["n_images"] and set(row["metrics"]) == set(ref[key]["metrics"])
        for metric, value in row["metrics"].items():
            if metric == "top1_any":  # the max over the SUITE's references: this suite holds fewer
                assert value <= ref[key]["metrics"][metric] + 1e-6, key
            else:
                assert value == pytest.approx(ref[key]["metrics"][metric], abs=1e-6), (key, metric)
    assert any(row["metrics"]["top1_sscd"] > 0.5 for (label, pid), row in got.items()
               if label == "base" and pid.startswith("mini-t"))  # the mini model really memorizes

    # Images are content-addressed: the suite file's images are the built-in's, under the same keys.
    from membench_eval.store.run_store import RunStore

    keys = {r["key"] for r in RunStore(file_store, shard="reader").records()}
    assert len(keys) == 2 * (10 * len(TRIGGERS) + len(GENERAL))
    assert keys <= {r["key"] for r in RunStore(built_store, shard="reader").records()}

    # `membench run --suite FILE.toml` on the suite's store: the same numbers, all reused.
    out3 = tmp_path_factory.mktemp("lb-run")
    done = subprocess.run([sys.executable, "-m", "membench_eval.cli", "run", str(RNA), "--suite", str(toml),
                           "--param", "n=6", "--store", str(file_store), "--out", str(out3), "--no-progress"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads((out3 / "my-mini.json").read_text())["per_prompt"] == mine["per_prompt"]

    # `membench report --suite FILE.toml` rebuilds that leaderboard, and refuses once the file changed.
    from membench_eval.cli import main

    assert main(["report", "--out", str(out3), "--suite", str(toml), "--store", str(file_store)]) == 0
    assert (out3 / "my-mini.html").is_file()
    toml.write_text(toml.read_text() + "# edited\n")
    assert main(["report", "--out", str(out3), "--suite", str(toml), "--store", str(file_store)]) == 2
