"""NeMo: find the cross-attention value neurons a memorized prompt relies on, and switch them off.

Hintersdorf, Struppek, Kersting, Dziedzic, Boenisch. "Finding NeMo: Localizing Neurons Responsible
for Memorization in Diffusion Models". NeurIPS 2024. Checked against the public code,
ml-research/localizing_memorization_in_diffusion_models @ f952ede: ``1_compute_activations_statistics.py``,
``3_detect_memorized_neurons.py``, ``utils/activation_detection.py``, ``hooks/block_activations.py``.

Neurons: output channels of ``attn2.to_v`` in the down and mid blocks' attentions (SD 1.x:
down_blocks[0..2].attentions[0..1] + mid, 320..1280 wide, 4800 neurons, as the code; mini:
down_blocks 1-2 + mid, 64 each). Activation ``a`` = mean over the 77 tokens of |to_v(text embedding)|.

1. ``setup`` (no UNet call): per-neuron mean ``mu`` and std ``sigma`` of ``a`` over non-memorized
   prompts. ``stats_prompts="auto"``: the mini suite's 30 general prompts on the mini model (its
   identity path is the suite's model directory), else the COCO val2017 captions (first 5000);
   ``"coco"``/``"mini"`` force one; any other value is a one-prompt-per-line file. Kept on disk as
   ``$MEMBENCH_CACHE_DIR/nemo/<key>.safetensors`` + ``.sha256`` (key: model identity, layers, dtype,
   prompts' hash); a file not matching its sha256 is recomputed.
2. Detection per prompt text: fixed x_T = ``randn((10, C, s, s), Generator().manual_seed(1))`` (the
   reference's draw; s = the UNet's sample size), ``d = unet(x_T, t_1, cond) - x_T`` (t_1 = second
   timestep of a 50-step schedule, guidance 0), min-max normalised per channel. Flagged when a
   seed's max SSIM to the other 9 exceeds ``threshold`` (0.428: SD1.4's, README section 2).
3. Search (flagged seeds): block ``|a - mu| / sigma > theta`` plus each layer's top-k ``a`` for
   theta = 5, 4.75, ... with k = 0, 1, ... until the similarity is <= threshold; at theta = 1 stop
   and refine against the similarity reached. Refinement: unblock whole layers (last first), then
   single neurons (greedy), keeping each removal while the similarity stays < that limit.
   ``criterion="same_seed"`` (default, the reference): similarity = max over flagged seeds of
   SSIM(d, d_blocked) of the same seed. ``"pairwise"`` (ours): the blocked model's detection score
   (max pairwise SSIM over the 10 seeds). On mini same_seed cannot reach 0.428 (x_T dominates its
   t_1 noise: even the empty prompt's is at SSIM 0.62-0.86); see tests/mitigations/test_mitigations_nemo.py.
4. Generation: a flagged prompt's neurons x 0 (``SCALING_FACTOR``) at every token, step and both CFG
   halves, as the reference's hooks; a processor on every ``attn2`` calls the module's own
   processor with a ``to_v`` output hook, so other rows are bitwise those of no mitigation.

Cost in extra UNet rows, once per prompt text and pipeline (cached in ``ctx.state``), paid by the
batch that first meets the prompt, i.e. amortised over its images (``nemo_search_unet_rows``
records the prompt's total): detection 10 (10 seeds x 1 step); each search test 1 row per flagged
seed (<= 10; pairwise: 10): <= 16 theta/k tests, <= 1 per layer (SD: 7), 1 per neuron left after
layer pruning. Mini measured: 178-1150 rows per flagged prompt (plain sampling: 2 x steps x images).
Records per image: ``nemo_flagged``, ``nemo_score``, ``nemo_initial_similarity``,
``nemo_final_similarity``, ``nemo_initial_neurons``, ``nemo_neurons``, ``nemo_layers`` ({layer:
indices}), ``nemo_search_unet_rows``. The results depend only on the prompt text, never the batch.

Differences from the reference, documented: SSIM is written out (neither torchmetrics nor
pytorch_msssim is installed): torchmetrics 1.3's MS-SSIM (3 scales, betas 0.33, Gaussian 11/1.5,
valid windows, data range 1, relu) on maps >= 44 px (SD: 64), single-scale SSIM with the same
window on smaller ones (mini, tiny: 16x16 is too small for 3 scales). Statistics from COCO / mini
prompts (the reference: 50k held-out LAION prompts). The t_0 UNet call the reference makes and
discards is skipped; only flagged seeds are run (same_seed); repeated indices (z-score and top-k
overlap) are merged; the k cap is the widest layer (the code's 1280 on SD).

Families (``needs``: cross_attention): blocks value neurons of cross-attention (``attn2``): SD 1.x
/ 2.x, Realistic Vision, SDXL; IF's added-KV and MM-DiT's joint attention have no separate cross-
attention value layer: n/a.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from membench_eval.errors import MitigationError
from membench_eval.metrics.ssim import similarity
from membench_eval.mitigation import BatchContext, Mitigation
from membench_eval.models import family_for

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline


def value_layers(pipe: Any) -> list[tuple[str, Any]]:
    """(module name, attention module) of the down and mid blocks' cross-attentions, in UNet order."""
    return [(layer.name.rsplit(".", 1)[0], layer.module) for layer in family_for(pipe).attention_layers()
            if layer.role == "cross" and layer.block.startswith(("down_blocks.", "mid_block"))]


