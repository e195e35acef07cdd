"""The four baselines at their strongest paper setting on the miniature memorizing benchmark,
scored with the real SSCD ONNX model (sscd_disc_mixup, the mini suite's backend).

One module-scoped run generates every mini trigger prompt x 10 images for base, RNA n=6, RTA n=6,
Wen l=2 and Ren c=1.3 and scores them; the tests read that. Two Top-1 SSCD numbers per method:
``own`` against the prompt's own memorized image (MemBench's metric) and ``any`` against every
memorized image of the suite, because a method that swaps one memorized copy for another has not
helped (the feasibility run saw exactly that).

Measured on this machine (mini model of 14:25 UTC, 18 trigger prompts x 10 images, run seed 0;
``pytest -s`` prints the table again):

    method      Top-1 own  Top-1 any  images > 0.5 matching ANOTHER memorized image
    base        0.421      0.423      5
    rna n=6     0.297      0.339      0
    rta n=6     0.413      0.419      4
    wen l=2     0.240      0.288      0
    ren c=1.3   0.352      0.352      0     (ren c=1.0: 0.353 / 0.353)

- RNA and Wen lower both numbers well below base; the asserted margins are about half the measured.
- Wen: the mini model's joint noise norms at the first step are 6.4-10.3 (the paper's l range
  7..2 is meaningful here, not trivially met); l=2 is never reached within the 10 AdamW steps
  (final 3.8-6.1), so every image reports the iteration cap, as the method specifies.
- Ren: c=1.0 (padding mask only) gives the same 0.353 as c=1.3. The mini text encoder puts 1.3% of
  the conditional cross-attention on BOS (CLIP's BOS is an attention sink in SD), so the BOS
  rescale has nothing to act on; the measured drop is the padding mask's. The rescale itself is
  proved on fake batches in tests/test_mitigations_ren.py; here only Ren's total drop is asserted.
- RTA barely moves the mini model (0.421 -> 0.413, within noise), so its drop is reported, not
  asserted; only "does not make copying worse" is. Likely why: the mini text encoder learned 180
  token embeddings from 150 captions, the other 49k are untrained and small (mean norm 0.11 vs
  0.21), and a decoded random token adds 1-3 BPE tokens where RNA's 5-digit numbers add 4-5
  (a 10-token prompt grows to ~21 tokens under RTA n=6, to 41 under RNA n=6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

pytestmark = pytest.mark.slow

MITIGATIONS = Path(__file__).resolve().parent.parent / "mitigations"
STRONGEST = {"base": {}, "rna": {"n": "6"}, "rta": {"n": "6"}, "wen": {"l": "2"}, "ren": {"c": "1.3"}}


@dataclass
class MethodResult:
    label: str
    top1_own: float  # mean over prompts of max SSCD to the prompt's own memorized image(s)
    top1_any: float  # same, against every memorized image of the suite
    per_prompt_own: dict[str, float]
    per_prompt_any: dict[str, float]
    records: list[dict] = field(default_factory=list)


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory):
    from membench_eval.generation.engine import generate
    from membench_eval.generation.pipeline import load_pipeline
    from membench_eval.generation.seeding import plan_requests
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.metrics.sscd import load_sscd, reference_embeddings
    from membench_eval.mitigation_loader import load_mitigation
    from membench_eval.store.run_store import RunStore
    from membench_eval.suites import get_suite
    from membench_eval.suites.references import reference_paths

    tmp = tmp_path_factory.mktemp("mini_mitigations")
    suite = get_suite("mini")
    pipe = load_pipeline(suite.model, device="cpu")
    settings = GenerationSettings.for_suite(suite)
    prompts = suite.trigger.prompts
    requests = plan_requests(prompts, settings.trigger_images_per_prompt, settings.seed)
    sscd = load_sscd(suite.sscd_backend)
    paths, _ = reference_paths(suite)
    refs = reference_embeddings(sscd, paths, cache_dir=tmp / "cache")
    all_ids = sorted(refs)
    all_refs = np.stack([refs[i] for i in all_ids])
    store = RunStore(tmp / "store")
    results: dict[str, MethodResult] = {}
    for name, params in STRONGEST.items():
        method = load_mitigation(MITIGATIONS / f"{name}.py", params=params)
        report = generate(pipe, requests, method, settings, store, progress=False)
        images = [store.get_image(k) for k in report.keys]
        emb = sscd.embed(images)
        own, anyone = {}, {}
        for p in prompts:
            rows = [i for i, r in enumerate(requests) if r.prompt_id == p.prompt_id]
            own_refs = np.stack([refs[i] for i in p.memorized_ids])
            own[p.prompt_id] = float((emb[rows] @ own_refs.T).max())
            anyone[p.prompt_id] = float((emb[rows] @ all_refs.T).max())
        results[name] = MethodResult(
            label=method.label(), top1_own=float(np.mean(list(own.values()))), top1_any=float(np.mean(list(anyone.values()))),
            per_prompt_own=own, per_prompt_any=anyone, records=[store.record(k).get("records", {}) for k in report.keys],
        )
    print("\nmini trigger prompts, 10 images each: Top-1 SSCD own / any")
    for r in results.values():
        print(f"  {r.label:12s} own {r.top1_own:.3f}  any {r.top1_any:.3f}")
    return results


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


def _report(mini_run) -> str:
    return ", ".join(f"{r.label}: own {r.top1_own:.3f} any {r.top1_any:.3f}" for r in mini_run.values())


@pytest.mark.parametrize("name,own_margin,any_margin", [("rna", 0.05, 0.03), ("wen", 0.08, 0.05), ("ren", 0.03, 0.03)])
def test_strongest_setting_lowers_top1_below_base(mini_run, name, own_margin, any_margin):
    """Measured drops (own / any): rna 0.124 / 0.084, wen 0.181 / 0.135, ren 0.069 / 0.071."""
    base, method = mini_run["base"], mini_run[name]
    assert method.top1_own <= base.top1_own - own_margin, _report(mini_run)
    # Not by swapping one memorized copy for another: the best match to ANY memorized image drops too.
    assert method.top1_any <= base.top1_any - any_margin, _report(mini_run)


def test_rta_does_not_make_copying_worse(mini_run):
    """RTA's mini effect is reported (measured 0.421 -> 0.413), not asserted: see the module docstring."""
    base, rta = mini_run["base"], mini_run["rta"]
    assert rta.top1_own <= base.top1_own + 0.03 and rta.top1_any <= base.top1_any + 0.03, _report(mini_run)


