"""Bright Ending (BE): Wen's magnitude, masked by the end token's cross-attention map.

Chen et al. "Exploring Local Memorization in Diffusion Models via Bright Ending
Attention". ICLR 2025. Checked against the public code, chenchen-usyd/BE-PRSS @ fb2e942:
``detect_mem.py`` (two runs per prompt: ``--run_version baseline`` saves the attention maps,
``--run_version ours`` scores with the mask; defaults 4 images per prompt, the README's command 16,
50 DDIM steps, guidance 7.5, fp16, prompt i seeded ``i + gen_seed``), ``controller.py`` (which
maps) and ``local_sd_pipeline.py`` l.233-263 (``text_noise_norm_masked``). The facts file
``notes/facts_prss_amg_nemo.md`` section 1.5 carries the details.

Per image (one initial latent x_T), with d_s = eps(x_s, s, p) - eps(x_s, s, "") at sampling step s
of a plain classifier-free-guided DDIM run of the prompt::

    M        = the end token's attention map at the LAST step: cross-attention (attn2) of the
               highest-resolution down block that has it (SD1.4: down_blocks.0, 64x64 = the latent
               size; the miniature model: down_blocks.1, 8x8, resized to the 16x16 latent by
               nearest neighbour), conditional row, mean over heads and that block's layers, at
               the first EOS position (L - 1, L = tokenized length with BOS and EOS; 76 if
               truncated). Raw softmax probabilities, broadcast over the latent channels.
    m_s      = || d_s * M ||_2 / mean(M)          (mean over the image's map)
    score(p) = mean over images of mean_{s < steps} m_s

Higher = more memorized: the end token's attention is bright exactly where a (locally) memorized
region is generated, so the mask keeps the part of Wen's magnitude that comes from it.

Steps: the repo records m_s at every step and ships no evaluation script, so which steps the paper
aggregates is not in the code. ``steps`` 1 (the first step, as Wen's one-step detection) is this
file's ASSUMPTION; ``steps = 0`` averages every step.

Cheapest faithful variant: the reference runs the prompt twice from the same seed (the baseline
run for M, then the scored run, whose sampling the mask does not change: it only masks the
tracked norm). With DDIM (eta 0) both runs are the same trajectory, so ONE run here records d_s
on the way and M at its last step: the same numbers for half the UNet calls.

Defaults: ``images`` 4 (``detect_mem.py``'s default), ``steps`` 1, ``seed`` -1 (each prompt's own
latents, image k seeded ``ctx.requests[i].seed + k``, as the reference seeds per prompt; ``seed >=
0`` uses ``seed + k`` for every prompt).

Cost in UNet rows per prompt: 2 x images x steps_of_sampling (the full run is needed for the
last-step mask whatever ``steps`` is): 2 x 4 x 50 = 400 for SD1.4, 160 on the miniature model
(the reference: twice that). Per-prompt independence: every image row is its own trajectory, and
mean(M) is per image (the reference's ``attn_mask.mean(dim=(1, 2, 3))`` in detection).

Measured on the miniature model (16 trigger vs 30 general prompts, per-prompt seeds from run seed
0, 20 DDIM steps, g 7.5, 64x64; ``tests/detection/test_detectors.py``): ROC AUC 0.931 (images 4, steps 1),
0.865 (images 1); the unmasked first-step magnitude of the same run (``be_unmasked``) 0.960, so the
mask does not help on the mini (it memorizes whole photos; BE is built for local memorization).
``steps = 0`` (every step) 0.294: inverted, like Wen's trajectory mean (``wen_trajectory.py``).

Differences from the reference: (1) one run instead of two (identical for DDIM eta 0; a stochastic
scheduler would need the reference's second run); (2) float32, the reference fp16; (3) the map's
block is chosen by resolution (the reference hard-codes 64x64 = SD1.4's down_blocks.0) and resized
when coarser than the latent; (4) no image is decoded. Records per prompt: ``be_unmasked`` (the
same steps' mean ||d_s||_2, i.e. Wen's magnitude without the mask) and ``be_mask_mean``.

Families (``needs``: cfg, cross_attention): Wen's magnitude masked by the end token's cross-
attention map: SD 1.x / 2.x, Realistic Vision, SDXL; IF reads n/a (no cross-attention).
"""

from __future__ import annotations

import copy
import contextlib
import math
from typing import TYPE_CHECKING, Any

