"""The GPU path's plumbing, checked on CPU: the background sink, compute flags in keys,
counted FLOPs of SD 1.4, and bench/gpu_check.sh's dry mode (the one GPU script runs here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from membench_eval.generation.sink import BatchSink
from membench_eval.store.keys import image_key, key_fields

ROOT = Path(__file__).resolve().parents[2]


def test_sink_runs_jobs_in_order_off_the_calling_thread_and_drains_on_close() -> None:
    done, threads = [], set()

    def job(i: int) -> None:
        time.sleep(0.01)
        threads.add(threading.current_thread().name)
        done.append(i)

    sink = BatchSink(depth=2)
    for i in range(6):
        sink.submit(lambda i=i: job(i))
    sink.close()
    assert done == list(range(6)) and threads == {"membench-sink"}


def test_sink_error_reaches_the_caller_and_cleanup_still_runs() -> None:
    released = []
    sink = BatchSink(depth=1)
    sink.submit(lambda: (_ for _ in ()).throw(OSError("disk full")), always=lambda: released.append(1))
    with pytest.raises(OSError, match="disk full"):
        for _ in range(50):  # the error surfaces at a later submit (or at close)
            sink.submit(lambda: None, always=lambda: released.append(2))
            time.sleep(0.01)
    with pytest.raises(OSError, match="disk full"):
        sink.close()
    assert released and released[0] == 1 and set(released) <= {1, 2}  # every claim released, jobs dropped


def test_sink_context_drains_before_an_exception_propagates() -> None:
    stored = []
    with pytest.raises(KeyboardInterrupt):
        with BatchSink(depth=4) as sink:
            for i in range(3):
                sink.submit(lambda i=i: (time.sleep(0.02), stored.append(i)))
            raise KeyboardInterrupt
    assert stored == [0, 1, 2]  # nothing handed over is lost on Ctrl-C


def _fields(**extra):
    return key_fields(model="m", revision="r", scheduler={"class": "DDIMScheduler"}, method="base", params={},
                      method_source="s", engine="e", prompt_id="p", prompt="a cat", seed=1, num_inference_steps=50,
                      guidance_scale=7.5, height=512, width=512, batch_shape=10, device_type="cuda", dtype="bfloat16",
                      **extra)


def test_compute_flags_enter_the_key_only_when_set() -> None:
    plain = image_key(_fields())
    # The key scheme without compute flags is unchanged (stores made before stay valid).
    assert plain == "90db6ae05849c87cee8c7e815ba469d72434212be9887a5b37347af9856a297e"  # computed before the flags existed
    assert image_key(_fields(compute={})) == plain
    assert image_key(_fields(compute={"compiled": True})) != plain
    assert image_key(_fields(compute={"vae_slicing": True})) != image_key(_fields(compute={"compiled": True}))


def test_cpu_pipeline_flags_only_its_thread_count_and_compile_marks_the_key(monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    from membench_eval.generation.acceleration import fit_batch_size
    from membench_eval.models.cuda import compile_unet, compute_flags, prepare_for_cuda
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.models.tiny import build_random_tiny_pipeline

    pipe = build_random_tiny_pipeline(seed=0)
    prepare_for_cuda(pipe)  # a no-op on CPU: CPU pixels must not move
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert compute_flags(pipe) == {"cpu_threads": 2}  # CPU pixels depend on it
        torch.set_num_threads(1)
        assert compute_flags(pipe) == {}  # one thread: the keys stores were made with
    finally:
        torch.set_num_threads(threads)
    torch.set_num_threads(1)
    settings = GenerationSettings(batch_size=7, auto_batch_size=True)
    assert fit_batch_size(pipe, settings) == 7  # 'auto' keeps the fixed batch off CUDA
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)  # plumbing only: no inductor build here
    compile_unet(pipe)
    assert compute_flags(pipe) == {"compiled": True}
    pipe.unet.to(memory_format=torch.channels_last)
    assert compute_flags(pipe)["channels_last"] is True


def test_sd14_flops_per_image_are_counted_not_assumed() -> None:
    """SD 1.4 at 512x512, DDIM 50, CFG: counted on the meta device (no compute), the image costs
    the published 82.9 TFLOP (the MFU figures divide by this count)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "bench"))
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.models.sd14 import build_sd14_pipeline

    pipe = build_sd14_pipeline(device="meta")
    flops = gpu_check.flops_per_image(pipe, GenerationSettings())
    assert abs(flops / 82.9e12 - 1) < 0.01
    # Without CFG: one UNet row per step instead of two; the VAE decode (about 1.5%) stays.
    assert 0.5 < gpu_check.flops_per_image(pipe, GenerationSettings(guidance_scale=1.0)) / flops < 0.52


@pytest.mark.slow
def test_gpu_check_dry_mode_runs_every_section(tmp_path: Path) -> None:
    """bench/gpu_check.sh --dry: the GPU script's own code on CPU with tiny stand-ins; every
    section and every bundled mitigation runs without error and the JSON has the figures."""
    env = {**os.environ, "OUT": str(tmp_path), "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads((tmp_path / "gpu_check.json").read_text())
    assert out["harness"]["images"] == out["harness"]["scored"] == 4 and out["harness"]["images_per_s"] > 0
    assert out["reference_loop"]["images_per_s"] > 0 and out["speedup_vs_reference_loop"] > 0
    methods = {p.stem for p in (ROOT / "mitigations").glob("*.py")} - {"base"}
    assert set(out["mitigations"]) == methods
    assert all("error" not in v for v in out["mitigations"].values()), out["mitigations"]
    assert out["mitigations"]["wen"]["unet_evals_per_image"] > 2 * 2 * 2  # its optimisation ran
    assert out["scorers"]["sscd"]["images_per_s"] > 0 and out["flops_per_image"] > 0