def test_wen_reports_final_loss_below_l_or_the_iteration_cap(mini_run):
    records = mini_run["wen"].records
    assert len(records) == 10 * len(mini_run["wen"].per_prompt_own)
    for rec in records:
        assert rec["wen_final_loss"] <= 2.0 or rec["wen_iterations"] == 10, rec
        assert rec["wen_final_loss"] < rec["wen_initial_loss"], rec


def test_ren_bos_rescale_has_no_attention_sink_to_act_on_in_mini():
    """Why Ren's BOS rescale is proved on fake batches rather than on mini: measured BOS share
    of the conditional cross-attention on mini trigger prompts is 1.3% (CLIP in SD: the sink).
    If the mini model gains a sink, this fails: then assert c=1.3 beats c=1.0 on mini instead."""
    from membench_eval.generation.pipeline import load_pipeline
    from membench_eval.suites import get_suite

    suite = get_suite("mini")
    pipe = load_pipeline(suite.model, device="cpu")
    recorder = BOSShareProcessor()
    original = dict(pipe.unet.attn_processors)
    pipe.unet.set_attn_processor({k: (recorder if k.split(".")[-2] == "attn2" else v) for k, v in original.items()})
    try:
        prompts = [p.text for p in suite.trigger.prompts]
        pipe(prompts, num_inference_steps=4, guidance_scale=7.5, height=64, width=64, output_type="latent",
             generator=torch.Generator().manual_seed(0))
    finally:
        pipe.unet.set_attn_processor(original)
    share = recorder.mass / recorder.count
    print(f"\nmini BOS share of conditional cross-attention: {share:.4f}")
    assert 0 < share < 0.1
