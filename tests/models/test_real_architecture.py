"""Real-architecture smoke tests: SD 1.4's true sizes (random weights) through the harness, on CPU.

Why: every other test runs a 64x64 model with a 32-wide text encoder, so nothing else executes the
77x768 text embeddings, the 320-1280-channel UNet with its 8-head attention, a backward pass through
the 860M-parameter UNet, ViT-g-14 / ViT-L-14 scoring or the disc_large SSCD input path. Shape,
dtype and memory faults hide exactly there.

Two tests, each running its heavy part in a subprocess (``python tests/models/test_real_architecture.py
sd14|scorers OUT_DIR [DATA_DIR]``) so that its peak RSS is that of the real-size work alone and the
memory is returned when it exits (and one xdist worker never holds both); the assertions run here,
on what the subprocess stored (the run store, a JSON of measurements):

- ``sd14``: ``membench_eval.models.sd14.build_sd14_pipeline`` through ``generation.engine.generate``
  into a ``RunStore`` for every ``mitigations/*.py`` (base included; globbed, so a new file is run
  and its images checked; its cost is checked once ``expected_unet_evals`` knows it).
- ``scorers``: ClipScorer on open_clip ViT-g-14 and ViT-L-14 with random weights, AestheticScorer
  with the real LAION head (shared data) on ViT-L-14, and the disc_large SSCD path
  (``TorchScriptSSCD``) on a traced random-weight ResNet-50 with disc_large's 1024-d output.

Reductions, all deliberate: 128x128 pixels (16x16 latents; the pipeline's native size is set to it,
so NeMo's detection and wen_gated's gate probe at it too), 2 DDIM steps, 1 image of 1 prompt (the
UNet still sees 2 rows: [uncond, cond]; batch accounting is tested on the tiny model), one
torch thread. Generation in bf16 where the CPU has native bf16 (the dtype of the CUDA path; ~2.5x
faster than fp32 here), else fp32; scoring in fp32 (the CPU scoring path). Optimisation loops are
capped through the methods' own ClassVars (``CAPS``); NeMo / wen_gated read small prompt files
instead of 5000 COCO / 500 Webster prompts, SAIL runs at threshold 0 and the initial-noise adjustment
once (``adj_iters=1``, [2]) (``extra_params``).

Where random weights leave a method's branch idle, the test makes it run rather than skip it: AMG's
similarity gate is lowered (``CAPS``: the in-memory pipeline passes its model check, and the mini
suite's references and offline SSCD are the oracle); NeMo flags nothing, so a second run seeds its
per-prompt memo with a flagged decision to run its neuron-blocking processor (detection is the real
one in the main run). wen_gated's gate does not flag the prompt: its images must then be base's,
bit for bit (Wen's optimisation itself is the ``wen`` run). A spy around each method's
cross-attention processor records the attention it ran on (Ren: every attn2, 8 heads, 77 keys).
Images are checked finite by the engine before they are stored (a NaN raises ``MitigationError``).

Run: ``OMP_NUM_THREADS=1 python -m pytest -q tests/models/test_real_architecture.py -s`` prints the time
(wall and CPU) per method and part, and each subprocess's peak RSS.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

# One large model at a time: the same group as test_real_architecture_transformers.py (SD3, FLUX).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("large_models")]

REPO = Path(__file__).resolve().parents[2]
MITIGATIONS_DIR = REPO / "mitigations"
METHOD_FILES = sorted(MITIGATIONS_DIR.glob("*.py"))

SIZE, STEPS, IMAGES, GUIDANCE = 128, 2, 1, 7.5
PROMPT = "The No Limits Business Woman Podcast"  # memorized by SD 1.4 (Webster's sd1_mem345.txt)
# Small non-memorized prompt sets (NeMo's activation statistics, wen_gated's calibration).
GENERAL_PROMPTS = ["a cup of coffee on a wooden table", "a cat sleeping on a sofa", "a mountain lake at sunrise"]
# Test-size caps of the methods' own ClassVars (the default of each in brackets): optimisation loops
# that would run up to 10 (Wen, PRSS) or 30 x 10 (SAIL) backward passes through the UNet, each ~3 s
# here, take one. AMG's similarity gate lambda_t = a + b exp(-c t) is set to fire at the first step
# (t=501: -0.84) and never at the last (t=1: 0.99), so G_dup and G_sim (a backward pass through the
# full VAE decoder) run once per image instead of never: random weights are not similar to the mini
# references it guides away from; G_dup then stays on for that step only.
CAPS: dict[str, dict[str, Any]] = {
    "wen": {"MAX_ITERATIONS": 1},  # [10]
    "wen_gated": {"MAX_ITERATIONS": 1},  # [10]
    "prss": {"MAX_ITERATIONS": 1},  # [10]
    "sail": {"MAX_STEPS": 1, "MAX_ROUNDS": 1},  # [10, 30]
    "anisotropy_embed": {"MAX_ITERATIONS": 1},  # [10]
    "amg": {"LAMBDA": (-1.0, 2.0, 0.005), "DUP_STEPS": 1},  # [(0.3, 0.1, 0.005), 10]
}
# Peak host memory allowed per subprocess: this machine has 24 GiB, shared with another test worker.
MAX_RSS_GIB = 16.0


def extra_params(name: str, work: Path) -> list[str]:
    """``--param`` items beyond ``strongest``: small prompt files where a method reads thousands;
    SAIL's threshold at 0, because at random weights every raw x_T passes its strongest 7.4 (loss
    ~3.6) and its Adam step, the backward pass through the UNet, would never run; Wen's l at 1 for
    the same reason (this image's first-step guidance norm is 1.97, below the strongest l=2)."""
    prompts = work / "general_prompts.txt"
    prompts.write_text("\n".join(GENERAL_PROMPTS) + "\n")
    return {"nemo": [f"stats_prompts={prompts}"], "wen_gated": [f"calibration={prompts}"],
            "amg": ["suite=mini"], "sail": ["threshold=0"], "init_noise": ["adj_iters=1"], "wen": ["l=1"]}.get(name, [])


# --- what each method must cost and do (its docstring's accounting, for 2 steps x 1 image) ---------


def expected_unet_evals(name: str, rec: dict[str, Any], batch: list[dict[str, Any]]) -> float | None:
    """UNet rows per image as the method's docstring counts them; None for a method not listed
    (a new file: it is still run and checked for sane images, only its cost is not known here)."""
    plain = 2 * STEPS  # CFG: [uncond, cond] rows at every step
    n = len(batch)
    if name in ("base", "rna", "rta", "gni", "cfg_schedule", "ren"):
        return plain  # "no extra UNet evaluations"
    if name == "wen":  # eps_uncond once + one forward per iteration and one for the returned embedding
        return plain + 1 + rec["wen_iterations"] + 1
    if name == "wen_gated":  # the gate: 1 uncond + 1 prompt row per call; then Wen's on flagged rows
        return plain + 2 / n + (1 + rec["wen_iterations"] + 1 if rec["gate_flagged"] else 0)
    if name == "prss":  # detection [uncond; orig]; SS per triggered image; PR: +1 per step once any is triggered
        triggered = [r for r in batch if r["prss_triggered"]]
        ss = sum(r["prss_ss_iterations"] + 1 for r in triggered) / n
        return plain + 2 + ss + (STEPS if triggered else 0)
    if name == "sail":  # the batch runs until its slowest row is done
        return plain + max(r["sail_unet_rows"] for r in batch)
    if name == "nemo":  # detection + search once per prompt text, paid by the batch, per image
        return plain + rec["nemo_search_unet_rows"] / n
    if name == "amg":  # one y_N row per image and G_dup step (y_N is never this prompt here)
        return plain + sum(r["amg_steps_dup"] for r in batch) / n
    return None


def acted(name: str, batch: list[dict[str, Any]]) -> bool | None:
    """Whether the method changed anything for this batch (so its pixels must differ from base);
    False means they must equal base's exactly; None: not known (a new method)."""
    if name == "base":
        return False
    if name in ("rna", "rta", "gni", "cfg_schedule", "ren"):
        return True  # unconditional edits (cfg_schedule: t=501 > 500 runs unguided)
    if name == "wen":
        return True  # asserted separately: at least one AdamW step was taken
    if name == "wen_gated":
        return any(r["gate_flagged"] for r in batch)
    if name == "prss":
        return any(r["prss_triggered"] for r in batch)
    if name == "sail":  # a capped round returns its lowest-loss latent: the raw x_T if no step helped
        return any(r["sail_final_loss"] != r["sail_initial_loss"] for r in batch)
    if name == "nemo":
        return any(r["nemo_neurons"] > 0 for r in batch)
    if name == "amg":
        return any(r["amg_steps_spe"] > 0 for r in batch)
    return None


# --- subprocess plumbing -------------------------------------------------------------------------


def run_part(part: str, out: Path, *args: str, timeout: float = 1500) -> dict[str, Any]:
    """Run ``part`` in a fresh interpreter (one thread, a private cache) and return its JSON."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MEMBENCH_CACHE_DIR": str(out / "cache"),
           "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, part, str(out), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)
    if proc.returncode != 0 or not (out / "result.json").is_file():
        pytest.fail(f"{part} worker failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    result = json.loads((out / "result.json").read_text())
    result["wall_s"] = time.perf_counter() - started
    return result


def peak_rss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _report(title: str, rows: list[str]) -> None:
    print(f"\n[real-architecture] {title}")
    for row in rows:
        print(f"  {row}")


# --- test 1: SD 1.4 through the engine, every method ---------------------------------------------


def test_sd14_every_method_through_the_engine(tmp_path, subtests):
    import numpy as np

    from membench_eval.store.run_store import RunStore

    result = run_part("sd14", tmp_path)
    store = RunStore(tmp_path / "store")
    arch = result["architecture"]
    runs = {**result["methods"], **result["variants"]}
    _report("sd14", [f"dtype {arch['dtype']}, build {result['build_s']:.1f} s, worker {result['wall_s']:.1f} s wall / "
                     f"{result['cpu_s']:.1f} s CPU, peak RSS {result['peak_rss_gib']:.2f} GiB"]
            + [f"{m}: {r['seconds']:.1f} s wall / {r['cpu_s']:.1f} s CPU, unet_evals/image {r.get('unet_evals')}, "
               f"{r.get('summary', r.get('error', '')[-300:])}" for m, r in runs.items()])

    with subtests.test("architecture"):
        assert arch["params_m"]["unet"] == pytest.approx(859.52, abs=0.01)
        assert arch["params_m"]["vae"] == pytest.approx(83.65, abs=0.01)
        assert arch["params_m"]["text_encoder"] == pytest.approx(123.06, abs=0.01)
        assert arch["prompt_embeds"] == [1, 77, 768]
        assert arch["attn2_heads"] == [8] and arch["attn2_layers"] == 16
        assert arch["attn2_widths"] == [320, 640, 1280]
    with subtests.test("peak RSS"):
        assert result["peak_rss_gib"] < MAX_RSS_GIB

    def rows_of(name: str) -> list[dict[str, Any]]:
        run = result["methods"][name]
        if "error" in run:
            pytest.fail(f"{name} failed at full size:\n{run['error']}")
        return [store.record(k) for k in run["keys"]]

    def pixels(name: str) -> np.ndarray:
        return np.stack([np.asarray(store.get_image(k), dtype=np.int16) for k in result["methods"][name]["keys"]])

    base = pixels("base") if "error" not in result["methods"].get("base", {"error": 1}) else None
    for path in METHOD_FILES:
        name = path.stem
        with subtests.test(method=name):
            rows = rows_of(name)
            assert len(rows) == IMAGES and [r["method"] for r in rows] == [rows[0]["method"]] * IMAGES
            images = pixels(name)
            assert images.shape == (IMAGES, SIZE, SIZE, 3)
            assert all(im.std() > 0 for im in images), f"{name}: a constant image"
            records = [r["records"] for r in rows]
            for rec in records:
                want = expected_unet_evals(name, rec, records)
                assert math.isfinite(rec["unet_evals"]) and rec["unet_evals"] > 0
                if want is not None:
                    assert rec["unet_evals"] == pytest.approx(want), f"{name}: records {rec}"
            change = acted(name, records)
            if base is not None and change is not None and name != "base":
                diff = np.abs(images - base).max(axis=(1, 2, 3))
                if change:
                    assert (diff > 0).all(), f"{name} acted but left an image as base's: {records}"
                else:
                    assert (diff == 0).all(), f"{name} did nothing but changed the pixels: {records}"

    with subtests.test("wen: AdamW steps through the full UNet"):
        records = [r["records"] for r in rows_of("wen")]
        assert all(r["wen_iterations"] >= 1 for r in records), records
        assert all(r["wen_final_loss"] != r["wen_initial_loss"] for r in records), records
    with subtests.test("ren: its processor on the real 8-head cross-attention"):
        rows_of("ren")
        calls = result["methods"]["ren"]["processor_calls"]
        assert calls["count"] == 16 * STEPS  # every attn2 layer at every step
        assert calls["heads"] == [8] and calls["key_tokens"] == [77]
        assert calls["rows"] == [2 * IMAGES] and calls["widths"] == [320, 640, 1280]
    with subtests.test("amg: G_spe, G_dup and G_sim ran at full size"):
        records = [r["records"] for r in rows_of("amg")]
        assert all(r["amg_steps_spe"] >= 1 and r["amg_steps_dup"] >= 1 and r["amg_steps_sim"] == 1 for r in records), records
    with subtests.test("sail: an Adam step through the full UNet"):
        records = [r["records"] for r in rows_of("sail")]
        assert all(r["sail_steps"] == 1 and r["sail_unet_rows"] == 8 for r in records), records
    with subtests.test("nemo: its blocking processor at full width"):
        run = result["variants"]["nemo_blocking"]
        assert "error" not in run, run.get("error")
        variants = RunStore(tmp_path / "store_variants")
        records = [variants.record(k)["records"] for k in run["keys"]]
        layers = 7  # SD 1.x: down_blocks 0-2 x 2 attentions + mid
        assert all(r["nemo_neurons"] == 3 * layers and r["unet_evals"] == 2 * STEPS for r in records), records
        calls = run["processor_calls"]
        assert calls["count"] == 16 * STEPS and calls["widths"] == [320, 640, 1280] and calls["rows"] == [2 * IMAGES]
        blocked = np.stack([np.asarray(variants.get_image(k), dtype=np.int16) for k in run["keys"]])
        assert base is not None and (np.abs(blocked - base).max(axis=(1, 2, 3)) > 0).all()


# --- test 2: the scorers at their real input sizes ------------------------------------------------


def test_scorers_at_real_sizes(tmp_path, subtests, shared_data_dir):
    result = run_part("scorers", tmp_path, str(shared_data_dir))
    _report("scorers", [f"worker {result['wall_s']:.1f} s wall / {result['cpu_s']:.1f} s CPU, "
                        f"peak RSS {result['peak_rss_gib']:.2f} GiB"]
            + [f"{k}: {json.dumps(v)}" for k, v in result["parts"].items()])
    parts = result["parts"]
    for name, dim in (("ViT-g-14", 1024), ("ViT-L-14", 768)):
        with subtests.test(clip=name):
            part = parts[name]
            assert "error" not in part, part.get("error")
            assert part["input_shape"][1:] == [3, 224, 224] and part["preprocess_shape"] == [3, 224, 224]
            assert part["embed_dim"] == dim and all(abs(n - 1) < 1e-4 for n in part["image_norms"])
            assert all(math.isfinite(s) and -1 <= s <= 1 for s in part["clip_scores"])
            assert part["clip_scores"] == pytest.approx(part["manual_scores"], abs=1e-4)
    with subtests.test("aesthetic head on ViT-L-14"):
        part = parts["aesthetic"]
        assert "error" not in part, part.get("error")
        assert part["input_shape"][1:] == [3, 224, 224]
        assert all(math.isfinite(s) and abs(s) < 100 for s in part["scores"])
        assert part["scores"] == pytest.approx(part["manual_scores"], abs=1e-4)
    with subtests.test("disc_large SSCD input path"):
        part = parts["sscd"]
        assert "error" not in part, part.get("error")
        assert part["input_shape"][1:] == [3, 288, 288] and part["input_dtype"] == "torch.float32"
        assert part["dim"] == 1024 and all(abs(n - 1) < 1e-5 for n in part["norms"])
        assert part["input_mean_std"] == pytest.approx(part["expected_mean_std"], abs=1e-5)
        assert part["max_abs_vs_manual"] < 1e-5
    with subtests.test("peak RSS"):
        assert result["peak_rss_gib"] < MAX_RSS_GIB


# ==================================================================================================
# Workers (run in a subprocess by the tests above).
# ==================================================================================================


def _generation_dtype() -> Any:
    import torch

    native = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)()
    return torch.bfloat16 if native else torch.float32


class _ProcessorSpy:
    """Wraps a method's cross-attention processor; records what attention it ran on."""

    def __init__(self, inner: Any, seen: dict[str, Any]):
        self.inner, self.seen = inner, seen

    def __call__(self, attn: Any, hidden_states: Any, encoder_hidden_states: Any = None, *args: Any, **kwargs: Any) -> Any:
        s = self.seen
        s["count"] += 1
        s["heads"].add(int(attn.heads))
        s["widths"].add(int(attn.to_q.out_features))
        if encoder_hidden_states is not None:
            s["rows"].add(int(encoder_hidden_states.shape[0]))
            s["key_tokens"].add(int(encoder_hidden_states.shape[1]))
        return self.inner(attn, hidden_states, encoder_hidden_states, *args, **kwargs)


def _spy_processor(method: Any) -> dict[str, Any]:
    seen: dict[str, Any] = {"count": 0, "heads": set(), "widths": set(), "rows": set(), "key_tokens": set()}
    if method.overrides("cross_attention_processor"):
        original = method.cross_attention_processor

        def spying(pipe: Any, ctx: Any) -> Any:
            proc = original(pipe, ctx)
            return None if proc is None else _ProcessorSpy(proc, seen)

        object.__setattr__(method, "cross_attention_processor", spying)
    return seen


def _run_method(pipe: Any, path: Path, store: Any, out: Path, before: Any = None) -> dict[str, Any]:
    """Load ``path`` as the harness does (``strongest`` + ``extra_params``), apply ``CAPS``, call
    ``before(method)`` if given, and generate the test's requests into ``store``."""
    from membench_eval.generation.engine import generate
    from membench_eval.generation.seeding import plan_requests
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.plugins.mitigations import find_class, load_mitigations
    from membench_eval.suites.types import Prompt

    name = path.stem
    t, cpu = time.perf_counter(), time.process_time()
    try:
        cls = find_class(path)
        items = (["strongest"] if getattr(cls, "strongest", None) else []) + extra_params(name, out)
        (method,) = load_mitigations(path, param_items=items)
        for attr, value in CAPS.get(name, {}).items():
            if not hasattr(type(method), attr):
                raise AttributeError(f"{name}: CAPS names {attr}, which {type(method).__name__} lacks")
            setattr(type(method), attr, value)  # the class of this load only (a fresh module per load)
        if before is not None:
            before(method)
        seen = _spy_processor(method)
        settings = GenerationSettings(num_inference_steps=STEPS, guidance_scale=GUIDANCE, height=SIZE, width=SIZE,
                                      batch_size=IMAGES)
        requests = plan_requests([Prompt("p0", PROMPT)], IMAGES, run_seed=0)
        report = generate(pipe, requests, method, settings, store, progress=False)
        rec = store.record(report.keys[0])["records"]
        run = {
            "keys": report.keys, "seconds": time.perf_counter() - t, "cpu_s": time.process_time() - cpu,
            "params": method.params(),
            "unet_evals": rec.get("unet_evals"), "summary": {k: v for k, v in rec.items() if k != "unet_evals"},
            "processor_calls": {k: sorted(v) if isinstance(v, set) else v for k, v in seen.items()},
        }
    except Exception:  # noqa: BLE001 - reported per method by the test
        import traceback

        run = {"error": traceback.format_exc(), "seconds": time.perf_counter() - t, "cpu_s": time.process_time() - cpu}
    print(f"{name}: {run['seconds']:.1f} s", file=sys.stderr, flush=True)
    return run


def _seed_nemo_decision(method: Any, pipe: Any) -> None:
    """NeMo blocks nothing at random weights (no seed pair is similar enough to flag), so its
    blocking processor would never run at full size; this seeds its memo with a flagged decision
    (neurons 0-2 of every down/mid attn2 layer) so generation runs it. Detection and search are
    the real ones in the main run."""
    from membench_eval.generation.batch import cached_setup

    state = cached_setup(pipe, method)
    decision = type(method).decide.__globals__["Decision"]
    state.decisions[(method.threshold, method.criterion, PROMPT)] = decision(
        score=1.0, flagged=True, neurons=[[0, 1, 2] for _ in state.layers])


def _sd14_worker(out: Path) -> dict[str, Any]:
    import torch

    from membench_eval.models.sd14 import build_sd14_pipeline
    from membench_eval.store.run_store import RunStore

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    pipe = build_sd14_pipeline(_generation_dtype(), image_size=SIZE)
    build_s = time.perf_counter() - t0
    attn2 = [m for n, m in pipe.unet.named_modules() if n.endswith("attn2")]
    with torch.no_grad():
        embeds = pipe.encode_prompt([PROMPT], torch.device("cpu"), 1, False)[0]
    arch = {
        "dtype": str(pipe.unet.dtype), "prompt_embeds": list(embeds.shape), "attn2_layers": len(attn2),
        "attn2_heads": sorted({int(a.heads) for a in attn2}), "attn2_widths": sorted({a.to_q.out_features for a in attn2}),
        "params_m": {c: round(sum(p.numel() for p in getattr(pipe, c).parameters()) / 1e6, 2)
                     for c in ("unet", "vae", "text_encoder")},
    }
    store = RunStore(out / "store")
    methods = {path.stem: _run_method(pipe, path, store, out) for path in METHOD_FILES}

    # Same key as the main NeMo run (the seeded memo is not a parameter): its own store.
    variants = {"nemo_blocking": _run_method(pipe, MITIGATIONS_DIR / "nemo.py", RunStore(out / "store_variants"), out,
                                             before=lambda m: _seed_nemo_decision(m, pipe))}
    return {"build_s": build_s, "architecture": arch, "methods": methods, "variants": variants}


def _fill_open_clip(model: Any, seed: int = 0) -> Any:
    """Materialise a meta-device open_clip model with cheap random weights: a seeded uniform tile
    copied in (drawing 1.4e9 random numbers for ViT-g-14 takes ~10 s on one thread), scaled by
    1/sqrt(fan_in); norms 1/0, biases 0, CLIP's logit scale; the text tower's causal mask rebuilt
    (any other buffer is an error: left as to_empty's garbage it gave NaN text embeddings). The
    forward pass is the real one."""
    import torch

    tile = torch.rand((1 << 22) + 15, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    model.to_empty(device="cpu")
    offset = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            if isinstance(owner, torch.nn.LayerNorm) or leaf.endswith("bias"):
                p.fill_(1.0 if leaf == "weight" else 0.0)
                continue
            if leaf == "logit_scale":
                p.fill_(math.log(1 / 0.07))
                continue
            flat, done = p.view(-1), 0
            while done < flat.numel():
                start = offset % tile.numel()
                n = min(flat.numel() - done, tile.numel() - start)
                flat[done : done + n].copy_(tile[start : start + n])
                done, offset = done + n, offset + n
            if p.dim() < 2 or "embedding" in leaf or isinstance(owner, torch.nn.Embedding):
                p.mul_(0.02)  # embeddings and the class token
            elif leaf in ("proj", "text_projection"):  # used as x @ proj: fan_in is dim 0
                p.mul_(1 / math.sqrt(p.shape[0]))
            else:
                p.mul_(1 / math.sqrt(p.shape[1] * math.prod(p.shape[2:])))
        for name, buf in list(model.named_buffers()):  # to_empty left them uninitialised
            owner_name, _, leaf = name.rpartition(".")
            if leaf != "attn_mask":
                raise RuntimeError(f"_fill_open_clip: no rule to fill buffer {name} {tuple(buf.shape)}")
            owner = model.get_submodule(owner_name) if owner_name else model
            owner.register_buffer(leaf, torch.full(buf.shape, float("-inf")).triu_(1), persistent=False)  # causal
    return model.eval()


def _io_spy(module: Any) -> list[tuple[list[int], Any]]:
    """(input shape, output) of every forward of ``module``."""
    calls: list[tuple[list[int], Any]] = []
    module.register_forward_hook(lambda m, args, output: calls.append((list(args[0].shape), output.detach().float())))
    return calls


def _test_images(data: Path) -> list[Any]:
    """A real photograph (the shared data's memorized image) and a 128x128 noise image."""
    import numpy as np
    from PIL import Image

    photo = Image.open(data / "images" / "memorized_origin.png").convert("RGB")
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
    return [photo, noise]


def _clip_part(name: str, images: list[Any], prompts: list[str], head: Path | None) -> dict[str, Any]:
    """ClipScorer (and AestheticScorer with ``head``) on a random-weight open_clip ``name``: one
    image-tower forward per scorer (ViT-g-14: ~15 s per image on one thread)."""
    import numpy as np
    import open_clip
    import torch

    from membench_eval.metrics.aesthetic import AestheticScorer
    from membench_eval.metrics.clip_score import ClipScorer

    t = time.perf_counter()
    with torch.device("meta"):
        model = open_clip.create_model(name, pretrained=None, device="meta")
    model = _fill_open_clip(model)
    preprocess = open_clip.image_transform(model.visual.image_size, is_train=False)
    build_s = time.perf_counter() - t
    visual = _io_spy(model.visual)
    t = time.perf_counter()
    scorer = ClipScorer.from_open_clip(model, preprocess, open_clip.get_tokenizer(name), name=name, batch_size=len(images))
    scores = scorer.score(images, prompts)
    (shape, feats), = visual
    image_emb = torch.nn.functional.normalize(feats, dim=-1).numpy()
    text_emb = scorer.embed_texts(prompts)
    out: dict[str, Any] = {
        "build_s": build_s, "score_s": time.perf_counter() - t, "input_shape": shape,
        "preprocess_shape": list(preprocess(images[0]).shape), "embed_dim": int(image_emb.shape[1]),
        "image_norms": np.linalg.norm(image_emb, axis=1).tolist(), "clip_scores": scores.tolist(),
        "manual_scores": (image_emb * text_emb).sum(axis=1).tolist(),
    }
    if head is not None:
        t = time.perf_counter()
        visual.clear()
        aesthetic = AestheticScorer.from_open_clip(model, preprocess, head=head, name=name, batch_size=len(images))
        got = aesthetic.score(images)
        (shape, feats), = visual
        with torch.inference_mode():
            manual = aesthetic.head(torch.nn.functional.normalize(feats, dim=-1))[:, 0].numpy()
        out["aesthetic"] = {"seconds": time.perf_counter() - t, "input_shape": shape, "scores": got.tolist(),
                            "manual_scores": manual.tolist()}
    return out


def _sscd_part(out: Path, images: list[Any]) -> dict[str, Any]:
    """disc_large's contract (TorchScriptSSCD): 288x288 PIL bilinear resize, ToTensor + ImageNet
    mean/std, fp32 NCHW in, 1024-d out. The stand-in: a torchvision ResNet-50 (random weights) with
    GeM pooling (p = 3, as SSCD) and a 1024-d head, traced and saved like Meta's TorchScript file."""
    import numpy as np
    import torch
    import torchvision

    from membench_eval.metrics.preprocessing import imagenet_normalize, sscd_batch
    from membench_eval.metrics.sscd import load_sscd

    class GeM(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.clamp(min=1e-6).pow(3).mean(dim=(2, 3), keepdim=True).pow(1 / 3)

    t = time.perf_counter()
    torch.manual_seed(0)
    net = torchvision.models.resnet50(weights=None)
    net.avgpool, net.fc = GeM(), torch.nn.Linear(2048, 1024)
    net.eval()
    path = out / "sscd_disc_large_standin.torchscript.pt"
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(net, torch.zeros(1, 3, 288, 288)), str(path))
    sscd = load_sscd("disc_large", weights=path, device="cpu")
    inputs: list[Any] = []
    traced = sscd.model

    class Spy(torch.nn.Module):  # what TorchScriptSSCD feeds the model
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            inputs.append(x.detach().clone())
            return traced(x)

    sscd.model = Spy()
    emb = sscd.embed(images, batch_size=2)
    x = inputs[-1]
    pixels = sscd_batch(images)
    manual = imagenet_normalize(pixels, torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        ref = traced(manual).numpy()
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    mean = np.array([0.485, 0.456, 0.406])[None, :, None, None]
    std = np.array([0.229, 0.224, 0.225])[None, :, None, None]
    expected = (pixels.transpose(0, 3, 1, 2) / 255.0 - mean) / std
    path.unlink()  # ~100 MB, loaded already
    return {
        "seconds": time.perf_counter() - t, "dim": int(emb.shape[1]), "norms": np.linalg.norm(emb, axis=1).tolist(),
        "input_shape": list(x.shape), "input_dtype": str(x.dtype),
        "input_mean_std": [float(x.mean()), float(x.std())],
        "expected_mean_std": [float(expected.mean()), float(expected.std(ddof=1))],
        "max_abs_vs_manual": float(np.abs(emb - ref).max()),
    }


def _scorers_worker(out: Path, data: str) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    images = _test_images(Path(data))
    prompts = [PROMPT, "a field of random coloured noise"]
    head = Path(data) / "membench" / "sac+logos+ava1-l14-linearMSE.pth"  # as tests/metrics/test_metrics_clip_aesthetic.py
    parts: dict[str, Any] = {}
    for name, run in (
        ("sscd", lambda: _sscd_part(out, images)),
        ("ViT-L-14", lambda: _clip_part("ViT-L-14", images, prompts, head)),
        ("ViT-g-14", lambda: _clip_part("ViT-g-14", images[:1], prompts[:1], None)),
    ):
        try:
            parts[name] = run()
        except Exception:  # noqa: BLE001 - reported per part by the test
            import traceback

            parts[name] = {"error": traceback.format_exc()}
        print(f"{name}: done", file=sys.stderr, flush=True)
    if "aesthetic" in parts.get("ViT-L-14", {}):
        parts["aesthetic"] = parts["ViT-L-14"].pop("aesthetic")
    else:
        parts["aesthetic"] = {"error": "ViT-L-14 part failed: " + parts["ViT-L-14"].get("error", "?")}
    return {"parts": parts}


def _main(argv: list[str]) -> int:
    part, out = argv[0], Path(argv[1])
    worker = {"sd14": _sd14_worker, "scorers": _scorers_worker}[part]
    cpu = time.process_time()
    result = worker(out, *argv[2:])
    result["cpu_s"] = time.process_time() - cpu
    result["peak_rss_gib"] = peak_rss_gib()
    (out / "result.json").write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