from membench_eval.detection.signal import encode_prompts, latent_geometry, seeded_latents
from membench_eval.detector import DetectionContext, Detector
from membench_eval.errors import DetectorError
from membench_eval.models import EndTokenCapture, family_for

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline


def mask_layers(pipe: Any) -> list[str]:
    """The attn2 processors of the first (highest-resolution) down block that has cross-attention."""
    names = [layer.name for layer in family_for(pipe).attention_layers()
             if layer.role == "cross" and layer.block.startswith("down_blocks.")]
    if not names:
        raise DetectorError("bright_ending: the UNet has no cross-attention (attn2) layers in its down blocks")
    first = min(int(k.split(".")[1]) for k in names)
    return [k for k in names if int(k.split(".")[1]) == first]


class BrightEnding(Detector):
    """||(eps_c - eps_u) M||_2 / mean(M), M = the end token's last-step attention map (Chen et al.)."""

    name = "bright_ending"
    needs = frozenset({"cfg", "cross_attention"})
    paper = "Chen et al. 2025, Exploring Local Memorization in Diffusion Models via Bright Ending Attention"

    images: int = 4
    steps: int = 1
    seed: int = -1

    def __post_init__(self) -> None:
        if self.images < 1:
            raise DetectorError(f"bright_ending: images must be >= 1, got {self.images}")
        if self.steps < 0:
            raise DetectorError(f"bright_ending: steps must be >= 1, or 0 for every step, got {self.steps}")
        if self.seed < -1:
            raise DetectorError(f"bright_ending: seed must be >= 0, or -1 for each prompt's own seed, got {self.seed}")

    def score(self, pipe: "StableDiffusionPipeline", ctx: DetectionContext) -> list[float]:
        import torch

        n, k = len(ctx.prompts), self.images
        family = family_for(pipe)
        eos = family.end_token_positions(ctx.prompts)
        eos = [e for e in eos for _ in range(k)]  # one entry per image row, prompt-major
        base = [self.seed if self.seed >= 0 else r.seed for r in ctx.requests]
        latents = seeded_latents(pipe, [s + j for s in base for j in range(k)], latent_geometry(pipe, ctx.height, ctx.width))
        scheduler = copy.deepcopy(pipe.scheduler)
        scheduler.set_timesteps(ctx.num_inference_steps, device=latents.device)
        timesteps = scheduler.timesteps
        used = len(timesteps) if self.steps == 0 else min(self.steps, len(timesteps))
        layers = set(mask_layers(pipe))
        sink: list = []
        masked = torch.zeros(n * k, dtype=torch.float64)
        plain = torch.zeros(n * k, dtype=torch.float64)
        diffs = []
        with torch.no_grad():
            cond = encode_prompts(pipe, ctx.prompts).repeat_interleave(k, dim=0)
            embeds = torch.cat([encode_prompts(pipe, [""]).expand(n * k, -1, -1), cond])
            x = latents
            for s, t in enumerate(timesteps):
                last = s == len(timesteps) - 1
                capture = family.attention_processors(
                    lambda layer, current: EndTokenCapture(current, eos, sink) if layer.name in layers else None
                ) if last else contextlib.nullcontext()
                with capture:
                    model_in = scheduler.scale_model_input(torch.cat([x, x]), t)
                    eps_u, eps_c = family.predict(model_in, t, embeds).pair()
                if s < used:
                    diffs.append((eps_c - eps_u).float())
                if not last:
                    x = scheduler.step(eps_u + ctx.guidance_scale * (eps_c - eps_u), t, x).prev_sample
        maps = torch.stack(sink).mean(0)  # (rows, queries): mean over the block's layers
        height, width = latents.shape[-2:]
        scale = round(math.sqrt(height * width / maps.shape[1]))
        maps = maps.view(-1, 1, height // scale, width // scale)
        mask = torch.nn.functional.interpolate(maps, size=(height, width), mode="nearest")
        mean = mask.flatten(1).mean(dim=1)
        for d in diffs:
            masked += ((d * mask).flatten(1).norm(dim=1) / mean).double().cpu()
            plain += d.flatten(1).norm(dim=1).double().cpu()
        masked, plain = (masked / used).view(n, k).mean(1), (plain / used).view(n, k).mean(1)
        mean = mean.double().cpu().view(n, k).mean(1)
        for i in range(n):
            ctx.records[i].update(be_unmasked=float(plain[i]), be_mask_mean=float(mean[i]))
        return masked.tolist()
