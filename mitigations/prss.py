"""PRSS: prompt re-anchoring (PR) + semantic prompt search (SS), with the optional Bright Ending mask.

Chen, Liu, Shah, Xu. "Enhancing Privacy-Utility Trade-offs to Mitigate Memorization in Diffusion
Models". CVPR 2025 (arXiv 2504.18032): PRSS. The BE mask comes from Chen et al. "Exploring Local
Memorization in Diffusion Models via Bright Ending Attention". ICLR 2025. Both were checked against
their public code, chenchen-usyd/BE-PRSS @ fb2e942: ``local_sd_pipeline.py`` (``__call__`` PR
l.201-231, ``aug_prompt_ss`` l.788-949, ``aug_prompt`` l.538-747), ``inference_mem.py`` (mask
l.66-75, README PRSS command) and ``controller.py`` (the BE map).

Per image, at the first step on its own x_T (g = guidance scale, eps_u = empty prompt):

1. Detection: m = ||eps_c - eps_u||_2 of the ORIGINAL prompt. If m <= l_target_ss the image is not
   memorized: plain CFG, nothing else runs. Else it is "triggered" and SS + PR apply.
2. SS: a modified prompt embedding whose magnitude is <= l_target_ss. With ``candidates`` (the
   paper's way: paraphrases written by an LLM and stored with the data set), the first candidate
   whose magnitude is <= l_target_ss, else the one with the lowest magnitude (possibly the
   original). Without (the default; no LLM or paraphrase list exists offline): the repo's own
   Wen-style ``aug_prompt`` as the substitute, AdamW (lr 0.05) on the embedding, BOS fixed, up to
   10 steps, stopping once the magnitude is <= l_target_ss (the reference's ``--optim_target_loss``,
   1 in its README, is the same value).
3. PR, at every step: with eps_mod (modified prompt) and eps_orig (original prompt) at x_t,
   mag = ||eps_mod - eps_u||_2; if mag > l_target_pr::

       scaler = (g l_target_pr - mag_thres_pr) / (g - 1)
       s_pr   = min((mag - scaler) / (mag_thres_pr - scaler) g, g)
       eps    = eps_orig + s_pr (eps_mod - eps_orig) + (g - s_pr)(eps_mod - eps_u)

   else plain CFG on eps_mod. s_pr rises from 1 (= plain CFG) at l_target_pr to g at mag_thres_pr,
   where the memorized prompt has replaced the empty prompt as the guidance anchor.

Thresholds: the README's PRSS command, l_target_ss 1, l_target_pr 3, mag_thres_pr 5, for SD1.4
(4x64x64 latents, g 7.5, 50 DDIM steps, one image per call). The norms grow with the square root of
the latent size; on the 16x16x16 miniature model see the calibration in the tests' docstring. The
paper's sweep could not be read; ``sweep`` varies l_target_pr around the README's 3 (lower: PR fires
earlier and stronger) and is not the paper's.

BE mask (``be_mask``): M = the cross-attention map of the prompt's end token (first EOS position)
at the LAST step of a prior plain CFG run of the original prompt from the same x_T, conditional
half, mean over heads and over the attn2 layers of the highest-resolution down block that has
them (SD1.4: down_blocks.0, 64x64 = the latent size; the miniature model: down_blocks.1, 8x8,
resized to the latent size by nearest-neighbour). Raw probabilities. It replaces the detection and
SS magnitudes (and the Wen loss) by ||(eps_c - eps_u) M||_2 / mean(M); the PR magnitude stays
unmasked, as in the reference. The capturing processor is installed for that one UNet call only
and the original processors restored.

Cost in UNet rows per image (plain CFG sampling: 2 x steps): detection +2 (uncond and the original
prompt at x_T); triggered: SS + at most 11 (10 with a backward pass) or + at most one per
candidate; PR + 1 per step (the original prompt's conditional prediction; the reference recomputes
[uncond; original], 2 rows, but eps_u is the loop's own), i.e. the conditional calls are doubled.
The PR call runs on all rows of a batch in which any image is triggered (a fixed shape, so a row's
result does not depend on its neighbours). ``be_mask``: + 2 x steps (the mask's prior run).

Differences from the reference, documented: (1) all magnitudes are per image; the reference takes
one norm over the whole batch tensor (it grows like sqrt(batch); the README uses one image per
call), and decides trigger and PR per prompt. (2) SS without candidates uses the Wen-style
optimisation (the paper uses LLM paraphrases); BOS is not a parameter (the reference zeroes its
gradient but AdamW's weight decay still moves it); the returned embedding's magnitude is always
measured (one more row when the cap is hit). (3) The BE prior run skips the VAE decode and uses
copies of the image generators. (4) A candidates prompt missing from the file has no candidates:
SS keeps the original (as the reference with an empty list) and PR then lowers the scale only.

``candidates`` file formats (prompt text matched exactly, after strip): ``.json`` an object
{prompt: [candidate, ...]}; ``.jsonl`` one object per line with ``caption`` (or ``prompt``) and
``caption1``..``captionN`` (the reference's ``*_withss.jsonl``); ``.csv`` columns ``prompt`` and
``candidate``, one row per candidate, in order. The store key holds the path, not the content.
Records per image: ``prss_triggered``, ``prss_initial_magnitude``, ``prss_modified_magnitude``,
``prss_ss_iterations`` (optimisation) or ``prss_ss_candidate`` (0 = original, j = j-th candidate),
``prss_pr_steps`` (steps where re-anchoring fired). Padding requests are never triggered.

Families (``needs``: cfg, prompt_embeddings): the guidance vector and prompt-embedding noise: every
family with real CFG (IF: stage I); ``be_mask`` needs cross-attention down blocks (SD, SDXL) and
raises elsewhere.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from membench_eval.errors import MitigationError
from membench_eval.models import EndTokenCapture, family_for
from membench_eval.mitigation import BatchContext, Mitigation

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline


def reanchor(eps_uncond: "torch.Tensor", eps_mod: "torch.Tensor", eps_orig: "torch.Tensor", g: float,
             l_target_pr: float, mag_thres_pr: float) -> tuple["torch.Tensor", "torch.Tensor"]:
    """PR per row: (eps, fired), fired = ||eps_mod - eps_u||_2 > l_target_pr (else plain CFG)."""
    import torch

    mag = (eps_mod.float() - eps_uncond.float()).flatten(1).norm(dim=1)
    scaler = (g * l_target_pr - mag_thres_pr) / (g - 1)
    s = ((mag - scaler) / (mag_thres_pr - scaler) * g).clamp(max=g).to(eps_mod.dtype).view(-1, 1, 1, 1)
    pr = eps_orig + s * (eps_mod - eps_orig) + (g - s) * (eps_mod - eps_uncond)
    plain = eps_uncond + g * (eps_mod - eps_uncond)
    fired = mag > l_target_pr
    return torch.where(fired.view(-1, 1, 1, 1), pr, plain), fired


def magnitude(diff: "torch.Tensor", mask: "torch.Tensor | None" = None) -> "torch.Tensor":
    """Per row ||diff||_2, or with the BE mask ||diff M||_2 / mean(M) (M: (rows, 1, H, W))."""
    if mask is None:
        return diff.float().flatten(1).norm(dim=1)
    return (diff.float() * mask).flatten(1).norm(dim=1) / mask.flatten(1).mean(dim=1)


def load_candidates(path: str) -> dict[str, list[str]]:
    """The paraphrase candidates per prompt, from a .json / .jsonl / .csv file (see the module doc)."""
    p = Path(path)
    if not p.is_file():
        raise MitigationError(f"prss: candidates file {path!r} does not exist")
    out: dict[str, list[str]] = {}
    try:
        if p.suffix == ".json":
            for k, v in json.loads(p.read_text()).items():
                out[k.strip()] = [str(c) for c in v]
        elif p.suffix == ".jsonl":
            for line in p.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    keys = sorted((k for k in row if re.fullmatch(r"caption\d+", k)), key=lambda k: int(k[7:]))
                    out[str(row.get("caption", row.get("prompt"))).strip()] = [str(row[k]) for k in keys]
        elif p.suffix == ".csv":
            with p.open(newline="") as f:
                for row in csv.DictReader(f):
                    out.setdefault(row["prompt"].strip(), []).append(row["candidate"])
        else:
            raise MitigationError(f"prss: candidates file {path!r} must end in .json, .jsonl or .csv")
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        raise MitigationError(f"prss: candidates file {path!r} could not be read: {exc}") from None
    return out


class PRSS(Mitigation):
    """Detect at step 0 per image; if triggered, SS picks a modified embedding and PR re-anchors."""

    name = "prss"
    needs = frozenset({"cfg", "prompt_embeddings"})
    paper = ("Chen et al. 2025, Enhancing Privacy-Utility Trade-offs to Mitigate Memorization in Diffusion Models "
             "(+ BE: Exploring Local Memorization in Diffusion Models via Bright Ending Attention)")
    sweep = {"l_target_pr": [4.0, 3.0, 2.0]}
    strongest = {"l_target_pr": 2.0}

    # aug_prompt's optimiser (inference_mem.py argparse defaults), fixed by the method.
    LR: ClassVar[float] = 0.05
    MAX_ITERATIONS: ClassVar[int] = 10

    l_target_ss: float = 1.0
    l_target_pr: float = 3.0
    mag_thres_pr: float = 5.0
    be_mask: bool = False
    candidates: str = ""

    def __post_init__(self) -> None:
        if not (self.l_target_ss >= 0 and self.l_target_pr >= 0):
            raise MitigationError(f"prss: l_target_ss and l_target_pr must be >= 0, got {self.l_target_ss}, {self.l_target_pr}")
        if not self.mag_thres_pr > self.l_target_pr:
            raise MitigationError(f"prss: mag_thres_pr ({self.mag_thres_pr}) must be > l_target_pr ({self.l_target_pr})")
        self._candidates = load_candidates(self.candidates) if self.candidates else None

    def edit_embeddings(self, pipe: "StableDiffusionPipeline", prompt_embeds: "torch.Tensor",
                        negative_prompt_embeds: "torch.Tensor", latents: "torch.Tensor", ctx: BatchContext,
                        ) -> tuple["torch.Tensor", "torch.Tensor"]:
        import torch

        n = len(ctx.requests)
        while len(ctx.records) < n:
            ctx.records.append({})
        if not ctx.do_classifier_free_guidance or negative_prompt_embeds is None:
            return prompt_embeds, negative_prompt_embeds
        family = family_for(pipe)
        scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
        scheduler.set_timesteps(ctx.num_inference_steps, device=latents.device)
        t = scheduler.timesteps[0]
        mask = self.be_masks(pipe, prompt_embeds, negative_prompt_embeds, latents, ctx) if self.be_mask else None
        x = scheduler.scale_model_input(latents, t).to(family.dtype)
        with torch.no_grad():
            eps = family.predict(torch.cat([x, x]), t, torch.cat([negative_prompt_embeds, prompt_embeds])
                                 .to(family.dtype)).sample.float()
        eps_u, eps_c = eps.chunk(2)
        initial = magnitude(eps_c - eps_u, mask).tolist()
        triggered = [not r.padding and m > self.l_target_ss for r, m in zip(ctx.requests, initial)]
        edited = prompt_embeds.clone()
        for i in range(n):
            rec = ctx.records[i]
            rec.update(prss_triggered=triggered[i], prss_initial_magnitude=initial[i],
                       prss_modified_magnitude=initial[i], prss_pr_steps=0)
            rec["prss_ss_candidate" if self._candidates is not None else "prss_ss_iterations"] = 0
            if not triggered[i]:
                continue
            m_i = None if mask is None else mask[i:i + 1]
            if self._candidates is not None:
                emb, final, choice = self._select(pipe, ctx.prompts[i], prompt_embeds[i], x[i:i + 1], t, eps_u[i:i + 1],
                                                      m_i, initial[i])
                rec.update(prss_ss_candidate=choice)
            else:
                with torch.inference_mode(False), torch.enable_grad():
                    emb, final, steps = self._optimise(pipe, prompt_embeds[i].clone(), x[i:i + 1].clone(), t,
                                                       eps_u[i:i + 1].clone(), None if m_i is None else m_i.clone())
                rec.update(prss_ss_iterations=steps)
            edited[i] = emb.to(edited.dtype)
            rec.update(prss_modified_magnitude=final)
        ctx._prss = {"original": prompt_embeds.detach().clone(), "triggered": triggered}
        return edited, negative_prompt_embeds

    def guidance(self, pipe: "StableDiffusionPipeline", step: int, timestep: int, latents: "torch.Tensor",
                 eps_uncond: "torch.Tensor | None", eps_cond: "torch.Tensor", ctx: BatchContext) -> "torch.Tensor":
        import torch

        if eps_uncond is None:
            return eps_cond
        state = getattr(ctx, "_prss", None)
        if state is None or not any(state["triggered"]):
            return eps_uncond + ctx.guidance_scale * (eps_cond - eps_uncond)
        family = family_for(pipe)
        x = pipe.scheduler.scale_model_input(latents, timestep).to(family.dtype)
        eps_orig = family.predict(x, timestep, state["original"].to(family.dtype)).sample
        eps, fired = reanchor(eps_uncond, eps_cond, eps_orig.to(eps_cond.dtype), ctx.guidance_scale,
                              self.l_target_pr, self.mag_thres_pr)
        use = torch.tensor(state["triggered"], device=eps.device) & fired
        for i in use.nonzero().flatten().tolist():
            ctx.records[i]["prss_pr_steps"] += 1
        return torch.where(use.view(-1, 1, 1, 1), eps, eps_uncond + ctx.guidance_scale * (eps_cond - eps_uncond))

    def _optimise(self, pipe: "StableDiffusionPipeline", cond: "torch.Tensor", x: "torch.Tensor", t: Any,
                  eps_u: "torch.Tensor", mask: "torch.Tensor | None") -> tuple["torch.Tensor", float, int]:
        """aug_prompt on one image: AdamW on tokens 1.. until the magnitude <= l_target_ss."""
        import torch

        family = family_for(pipe)
        bos = cond[:1].detach().float()
        words = cond[1:].detach().float().clone().requires_grad_(True)
        optimizer = torch.optim.AdamW([words], lr=self.LR)
        final, steps = math.nan, 0
        for steps in range(self.MAX_ITERATIONS + 1):
            emb = torch.cat([bos, words])[None]
            eps_c = family.predict(x, t, emb.to(family.dtype)).sample
            loss = magnitude(eps_c.float() - eps_u, mask).sum()
            final = loss.item()
            if not math.isfinite(final):
                raise MitigationError(f"prss: the noise magnitude became {final} after {steps} AdamW steps")
            if final <= self.l_target_ss or steps == self.MAX_ITERATIONS:
                break
            (words.grad,) = torch.autograd.grad(loss, [words])
            optimizer.step()
        return torch.cat([bos, words.detach()]), final, steps

    def _select(self, pipe: "StableDiffusionPipeline", prompt: str, cond: "torch.Tensor", x: "torch.Tensor", t: Any,
                eps_u: "torch.Tensor", mask: "torch.Tensor | None", original: float) -> tuple["torch.Tensor", float, int]:
        """aug_prompt_ss on one image: first candidate <= l_target_ss, else the lowest (0 = original)."""
        import torch

        texts = self._candidates.get(prompt.strip(), [])
        if not texts:
            return cond, original, 0
        family = family_for(pipe)
        with torch.no_grad():
            embs = family.encode(texts, x.device).embeds
            mags = [original]
            for emb in embs:
                eps_c = family.predict(x, t, emb[None].to(family.dtype)).sample
                mags.append(magnitude(eps_c.float() - eps_u, mask).item())
                if mags[-1] <= self.l_target_ss:
                    break
        j = len(mags) - 1 if mags[-1] <= self.l_target_ss else min(range(len(mags)), key=mags.__getitem__)
        return (cond if j == 0 else embs[j - 1]), mags[j], j

    def be_masks(self, pipe: "StableDiffusionPipeline", cond: "torch.Tensor", uncond: "torch.Tensor",
                 latents: "torch.Tensor", ctx: BatchContext) -> "torch.Tensor":
        """BE mask per image, (images, 1, H, W): end-token attention at the last step of a plain run."""
        import torch

        family = family_for(pipe)
        layers = [layer.name for layer in family.attention_layers() if layer.block.startswith("down_blocks.")]
        if not layers:
            raise MitigationError("prss: be_mask needs cross-attention (attn2) layers in the UNet's down blocks")
        first = min(int(k.split(".")[1]) for k in layers)
        layers = [k for k in layers if int(k.split(".")[1]) == first]
        eos = family.end_token_positions(ctx.prompts)
        scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
        scheduler.set_timesteps(ctx.num_inference_steps, device=latents.device)
        gens = []
        for g in ctx.generators:
            gens.append(torch.Generator(device=g.device))
            gens[-1].set_state(g.get_state())
        extra = family.step_kwargs(gens or None, 0.0)
        emb = torch.cat([uncond, cond]).to(family.dtype)
        x, sink = latents.clone(), []
        with torch.no_grad():
            for i, t in enumerate(scheduler.timesteps):
                model_in = scheduler.scale_model_input(torch.cat([x, x]), t).to(family.dtype)
                if i < len(scheduler.timesteps) - 1:
                    e_u, e_c = family.predict(model_in, t, emb).pair()
                    x = scheduler.step(e_u + ctx.guidance_scale * (e_c - e_u), t, x, **extra).prev_sample
                    continue
                with family.attention_processors(
                    lambda layer, current: EndTokenCapture(current, eos, sink) if layer.name in layers else None
                ):
                    family.predict(model_in, t, emb)
        maps = torch.stack(sink).mean(0)  # (images, queries)
        height, width = latents.shape[-2:]
        scale = round(math.sqrt(height * width / maps.shape[1]))
        maps = maps.view(-1, 1, height // scale, width // scale)
        return torch.nn.functional.interpolate(maps, size=(height, width), mode="nearest")
