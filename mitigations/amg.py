"""AMG: anti-memorization guidance (despecification, caption deduplication, dissimilarity).

Chen, Liu, Xu. "Towards Memorization-Free Diffusion Models". CVPR 2024. Checked against the public
code chenchen-usyd/AMG-sd @ d76d4c8 (submodule of chenchen-usyd/AMG): ``scripts/txt2img.py``
(``cond_fn``) and ``ldm/models/diffusion/ddim.py`` (``p_sample_ddim``).

ORACLE: AMG needs the training images. Here the "training set" is the memorized reference images
of ``suite`` (the leaderboard marks the method "oracle: uses the memorized images"). Per image and
DDIM step t (g = guidance scale, abar = alphas_cumprod[t], lambda_t = 0.3 + 0.1 exp(-0.005 t)):

1. sim = max cosine SSCD(decode(x0)) . SSCD(ref) over the references (argmax = nearest), with
   x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) from the plain CFG eps = eps_u + g (eps_c - eps_u).
2. G_spe: s1 = clip(13 sim, 0, g - 1); eps = eps_u + (g - s1)(eps_c - eps_u)  (applied if sim > 0).
3. G_dup: when sim > lambda_t (and for the 9 steps after, re-armed by any new trigger):
   eps += s2 (eps_u - eps(y_N)), s2 = clip((g - 1 - s1) / 0.3 * sim, 0, g - 1 - s1); y_N = caption
   of the nearest reference.
4. sim2 of x0 from that eps; if sim2 > lambda_t (G_sim):
   eps += sqrt(1 - abar) * 100 (sim2 - 0.3) exp((1000 - t) / 170) * grad_{x_t} sim2
   (the UNet is not differentiated; adding grad sim to eps moves x0 against it: less similar).
``scale`` (ours, not the paper's: it reports one setting) multiplies s1, s2 and the G_sim term;
scale 1 is the reference. Records per image: ``amg_max_sim`` (max step-1 sim), ``amg_final_sim``
(sim2 at the last step), ``amg_steps_spe`` / ``_dup`` / ``_sim`` (steps each guidance ran),
``amg_nearest`` (reference id nearest at the last step).

Cost per image and step, on top of plain CFG's 2 UNet rows: 2 VAE decodes + 2 SSCD forwards
(sim, sim2); while G_sim is on, one more decode with a backward through the decoder (and through
SSCD when it is a torch model; with the ONNX SSCD instead one more decode + SSCD forward, see
below); while G_dup is on, one extra UNet row on y_N (the reference runs 3 rows; eps_u and eps_c
are reused here; none when y_N is the image's own prompt, whose eps is eps_c). Measured on the mini
model (20 steps, 4 trigger prompts x 2 images, CPU): ~14 s per image vs ~0.6 s for base.

Differences from the reference, documented:
- y_N: the reference takes the most frequent LAION caption (> 20 of 1000 kNN neighbours, live
  clip-retrieval); here it is the suite's first trigger prompt that names the nearest image. The
  nearest image is searched among the suite's references, not a LAION kNN with downloads.
- The gradient: the reference backpropagates SSCD (TorchScript). The offline backend
  (``disc_mixup_onnx``, the mini suite) is int8 ONNX with no autograd; there sim/sim2 and the gates
  still come from that SSCD, but the direction of grad sim2 is that of a differentiable proxy, the
  cosine of mean-removed 32x32 box-downsampled pixels of decode(x0) and the nearest reference,
  rescaled to SSCD units: its norm is SSCD's own directional derivative along that direction, by
  a forward difference over a step of 5% of ||x0|| (one more decode + SSCD; on the mini model the
  estimate agrees within ~30% for steps of 2-10% and each G_sim step lowered SSCD). With a
  TorchScript SSCD (``disc_large``, sd1) the SSCD gradient itself is used. Images are mapped to
  [0, 1] (the reference fed SSCD decoded [-1, 1] pixels unnormalised); sim sees the suite's metric
  preprocessing (uint8, 288x288).
- On the mini model G_sim does the work: G_spe + G_dup alone left the copies' SSCD unchanged
  (0.39 vs base 0.38 mean over 8 trigger images); with G_sim 0.28. On general prompts only G_spe
  runs (nearest sim 0.15-0.18, so s1 ~ 2: guidance ~5.5 instead of 7.5), as in the code.
- The issue text gates all three guidances on sim > lambda_t; the code gates only G_dup and G_sim
  (G_spe runs whenever sim > 0). The code is followed. The cap 6.5 of the code is g - 1 (= 6.5 at
  g = 7.5). The reference's ``base_count > 20`` quirk (its first 21 samples get no AMG) is dropped.
- Per image: the reference handles a batch of one; here every row has its own sim, nearest image,
  G_dup countdown and gradient, decoded and embedded one row at a time (no batch-dependent result).

Families (``needs``: cfg, epsilon): x0 from the epsilon prediction under CFG: SD 1.x, SD 2 base
(512, epsilon), Realistic Vision, SDXL and IF stage I run it; SD 2 768-v, SD3 and FLUX (v or flow
predictions) read n/a.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from membench_eval.errors import MembenchError, MitigationError
from membench_eval.mitigation import BatchContext, Mitigation
from membench_eval.models import family_for

if TYPE_CHECKING:
    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline


class AMGState:
    """What setup loads: reference ids, captions, SSCD and proxy embeddings, y_N text embeddings.
    ``embed`` maps uint8 NHWC images to L2-normalised rows; ``torch_embed`` (optional) maps NCHW
    [0, 1] tensors to SSCD embeddings differentiably."""

    def __init__(self, pipe: "StableDiffusionPipeline", ids: list[str], images: list[Any], captions: list[str],
                 ref_emb: "np.ndarray", embed: Callable, torch_embed: Callable | None = None, info: str = ""):
        import numpy as np
        import torch
        from PIL import Image

        from membench_eval.metrics.preprocessing import to_rgb_image

        if not ids:
            raise MitigationError("amg: no reference images to guide away from")
        device = pipe._execution_device
        self.ids, self.captions, self.embed, self.torch_embed, self.info = ids, captions, embed, torch_embed, info
        self.ref_emb = torch.as_tensor(np.asarray(ref_emb, np.float32))
        size = (AMG.PROXY_SIZE, AMG.PROXY_SIZE)
        small = [np.asarray(to_rgb_image(im).resize(size, Image.Resampling.BOX), np.float32) / 255 for im in images]
        self.proxy = _normalise(torch.as_tensor(np.stack(small)).permute(0, 3, 1, 2).flatten(1)).to(device)
        unique = sorted(set(captions))
        with torch.no_grad():
            rows = family_for(pipe).encode(unique, device).embeds
        self.caption_embeds = {c: rows[k:k + 1] for k, c in enumerate(unique)}


def _normalise(v: "torch.Tensor") -> "torch.Tensor":
    v = v - v.mean(dim=1, keepdim=True)
    return v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _check_model(pipe: "StableDiffusionPipeline", suite: Any) -> None:
    """The oracle's memorized images must be those of the model being run: a pipeline loaded from
    a hub id or folder other than the suite's is a usage error (forgot ``--param suite=...``).
    Pipelines built in memory (tests) carry no name and are not checked."""
    from membench_eval.models import is_model, model_identity

    ident = model_identity(pipe)
    if ident["model"] == "in-memory" or is_model(pipe, suite.model):
        return
    path = ident.get("path")
    raise MitigationError(f"amg: the pipeline is {path or ident['model']!r} but suite {suite.name!r} (the oracle's "
                          f"memorized images) belongs to {suite.model!r}; pass --param suite=<the suite you run>")


class AMG(Mitigation):
    """Per image and step: G_spe, G_dup and G_sim from the SSCD similarity to the nearest reference."""

    name = "amg"
    needs = frozenset({"cfg", "epsilon"})
    paper = "Chen, Liu, Xu 2024, Towards Memorization-Free Diffusion Models (CVPR)"
    sweep = {"scale": [0.5, 1.0]}  # ours: the paper reports one setting (scale 1)
    strongest = {"scale": 1.0}
    setup_params = ("suite",)
    oracle: ClassVar[bool] = True  # uses the memorized images

    C1: ClassVar[float] = 13.0  # s1 = clip(6.5 / 0.5 * sim, 0, 6.5)
    LAMBDA: ClassVar[tuple[float, float, float]] = (0.3, 0.1, 0.005)  # a + b exp(-c t)
    S2_DIVISOR: ClassVar[float] = 0.3  # s2 = (g - 1 - s1) / 0.3 * sim
    SIM_OFFSET: ClassVar[float] = 0.3  # G_sim weight (sim - 0.3)
    C3: ClassVar[float] = 100.0  # cond_fn's guidance_scale
    TAU: ClassVar[float] = 170.0  # exp((1000 - t) / 170)
    DUP_STEPS: ClassVar[int] = 10  # G_dup stays on for the trigger step and 9 more
    PROXY_SIZE: ClassVar[int] = 32  # ours: proxy resolution (offline SSCD has no gradient)
    FD_STEP: ClassVar[float] = 0.05  # ours: forward-difference step, relative to ||x0||

    suite: str = "mini"
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.scale, (int, float)) and 0 < self.scale < math.inf):
            raise MitigationError(f"amg: scale must be a finite number > 0, got {self.scale!r}")
        if not isinstance(self.suite, str) or not self.suite:
            raise MitigationError(f"amg: suite must be a suite name, got {self.suite!r}")

    def setup(self, pipe: "StableDiffusionPipeline") -> AMGState:
        from membench_eval.metrics.sscd import TorchScriptSSCD, load_sscd, reference_embeddings, stack_embeddings
        from membench_eval.suites import get_suite
        from membench_eval.suites.references import reference_paths

        try:
            suite = get_suite(self.suite)
            paths, coverage = reference_paths(suite)
        except MembenchError as exc:
            raise MitigationError(f"amg: cannot load the reference set of suite {self.suite!r}: {exc}") from exc
        _check_model(pipe, suite)
        if not paths:
            missing = "; ".join(f"{k}: {v}" for k, v in list(coverage.unavailable.items())[:1])
            raise MitigationError(f"amg: suite {self.suite!r} has no memorized reference image available "
                                  f"({coverage.summary()}; e.g. {missing}); run `membench data fetch-references "
                                  f"--suite {self.suite}` first")
        try:
            sscd = load_sscd(suite.sscd_backend, device=str(pipe._execution_device))
        except MembenchError as exc:
            raise MitigationError(f"amg: cannot load SSCD {suite.sscd_backend!r} (suite {self.suite}): {exc}") from exc
        prompts = suite.trigger.prompts if suite.trigger is not None else ()
        ids = sorted(paths)
        captions = [next((p.text for p in prompts if i in p.memorized_ids), "") for i in ids]
        emb = stack_embeddings(reference_embeddings(sscd, paths), ids)
        torch_embed = _torchscript_embed(sscd.model, sscd.device) if isinstance(sscd, TorchScriptSSCD) else None
        return AMGState(pipe, ids, [paths[i] for i in ids], captions, emb,
                        lambda batch: sscd.embed(list(batch), batch_size=1), torch_embed,
                        info=f"{sscd.backend}; {coverage.summary()}")

    @classmethod
    def threshold(cls, t: int) -> float:
        """lambda_t of the code: asy(t, 0.3, 0.4, 0.005, 0) = 0.3 + 0.1 exp(-0.005 t)."""
        a, b, c = cls.LAMBDA
        return a + b * math.exp(-c * t)

    @classmethod
    def despecify(cls, sim: float, g: float) -> float:
        """s1 = clip(c1 sim, 0, g - 1)."""
        return min(max(cls.C1 * sim, 0.0), g - 1)

    @classmethod
    def dedup_scale(cls, sim: float, s1: float, g: float) -> float:
        """s2 = clip((g - 1 - s1) / 0.3 * sim, 0, g - 1 - s1)."""
        room = g - 1 - s1
        return min(max(room / cls.S2_DIVISOR * sim, 0.0), room)

    def guidance(self, pipe: "StableDiffusionPipeline", step: int, timestep: int, latents: "torch.Tensor",
                 eps_uncond: "torch.Tensor | None", eps_cond: "torch.Tensor", ctx: BatchContext) -> "torch.Tensor":
        if eps_uncond is None:
            raise MitigationError("amg: needs classifier-free guidance (guidance_scale > 1)")
        if pipe.scheduler.config.get("prediction_type", "epsilon") != "epsilon":
            raise MitigationError("amg: needs an epsilon-prediction model (x0 is predicted from eps)")
        state: AMGState = ctx.state
        g, t, n = ctx.guidance_scale, int(timestep), len(ctx.requests)
        countdown = vars(ctx).setdefault("_amg_dup_countdown", [self.DUP_STEPS] * n)  # dies with the batch
        while len(ctx.records) < n:
            ctx.records.append({})
        abar = float(pipe.scheduler.alphas_cumprod[t])
        lam = self.threshold(t)
        out = eps_uncond + g * (eps_cond - eps_uncond)
        for i, request in enumerate(ctx.requests):
            if request.padding:
                continue
            rec = ctx.records[i]
            for key in ("amg_steps_spe", "amg_steps_dup", "amg_steps_sim"):
                rec.setdefault(key, 0)
            x, e_u, e_c = latents[i:i + 1], eps_uncond[i:i + 1], eps_cond[i:i + 1]
            sim, near = self.similarity(pipe, state, x, out[i:i + 1], abar)
            rec["amg_max_sim"] = max(rec.get("amg_max_sim", -1.0), sim)
            if sim <= 0:  # as the code: no AMG at all
                rec.update(amg_final_sim=sim, amg_nearest=state.ids[near])
                continue
            s1 = self.despecify(sim, g)
            eps = e_u + (g - self.scale * s1) * (e_c - e_u)
            rec["amg_steps_spe"] += 1
            if sim > lam or countdown[i] != self.DUP_STEPS:
                countdown[i] = self.DUP_STEPS - 1 if sim > lam else countdown[i] - 1
                countdown[i] = countdown[i] or self.DUP_STEPS
                s2 = self.scale * self.dedup_scale(sim, s1, g)
                caption = state.captions[near]
                e_dup = e_c if caption == ctx.prompts[i] else self._unet(pipe, state, x, t, caption)
                eps = eps + s2 * (e_u - e_dup)
                rec["amg_steps_dup"] += 1
            sim2, near2 = self.similarity(pipe, state, x, eps, abar)
            rec.update(amg_final_sim=sim2, amg_nearest=state.ids[near2])
            if sim2 > lam:
                weight = math.sqrt(1 - abar) * self.C3 * (sim2 - self.SIM_OFFSET) * math.exp((1000 - t) / self.TAU)
                grad = self.sim_gradient(pipe, state, x, eps, abar, near2, sim2)
                eps = eps + self.scale * weight * grad.to(eps.dtype)
                rec["amg_steps_sim"] += 1
            out[i:i + 1] = eps
        return out

    @staticmethod
    def _unet(pipe: "StableDiffusionPipeline", state: AMGState, x: "torch.Tensor", t: int,
              caption: str) -> "torch.Tensor":
        """eps(x_t, y_N): one UNet row on the caption's embedding."""
        import torch

        family = family_for(pipe)
        with torch.no_grad():
            inp = pipe.scheduler.scale_model_input(x, t).to(family.dtype)
            emb = state.caption_embeds[caption].to(family.dtype)
            return family.predict(inp, t, emb).sample.to(x.dtype)

    @staticmethod
    def decode(pipe: "StableDiffusionPipeline", x: "torch.Tensor", eps: "torch.Tensor", abar: float) -> "torch.Tensor":
        """decode(x0) in [0, 1] (unclamped, NCHW), x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)."""
        x0 = (x - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
        return family_for(pipe).decode_tensor(x0).float() / 2 + 0.5

    def similarity(self, pipe: "StableDiffusionPipeline", state: AMGState, x: "torch.Tensor", eps: "torch.Tensor",
                   abar: float) -> tuple[float, int]:
        """SSCD cosine of decode(x0) (one row) to its nearest reference: (sim, reference index)."""
        import torch

        with torch.no_grad():
            image = self.decode(pipe, x, eps, abar)
        return self._nearest(state, image)

    @staticmethod
    def _nearest(state: AMGState, image: "torch.Tensor") -> tuple[float, int]:
        sims = AMG._sims(state, image)
        near = int(sims.argmax())
        return float(sims[near]), near

    @staticmethod
    def _sims(state: AMGState, image: "torch.Tensor") -> "torch.Tensor":
        """SSCD cosines of one decoded [0, 1] image to every reference (as uint8 pixels, as the metric)."""
        import numpy as np
        import torch

        pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return state.ref_emb @ torch.as_tensor(np.asarray(state.embed(pixels), np.float32))[0]

    def sim_gradient(self, pipe: "StableDiffusionPipeline", state: AMGState, x: "torch.Tensor", eps: "torch.Tensor",
                     abar: float, near: int, sim: float) -> "torch.Tensor":
        """grad_{x_t} sim (eps held fixed): SSCD's own with a torch SSCD, else the proxy direction
        scaled by SSCD's forward-difference directional derivative along it."""
        import torch

        with torch.inference_mode(False), torch.enable_grad():
            xg = x.detach().clone().float().requires_grad_(True)
            image = self.decode(pipe, xg, eps.detach().clone().float(), abar)
            if state.torch_embed is not None:
                score = (state.torch_embed(image)[0] * state.ref_emb[near].to(image.device)).sum()
            else:
                score = self.proxy_similarity(state, image, near)
            (grad,) = torch.autograd.grad(score, [xg])
        grad = grad.detach().to(x.dtype)
        if state.torch_embed is not None:
            return grad
        norm = float(grad.norm())
        if not norm > 0:
            return torch.zeros_like(x)
        unit = grad / norm
        x0 = (x.float() - math.sqrt(1 - abar) * eps.float()) / math.sqrt(abar)
        h = self.FD_STEP * float(x0.norm()) * math.sqrt(abar)  # moves x0 by FD_STEP * ||x0||
        with torch.no_grad():
            stepped = float(self._sims(state, self.decode(pipe, x + h * unit, eps, abar))[near])
        return unit * ((stepped - sim) / h)

    @staticmethod
    def proxy_similarity(state: AMGState, image: "torch.Tensor", near: int) -> "torch.Tensor":
        """Cosine of mean-removed PROXY_SIZE^2 box-downsampled pixels, image (one row) vs reference."""
        import torch.nn.functional as F

        v = _normalise(F.adaptive_avg_pool2d(image, AMG.PROXY_SIZE).flatten(1))
        return (v[0] * state.proxy[near].to(v.device)).sum()


def _torchscript_embed(model: Any, device: Any) -> Callable:
    """Differentiable SSCD (TorchScript): [0, 1] NCHW -> 288x288 bilinear (antialiased, as PIL) ->
    ImageNet normalisation -> L2-normalised embedding, in fp32."""
    import torch
    import torch.nn.functional as F

    from membench_eval.metrics.preprocessing import IMAGENET_MEAN, IMAGENET_STD

    def embed(image: "torch.Tensor") -> "torch.Tensor":
        x = F.interpolate(image.clamp(0, 1).float(), size=(288, 288), mode="bilinear", antialias=True,
                          align_corners=False)
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        out = model(((x - mean) / std).to(device)).float()
        return out / out.norm(dim=1, keepdim=True).clamp_min(1e-12)

    return embed