def layer_activations(attns: list[Any], embeds: "torch.Tensor") -> list["torch.Tensor"]:
    """Per layer, mean over tokens of |to_v(embeds)|: (prompts, neurons), float32."""
    return [a.to_v(embeds.to(a.to_v.weight.dtype)).float().abs().mean(dim=1) for a in attns]


def activation_statistics(pipe: "StableDiffusionPipeline", prompts: list[str], batch: int = 64) -> tuple[list, list]:
    """(means, stds) per layer over ``prompts`` (the reference's step 1; unbiased std as torch.std)."""
    import torch

    family = family_for(pipe)
    attns = [m for _, m in value_layers(pipe)]
    acts: list[list] = [[] for _ in attns]
    with torch.no_grad():
        for i in range(0, len(prompts), batch):
            emb = family.encode(prompts[i:i + batch], family.device).embeds
            for store, a in zip(acts, layer_activations(attns, emb)):
                store.append(a.cpu())
    cat = [torch.cat(a) for a in acts]
    return [a.mean(0) for a in cat], [a.std(0) for a in cat]


def initial_selection(acts: list, means: list, stds: list, theta: float, k: int) -> list[list[int]]:
    """Per layer: neurons with z-score |a - mu| / sigma > theta, then the top-k |a| (no repeats)."""
    out = []
    for a, mu, sd in zip(acts, means, stds):
        z = (a.cpu() - mu).abs() / sd
        idx = (z > theta).nonzero().flatten().tolist() + a.abs().topk(min(k, a.numel())).indices.tolist()
        out.append(list(dict.fromkeys(idx)))
    return out


def max_pairwise_similarity(d: "torch.Tensor") -> "torch.Tensor":
    """For each row, its largest similarity to any other row (the reference's pairwise check)."""
    import torch

    pairs = torch.combinations(torch.arange(len(d)), r=2)
    s = similarity(d[pairs[:, 0]], d[pairs[:, 1]])
    return torch.stack([s[(pairs == i).any(1)].max() for i in range(len(d))])


@dataclass
class NeMoState:
    """What ``setup`` returns: layer names, per-neuron statistics, and the per-prompt results
    (keyed by (threshold, prompt text); deterministic, so caching them changes nothing)."""

    layers: list[str]
    means: list
    stds: list
    source: str
    decisions: dict = field(default_factory=dict)


@dataclass
class Decision:
    score: float
    flagged: bool
    neurons: list[list[int]]
    initial_neurons: int = 0
    initial_similarity: float | None = None
    final_similarity: float | None = None
    unet_rows: int = 0


