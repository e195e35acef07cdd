"""The four baselines at their strongest paper setting on the miniature memorizing benchmark,
scored with the real SSCD ONNX model (sscd_disc_mixup, the mini suite's backend).

One module-scoped run generates the suite's trigger prompts (one trained caption per memorized
photo: 16 prompts, so 16 bootstrap clusters) x 5 images (the first 5 of the suite's 10: the same
seeds and keys) for base, RNA n=6, RTA n=6, Wen l=WEN_L, Ren c=1.3 and Ren c=1.0, and scores them;
the tests read that. Two Top-1 SSCD numbers per method: ``own`` against the prompt's own memorized
image (MemBench's metric) and ``any`` against every memorized image of the suite, because a method
that swaps one memorized copy for another has not helped. Effects are paired deltas to base with the
leaderboard's clustered bootstrap (same prompts, same resamples).

Measured on this machine (mini v2, run seed 0, 5 images a prompt; ``pytest -s`` prints the table again):

    method      Top-1 own  Top-1 any  paired delta own [95% CI]   paired delta any [95% CI]
    base        0.471      0.515
    rna n=6     0.355      0.541      -0.116 [-0.181, -0.058]     +0.025 [-0.047, +0.111]
    rta n=6     0.393      0.517      -0.077 [-0.137, -0.028]     +0.002 [-0.018, +0.024]
    wen l=2     0.190      0.381      -0.280 [-0.384, -0.182]     -0.134 [-0.232, -0.027]
    ren c=1.3   0.432      0.494      -0.039 [-0.059, -0.018]     -0.022 [-0.055, +0.012]
    ren c=1.0   0.445      0.493      -0.025 [-0.040, -0.010]     -0.023 [-0.043, -0.004]

(With all 10 images a prompt, before the CI budget halved them: base 0.549; deltas own RNA -0.131,
RTA -0.069, Wen -0.396, Ren c=1.3 -0.053, c=1.0 -0.039, every interval below zero as here.)

- All four lower MemBench's metric (own image) with an interval excluding zero; RTA now acts too
  (v1: -0.008), because the rows a random token id draws are full-size vectors (metrics.json).
- Only Wen lowers the best match to ANY memorized image with an interval excluding zero. RNA's and
  RTA's perturbed prompts make the mini model copy *another* of its 16 photos (half of every
  training batch was memorized photos, so copying is its prior): reported, not asserted away.
- Wen at l=2: the first-step joint norms on mini are 5.3-13.5 for trigger prompts (median 10.8)
  and 4.9-9.7 for general ones (median 5.6), so l=2 is below every general prompt's norm: every
  image reports the 10-step cap, as the method specifies; l ~ 5.6 is "as low as a general prompt".
- Ren: mini v2 puts 37-43% of the conditional cross-attention on BOS, so c=1.3 acts beyond the
  padding mask alone (c=1.0): c=1.3 vs c=1.0 paired delta -0.014 [-0.030, +0.002], per-prompt
  |difference| 0.022 on average (see the Ren test).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

pytestmark = pytest.mark.slow

MITIGATIONS = Path(__file__).resolve().parents[2] / "mitigations"
WEN_L = "2"  # the paper's strongest l; see the module docstring for what it means on mini
MIN_BOS_SHARE = 0.3
# Of the suite's 10 per trigger prompt: the first 5 (the same seeds and keys as the suite's first 5).
IMAGES_PER_PROMPT = 5
RUNS = {"base": ("base", {}), "rna": ("rna", {"n": "6"}), "rta": ("rta", {"n": "6"}), "wen": ("wen", {"l": WEN_L}),
        "ren": ("ren", {"c": "1.3"}), "ren c=1.0": ("ren", {"c": "1.0"})}


@dataclass
class MethodResult:
    label: str
    own: np.ndarray  # per prompt: max SSCD to the prompt's own memorized image
    anyone: np.ndarray  # per prompt: max SSCD to any memorized image of the suite
    records: list[dict] = field(default_factory=list)


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory, shared_mini_store):
    from membench_eval.generation.engine import generate
    from membench_eval.models.loading import load_pipeline
    from membench_eval.generation.seeding import plan_requests
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.metrics.sscd import load_sscd, reference_embeddings
    from membench_eval.mitigation import Mitigation
    from membench_eval.plugins.mitigations import load_mitigation
    from membench_eval.stats.bootstrap import ClusterBootstrap
    from membench_eval.store.run_store import RunStore
    from membench_eval.suites import get_suite
    from membench_eval.suites.references import reference_paths

    tmp = tmp_path_factory.mktemp("mini_mitigations")
    suite = get_suite("mini")
    pipe = load_pipeline(suite.model, device="cpu")
    settings = GenerationSettings.for_suite(suite)
    prompts = suite.trigger.prompts  # one trained caption per memorized photo
    requests = plan_requests(prompts, IMAGES_PER_PROMPT, settings.seed)
    sscd = load_sscd(suite.sscd_backend)
    paths, _ = reference_paths(suite)
    refs = reference_embeddings(sscd, paths, cache_dir=tmp / "cache")
    all_refs = np.stack([refs[i] for i in sorted(refs)])
    store = RunStore(shared_mini_store)  # base and RNA n=6 shared with tests/mini/test_mini_clip.py
    results: dict[str, MethodResult] = {}
    for key, (name, params) in RUNS.items():
        # Base as the evaluation runs it (the bare Mitigation: base.py's images, under the evaluation's
        # keys), so tests/mini/test_mini_clip.py reuses these images from the shared store.
        method = Mitigation() if name == "base" else load_mitigation(MITIGATIONS / f"{name}.py", params=params)
        report = generate(pipe, requests, method, settings, store, progress=False)
        emb = sscd.embed([store.get_image(k) for k in report.keys])
        own, anyone = [], []
        for p in prompts:
            rows = [i for i, r in enumerate(requests) if r.prompt_id == p.prompt_id]
            own.append(float((emb[rows] @ np.stack([refs[i] for i in p.memorized_ids]).T).max()))
            anyone.append(float((emb[rows] @ all_refs.T).max()))
        results[key] = MethodResult(method.label(), np.array(own), np.array(anyone),
                                    [store.record(k).get("records", {}) for k in report.keys])
    boot = ClusterBootstrap(list(range(len(prompts))))  # one prompt per photo: one cluster each
    deltas = {k: (boot.paired_delta(r.own, results["base"].own), boot.paired_delta(r.anyone, results["base"].anyone))
              for k, r in results.items()}
    print(f"\nmini: {len(prompts)} trigger prompts x {IMAGES_PER_PROMPT} images, Top-1 SSCD own / any, paired delta to base [95% CI]")
    for k, r in results.items():
        d_own, d_any = deltas[k]
        print(f"  {r.label:12s} own {r.own.mean():.3f} any {r.anyone.mean():.3f}  "
              f"delta own {d_own.mean:+.3f} [{d_own.low:+.3f}, {d_own.high:+.3f}]  "
              f"any {d_any.mean:+.3f} [{d_any.low:+.3f}, {d_any.high:+.3f}]")
    return results, deltas, boot


class BOSShareProcessor:
    """Default cross-attention that also records the attention mass on token 0 (BOS) in the
    conditional rows: how much a real CLIP-style attention sink Ren's rescale has to act on."""

    def __init__(self):
        self.mass = 0.0
        self.count = 0

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        from diffusers.models.attention_processor import AttnProcessor

        batch, _, _ = encoder_hidden_states.shape
        query = attn.head_to_batch_dim(attn.to_q(hidden_states if hidden_states.ndim == 3 else
                                                 hidden_states.flatten(2).transpose(1, 2)))
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        probs = attn.get_attention_scores(query, key, None).view(batch, attn.heads, -1, key.shape[1])
        cond = probs[batch // 2:]
        self.mass += cond[..., 0].sum().item()
        self.count += cond[..., 0].numel()
        return AttnProcessor()(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


def _report(run) -> str:
    results, deltas, _ = run
    return "; ".join(f"{r.label}: own {r.own.mean():.3f} (delta {deltas[k][0].mean:+.3f} [{deltas[k][0].low:+.3f}, "
                     f"{deltas[k][0].high:+.3f}])" for k, r in results.items())


@pytest.mark.parametrize("key", ["rna", "rta", "wen", "ren"])
def test_strongest_setting_lowers_top1_with_an_interval_excluding_zero(mini_run, key):
    """Each baseline's paired delta to base on MemBench's Top-1 (own image) is negative with its
    whole 95% interval below zero."""
    _, deltas, _ = mini_run
    assert deltas[key][0].high < 0, _report(mini_run)


def test_wen_lowers_the_match_to_any_memorized_image(mini_run):
    """Not by swapping one memorized copy for another (RNA and RTA do that on mini: see above)."""
    _, deltas, _ = mini_run
    assert deltas["wen"][1].high < 0, _report(mini_run)


def test_ren_bos_rescale_acts_beyond_the_padding_mask(mini_run):
    """c=1.0 keeps only Ren's padding mask; c=1.3 also rescales the BOS logit. On mini v2 the UNet
    attends to BOS (the sink), so the rescale itself moves the numbers: measured per-prompt
    |Top-1 own (c=1.3) - (c=1.0)| mean 0.022 (v1, 1.3% on BOS: 0.353 vs 0.352 overall), paired
    delta -0.014 [-0.030, +0.002]: lower, with an interval that just includes zero on 16 photos."""
    results, _, boot = mini_run
    diff = results["ren"].own - results["ren c=1.0"].own
    assert np.abs(diff).mean() >= 0.01, (diff, _report(mini_run))
    assert boot.paired_delta(results["ren"].own, results["ren c=1.0"].own).mean < 0, _report(mini_run)


def test_wen_reports_final_loss_below_l_or_the_iteration_cap(mini_run):
    results, _, _ = mini_run
    records = results["wen"].records
    assert len(records) == IMAGES_PER_PROMPT * len(results["wen"].own)
    for rec in records:
        assert rec["wen_final_loss"] <= float(WEN_L) or rec["wen_iterations"] == 10, rec
        assert rec["wen_final_loss"] < rec["wen_initial_loss"], rec


def test_mini_unet_parks_cross_attention_on_bos():
    """SD's CLIP makes BOS an attention sink; mini v2 is trained to have one (the build's sink
    hinge). Share of conditional cross-attention mass on token 0, trigger prompts, 4 DDIM steps: 0.370
    (metrics.json, all layers and 20 steps: 0.428)."""
    from membench_eval.models.loading import load_pipeline
    from membench_eval.suites import get_suite

    suite = get_suite("mini")
    pipe = load_pipeline(suite.model, device="cpu")
    recorder = BOSShareProcessor()
    original = dict(pipe.unet.attn_processors)
    pipe.unet.set_attn_processor({k: (recorder if k.split(".")[-2] == "attn2" else v) for k, v in original.items()})
    try:
        pipe([p.text for p in suite.trigger.prompts[:16]], num_inference_steps=4, guidance_scale=7.5, height=64,
             width=64, output_type="latent", generator=torch.Generator().manual_seed(0))
    finally:
        pipe.unet.set_attn_processor(original)
    share = recorder.mass / recorder.count
    print(f"\nmini BOS share of conditional cross-attention: {share:.4f}")
    assert share >= MIN_BOS_SHARE
