"""Ren et al.'s cross-attention entropy detector, modes E (first step) and D (last steps).

Ren, Li, Zeng, Xu, Lyu, Xing, Tang. "Unveiling and Mitigating Memorization in Text-to-image
Diffusion Models through Cross Attention". ECCV 2024 (arXiv 2403.11052). Checked against the public
code, renjie3/MemAttn @ c66efd2: ``detect.py`` (the two modes and the score), ``text2img.py``
(generation: SD1.4, DDIM, the pipeline's 50 steps and guidance 7.5, fp16, one image per prompt,
prompt i seeded ``i + seed``), ``refactored_classes/MemAttn.py`` (what is saved: per UNet call and
cross-attention layer, the conditional row's softmax attention averaged over the image queries,
shape (heads, 77), and the tokenized prompt length, BOS and EOS included) and
``refactored_attention_processor.py`` (the attention probabilities).

The attention distribution over the 77 text tokens, for one prompt, step s and a set of
cross-attention (``attn2``) layers: the conditional row's attention, averaged over heads and image
positions in each layer, then over the layers (each layer weighted equally, as ``detect.py``'s
``mean((2, 3))``)::

    p_s(j) = mean_{layers} mean_{heads, queries} softmax(q k^T / sqrt(d))[j]      (sums to 1)
    H_s    = - sum_{j < 77} p_s(j) log p_s(j)                                     (all 77 tokens)
    Hpad_s = - sum_{j >= L-1} p_s(j) log p_s(j)      (L = tokenized length: EOS and the padding)

* mode "E" (``detect.py --mode E``): score = H_0 at the first sampling step, layer ``layer`` only
  (the reference's ``layer_id = 3``, the fourth cross-attention call of a UNet forward: in SD1.4
  ``down_blocks.1.attentions.1``; on the miniature model, 7 cross-attention layers, the fourth is
  ``up_blocks.0.attentions.0``). ``layer = -1`` averages every layer.
* mode "D" (``--mode D``): score = mean_{s in last} H_s + mean_{s in last} Hpad_s - Hpad_0, every
  layer, ``last`` = the last ``last_steps`` (10) sampling steps (the reference: steps 40..49 of 50).

SIGN: the score is the entropy itself, NOT its negation. ``detect.py`` feeds these values to
``roc_auc_score`` with memorized = 1, so higher entropy = more memorized. That is the paper's
finding read correctly: a non-memorized prompt's attention sits on the beginning token (BOS, an
attention sink), a low-entropy distribution; a memorized prompt moves it onto its few trigger
tokens, which spreads it over more tokens and raises the entropy (the mitigation, ``ren.py``,
pushes attention back to BOS). ``tests/detection/test_detectors.py`` checks this on a controlled UNet, and
measures the sign on the miniature model.

Defaults: ``mode`` "E", ``layer`` 3, ``last_steps`` 10 (all from ``detect.py``); ``seed`` -1: each
prompt's own latent from the runner's per-prompt seed (the reference seeds prompt i with
``i + seed``); ``seed >= 0`` scores every prompt on the latent seeded ``seed``.

Cost in UNet rows per prompt: mode E 1 (the conditional row at the first step: the unconditional
half of the reference's CFG call does not change the conditional row's attention); mode D
2 x steps (a full CFG run: 100 for SD1.4, 40 on the miniature model). Per-prompt independence:
one latent per prompt, rows are independent in the UNet, and all statistics are per row.

Measured on the miniature model (16 trigger vs 30 general prompts, per-prompt seeds from run seed
0, 20 DDIM steps, g 7.5, 64x64; ``tests/detection/test_detectors.py``): mode E (layer 3) ROC AUC 0.777 (the
other single layers 0.58-0.92, all layers 0.781); mode D 0.871 (its padding-change term alone
0.865). The negated entropy would score 0.223 in mode E: on the mini too, higher entropy = trigger.

Differences from the reference: (1) mode E costs one row instead of a full 50-step generation (the
reference saves every step and reads step 0); (2) mode D on S != 50 steps uses the last 10 steps
(the reference's indices 40..49 assume 50); (3) float32 attention probabilities, the reference's
fp16; entropy terms use xlogy (0 log 0 = 0; the reference's p log p would give nan there);
(4) no image is decoded. The reference also records ``prompt_entropy``, which no mode uses.
Records per prompt: ``ren_entropy`` (H_0 of the mode's layers; mode D: the last steps' mean),
``ren_padding_change`` (mode D: mean Hpad_last - Hpad_0), ``ren_tokens`` (L).

Families (``needs``: cross_attention, clip_bos_token): cross-attention entropy around CLIP's BOS
sink: SD 1.x / 2.x, Realistic Vision, SDXL; IF (T5) reads n/a.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from membench_eval.detection.signal import encode_prompts, guided_trajectory, latent_geometry, seeded_latents
from membench_eval.detector import DetectionContext, Detector
from membench_eval.errors import DetectorError
from membench_eval.models import cross_attention_probs, family_for

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline


class _TokenAttention:
    """An attn2 processor: records the last ``rows`` rows' attention over the text tokens (mean over
    heads and image queries, (rows, tokens), float32) in ``log``, then runs the original processor."""

    def __init__(self, name: str, processor: Any, rows: int, log: list):
        self.name, self.processor, self.rows, self.log = name, processor, rows, log

    def __call__(self, attn: Any, hidden_states: "torch.Tensor", encoder_hidden_states: "torch.Tensor | None" = None,
                 attention_mask: Any = None, temb: Any = None, *args: Any, **kwargs: Any) -> "torch.Tensor":
        probs = cross_attention_probs(attn, hidden_states, encoder_hidden_states).mean(dim=(1, 2))
        self.log.append((self.name, probs[-self.rows:]))
        return self.processor(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)


class _capture:
    """Context manager: a ``_TokenAttention`` on every cross-attention (attn2) layer; originals
    restored on exit."""

    def __init__(self, pipe: Any, rows: int):
        self.family, self.rows, self.log = family_for(pipe), rows, []

    def __enter__(self) -> list:
        self.installed = self.family.attention_processors(
            lambda layer, current: _TokenAttention(layer.name, current, self.rows, self.log) if layer.role == "cross" else None
        )
        self.installed.__enter__()
        return self.log

    def __exit__(self, *exc: object) -> None:
        self.installed.__exit__(None, None, None)


def entropy(p: "torch.Tensor") -> "torch.Tensor":
    """-sum p log p over the last axis (0 log 0 = 0)."""
    import torch

    return -torch.special.xlogy(p, p).sum(dim=-1)


class RenEntropy(Detector):
    """Cross-attention entropy over the text tokens: mode E (step 0, one layer) or D (last steps)."""

    name = "ren_entropy"
    needs = frozenset({"cross_attention", "clip_bos_token"})
    paper = "Ren et al. 2024, Unveiling and Mitigating Memorization in T2I Diffusion Models through Cross Attention"
    sweep = {"mode": ["E", "D"]}  # detect.py's two modes

    mode: str = "E"
    layer: int = 3
    last_steps: int = 10
    seed: int = -1

    def __post_init__(self) -> None:
        if self.mode not in ("E", "D"):
            raise DetectorError(f"ren_entropy: mode must be 'E' or 'D', got {self.mode!r}")
        if self.layer < -1:
            raise DetectorError(f"ren_entropy: layer must be >= 0, or -1 for every layer, got {self.layer}")
        if self.last_steps < 1:
            raise DetectorError(f"ren_entropy: last_steps must be >= 1, got {self.last_steps}")
        if self.seed < -1:
            raise DetectorError(f"ren_entropy: seed must be >= 0, or -1 for each prompt's own seed, got {self.seed}")

    def score(self, pipe: "StableDiffusionPipeline", ctx: DetectionContext) -> list[float]:
        import torch

        n = len(ctx.prompts)
        family = family_for(pipe)
        lengths = family.token_counts(ctx.prompts)
        seeds = [self.seed if self.seed >= 0 else r.seed for r in ctx.requests]
        latents = seeded_latents(pipe, seeds, latent_geometry(pipe, ctx.height, ctx.width))
        scheduler = copy.deepcopy(pipe.scheduler)
        scheduler.set_timesteps(ctx.num_inference_steps, device=latents.device)
        with torch.no_grad():
            cond = encode_prompts(pipe, ctx.prompts)
            if self.mode == "E":
                t = scheduler.timesteps[0]
                with _capture(pipe, n) as log:
                    family.predict(scheduler.scale_model_input(latents, t), t, cond)
                steps = self._per_step(log, 1)
            else:
                with _capture(pipe, n) as log:
                    guided_trajectory(pipe, cond, encode_prompts(pipe, [""]), latents, ctx.num_inference_steps,
                                      ctx.guidance_scale)
                steps = self._per_step(log, len(scheduler.timesteps))
        if self.mode == "E":
            layers = self._layers(steps[0])
            p = torch.stack([steps[0][k] for k in layers]).mean(0)  # (n, tokens)
            scores = entropy(p)
            for i in range(n):
                ctx.records[i].update(ren_entropy=float(scores[i]), ren_tokens=lengths[i])
            return scores.double().tolist()
        p = torch.stack([torch.stack(list(step.values())).mean(0) for step in steps])  # (steps, n, tokens)
        last = p[-min(self.last_steps, p.shape[0]):]
        h_last = entropy(last).mean(0)
        pad = torch.stack([entropy(p[:, i, lengths[i] - 1:]) for i in range(n)], dim=1)  # (steps, n)
        change = pad[-last.shape[0]:].mean(0) - pad[0]
        scores = h_last + change
        for i in range(n):
            ctx.records[i].update(ren_entropy=float(h_last[i]), ren_padding_change=float(change[i]), ren_tokens=lengths[i])
        return scores.double().tolist()

    def _per_step(self, log: list, steps: int) -> list[dict[str, "torch.Tensor"]]:
        """The captured maps as one {layer name: (n, tokens)} dict per UNet call, in call order."""
        if not log or len(log) % steps:
            raise DetectorError(f"ren_entropy: captured {len(log)} cross-attention maps for {steps} UNet calls "
                                "(does the UNet have attn2 layers?)")
        per = len(log) // steps
        return [dict(log[s * per:(s + 1) * per]) for s in range(steps)]

    def _layers(self, step: dict[str, "torch.Tensor"]) -> list[str]:
        names = list(step)  # call order within one UNet forward
        if self.layer == -1:
            return names
        if self.layer >= len(names):
            raise DetectorError(f"ren_entropy: layer {self.layer} does not exist; the UNet has {len(names)} "
                                f"cross-attention layers (0..{len(names) - 1}, or -1 for all)")
        return [names[self.layer]]