class NeuronBlockingProcessor:
    """On every attn2: the module's own processor, with ``to_v``'s output multiplied by ``keep``
    ((rows, 1, neurons); 0 at a flagged row's blocked neurons, else 1) for the blocked layers."""

    def __init__(self, originals: dict[int, Any], keep: dict[int, "torch.Tensor"]):
        self.originals, self.keep = originals, keep

    def __call__(self, attn: Any, hidden_states: Any, encoder_hidden_states: Any = None, *args: Any, **kwargs: Any) -> Any:
        original, keep = self.originals[id(attn)], self.keep.get(id(attn))
        if keep is None:
            return original(attn, hidden_states, encoder_hidden_states, *args, **kwargs)

        def scale(module: Any, inputs: Any, out: Any) -> Any:
            if out.shape[0] != keep.shape[0]:
                raise MitigationError(f"nemo: to_v batch has {out.shape[0]} rows, expected {keep.shape[0]}")
            return out * keep.to(out.device, out.dtype)

        handle = attn.to_v.register_forward_hook(scale)
        try:
            return original(attn, hidden_states, encoder_hidden_states, *args, **kwargs)
        finally:
            handle.remove()


class NeMo(Mitigation):
    """Per prompt: detect memorization from x_T noise similarity, then zero its outlier value neurons."""

    name = "nemo"
    needs = frozenset({"cross_attention"})
    paper = "Hintersdorf et al. 2024, Finding NeMo: Localizing Neurons Responsible for Memorization in Diffusion Models"
    # Not the paper's sweep (it reports 0.428 only): the SD1.4 value and values around it (lower = stronger).
    sweep = {"threshold": [0.5, 0.428, 0.35]}
    strongest = {"threshold": 0.35}
    setup_params = ("stats_prompts",)

    # The reference's fixed settings (3_detect_memorized_neurons.py defaults).
    SEEDS: ClassVar[int] = 10
    SEED: ClassVar[int] = 1
    DETECTION_STEPS: ClassVar[int] = 50  # schedule whose timesteps[1] is used
    THETA_START: ClassVar[float] = 5.0
    THETA_STEP: ClassVar[float] = 0.25
    THETA_MIN: ClassVar[float] = 1.0
    K_START: ClassVar[int] = 0
    SCALING_FACTOR: ClassVar[float] = 0.0
    MAX_COCO_PROMPTS: ClassVar[int] = 5000

    threshold: float = 0.428
    stats_prompts: str = "auto"
    criterion: str = "same_seed"

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise MitigationError(f"nemo: threshold must be in [0, 1], got {self.threshold}")
        if not isinstance(self.stats_prompts, str) or not self.stats_prompts.strip():
            raise MitigationError("nemo: stats_prompts must be 'auto', 'coco', 'mini' or a prompt file")
        if self.criterion not in ("same_seed", "pairwise"):
            raise MitigationError(f"nemo: criterion must be 'same_seed' or 'pairwise', got {self.criterion!r}")

    # --- statistics ---------------------------------------------------------------------------

    def _prompts(self, pipe: "StableDiffusionPipeline") -> tuple[str, list[str]]:
        from membench_eval.models import is_model
        from membench_eval.suites import get_suite

        source = self.stats_prompts
        if source == "auto":
            source = "mini" if is_model(pipe, get_suite("mini").model) else "coco"
        if source in ("coco", "mini"):
            prompts = [p.text for p in get_suite(source).general.prompts][: self.MAX_COCO_PROMPTS]
        else:
            from membench_eval.suites.loaders import load_prompt_lines

            prompts = load_prompt_lines(source)
        if len(prompts) < 2:
            raise MitigationError(f"nemo: statistics need at least 2 prompts, {source!r} has {len(prompts)}")
        return source, prompts

    def setup(self, pipe: "StableDiffusionPipeline") -> NeMoState:
        from safetensors.torch import load as st_load
        from safetensors.torch import save as st_save

        from membench_eval.models import model_identity
        from membench_eval.paths import cache_dir

        source, prompts = self._prompts(pipe)
        layers = value_layers(pipe)
        if not layers:
            raise MitigationError("nemo: the UNet has no cross-attention in its down or mid blocks")
        names, widths = [n for n, _ in layers], [m.to_v.out_features for _, m in layers]
        key = hashlib.sha256(json.dumps({
            "model": model_identity(pipe), "layers": names, "widths": widths, "dtype": str(family_for(pipe).dtype),
            "prompts": hashlib.sha256("\n".join(prompts).encode()).hexdigest(),
        }, sort_keys=True).encode()).hexdigest()[:32]
        file = cache_dir() / "nemo" / f"{key}.safetensors"
        check = file.with_name(file.name + ".sha256")
        try:
            data = file.read_bytes()
            if hashlib.sha256(data).hexdigest() == check.read_text().strip():
                t = st_load(data)
                means, stds = [t[f"mean.{i}"] for i in range(len(names))], [t[f"std.{i}"] for i in range(len(names))]
                if [len(m) for m in means] == widths == [len(s) for s in stds]:
                    return NeMoState(names, means, stds, source)
        except Exception:  # noqa: BLE001 - missing, unreadable or malformed: recompute
            pass
        means, stds = activation_statistics(pipe, prompts)
        tensors = {f"{kind}.{i}": t.float().contiguous() for i in range(len(names))
                   for kind, t in (("mean", means[i]), ("std", stds[i]))}
        data = st_save(tensors, metadata={"layers": json.dumps(names), "source": source, "prompts": str(len(prompts))})
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, file)
            check.write_text(hashlib.sha256(data).hexdigest())
        except OSError:
            pass  # the disk cache is an optimisation
        return NeMoState(names, [t.float() for t in means], [t.float() for t in stds], source)

    # --- detection and search -------------------------------------------------------------------

    def decide(self, pipe: "StableDiffusionPipeline", state: NeMoState, prompt: str) -> Decision:
        """Detection and neuron search for one prompt text (memoised in ``state``)."""
        memo = (self.threshold, self.criterion, prompt)
        if memo not in state.decisions:
            import torch

            with torch.no_grad():
                state.decisions[memo] = self._search(pipe, state, prompt)
        return state.decisions[memo]

    def _search(self, pipe: "StableDiffusionPipeline", state: NeMoState, prompt: str) -> Decision:
        import torch

        family = family_for(pipe)
        attns = [m for _, m in value_layers(pipe)]
        if [n for n, _ in value_layers(pipe)] != state.layers:
            raise MitigationError("nemo: the statistics were computed for other layers")
        device = family.device
        scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
        scheduler.set_timesteps(self.DETECTION_STEPS, device=device)
        t = scheduler.timesteps[1]
        shape = (self.SEEDS, *family.latent_shape(family.native_size, family.native_size))
        x_t = torch.randn(shape, generator=torch.Generator().manual_seed(self.SEED))
        x_t = x_t.to(device) * scheduler.init_noise_sigma
        emb = family.encode([prompt], device).embeds
        rows = [0]

        def noise_diff(x: "torch.Tensor", blocked: list[list[int]] | None) -> "torch.Tensor":
            handles = []
            for attn, idx in zip(attns, blocked or []):
                if idx:
                    keep = torch.ones(attn.to_v.out_features, device=device)
                    keep[idx] = self.SCALING_FACTOR
                    handles.append(attn.to_v.register_forward_hook(lambda m, i, o, keep=keep: o * keep.to(o.dtype)))
            try:
                model_in = scheduler.scale_model_input(x, t).to(family.dtype)
                cond = emb.expand(len(x), -1, -1).to(family.dtype)
                eps = family.predict(model_in, t, cond).sample
            finally:
                for h in handles:
                    h.remove()
            rows[0] += len(x)
            d = eps.float() - x.float()
            lo, hi = d.amin(dim=(2, 3), keepdim=True), d.amax(dim=(2, 3), keepdim=True)
            return (d - lo) / (hi - lo)

        d0 = noise_diff(x_t, None)
        per_seed = max_pairwise_similarity(d0)
        flagged = per_seed > self.threshold
        if not bool(flagged.any()):
            return Decision(float(per_seed.max()), False, [[] for _ in attns], unet_rows=rows[0])
        x_f, ref = x_t[flagged], d0[flagged]

        def sim(blocked: list[list[int]]) -> float:
            if self.criterion == "pairwise":  # the detection score of the blocked model, all seeds
                return float(max_pairwise_similarity(noise_diff(x_t, blocked)).max())
            return float(similarity(ref, noise_diff(x_f, blocked)).max())

        acts = [a[0] for a in layer_activations(attns, emb)]
        widest = max(a.numel() for a in acts)
        theta, k, limit = self.THETA_START, self.K_START, self.threshold
        while True:
            blocked = initial_selection(acts, state.means, state.stds, theta, k)
            s = sim(blocked)
            if s <= self.threshold:
                break
            if theta > self.THETA_MIN:
                theta -= self.THETA_STEP
            k += 1
            if theta <= self.THETA_MIN or k >= widest:  # the reference: theta == 1 or k >= 1280
                limit = s  # the reference refines against the SSIM it reached
                break
        initial, final = s, s
        n_initial = sum(len(b) for b in blocked)
        for layer in reversed(range(len(blocked))):  # refinement 1: whole layers, last first
            if blocked[layer]:
                trial = [b if i != layer else [] for i, b in enumerate(blocked)]
                s = sim(trial)
                if s < limit:
                    blocked, final = trial, s
        for layer in reversed(range(len(blocked))):  # refinement 2: single neurons, greedy
            for neuron in list(blocked[layer]):
                trial = [b if i != layer else [j for j in b if j != neuron] for i, b in enumerate(blocked)]
                s = sim(trial)
                if s < limit:
                    blocked, final = trial, s
        return Decision(float(per_seed.max()), True, blocked, n_initial, initial, final, rows[0])

    # --- generation -------------------------------------------------------------------------------

    def cross_attention_processor(
        self, pipe: "StableDiffusionPipeline", ctx: BatchContext
    ) -> NeuronBlockingProcessor | None:
        import torch

        from membench_eval.generation.batch import cached_setup

        state = ctx.state if isinstance(ctx.state, NeMoState) else cached_setup(pipe, self)
        while len(ctx.records) < len(ctx.requests):
            ctx.records.append({})
        decisions: list[Decision | None] = []
        for i, request in enumerate(ctx.requests):
            if request.padding:
                decisions.append(None)
                continue
            d = self.decide(pipe, state, ctx.prompts[i])
            decisions.append(d)
            ctx.records[i].update(
                nemo_flagged=d.flagged, nemo_score=d.score, nemo_initial_similarity=d.initial_similarity,
                nemo_final_similarity=d.final_similarity, nemo_initial_neurons=d.initial_neurons,
                nemo_neurons=sum(len(b) for b in d.neurons), nemo_search_unet_rows=d.unet_rows,
                nemo_layers={n: sorted(b) for n, b in zip(state.layers, d.neurons) if b},
            )
        if not any(d is not None and any(d.neurons) for d in decisions):
            return None  # nothing to block: the engine's own processors, unchanged
        n = len(ctx.requests)
        copies = 2 if ctx.do_classifier_free_guidance else 1  # rows [uncond; cond], both blocked
        originals = {id(layer.module): layer.module.processor for layer in family_for(pipe).attention_layers()}
        keep: dict[int, torch.Tensor] = {}
        for layer, (_, attn) in enumerate(value_layers(pipe)):
            mask = torch.ones(copies * n, 1, attn.to_v.out_features)
            for i, d in enumerate(decisions):
                if d is not None and d.neurons[layer]:
                    for c in range(copies):
                        mask[c * n + i, 0, d.neurons[layer]] = self.SCALING_FACTOR
            if bool((mask != 1).any()):
                keep[id(attn)] = mask.to(ctx.device)
        return NeuronBlockingProcessor(originals, keep)
