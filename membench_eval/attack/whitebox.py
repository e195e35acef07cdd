"""White-box variant: the attacker optimises the prompt embedding itself against the mitigated model.

Where a deployed model takes embeddings (or its weights leak), an attacker need not search words:
starting from the trigger prompt's text-encoder output E, Adam maximises the same signal as the
black-box search, ``||eps(x_T, E) - eps(x_T, "")||^2`` at t = 999 on the shared seeded latent, with
the method's cross-attention processor installed (Ren, NeMo: the hooks the signal's UNet call goes
through; methods that edit embeddings or latents apply those edits to E when it is generated, as a
deployed pipeline would). Token 0 (BOS, prompt-independent) is frozen and every other token is
projected back to its original norm after each step, so E stays an embedding of text-encoder scale.

"Where the method allows it": a method that acts only on the prompt text (RNA, RTA) or replaces
generation (``generate``) cannot be attacked this way (an embedding bypasses a text rewrite, so the
number would be base's): its row reads n/a with the reason.

The optimised E is generated through the mitigated pipeline (``generate``: the method's own hooks run;
``SubmittedEmbedding`` puts E in place of the encoded prompt) and scored like every other image.
E is stored under ``<store>/attacks/whitebox/<key>.pt`` (content-addressed: a rerun is free).
Reported separately from the black-box search (a different budget: Adam steps, each one forward
and one backward pass over two UNet rows).

Budgeted variant (``budget``, the CLI's ``--whitebox-budget R``), after Kowalczuk et al., "Finding
Dori: Memorization in Text-to-Image Diffusion Models Is Not Local" (ICML 2026, arXiv 2507.16880):
small perturbations of a mitigated prompt's text embedding re-trigger replication after
weight-editing / pruning defenses such as NeMo. Their code (sprintml/finding_dori) could not be
read here, so the constraint is ours from the paper's description: the perturbation
delta = E - E0 of every token is projected after each Adam step onto the L2 ball
||delta_i||_2 <= R ||E0_i||_2 (R relative to the token's own norm, so one R means the same on every
text encoder); the objective stays the signal above, through the method's cross-attention
processor (NeMo's pruning) as installed. Without ``budget`` nothing changes (same store keys).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from membench_eval.attack.signal import ATTACK_SIGNAL_VERSION, identity_hash
from membench_eval.mitigation import BatchContext, Mitigation

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline

    from membench_eval.generation.settings import GenerationSettings

WHITEBOX_CODE_VERSION = "membench-attack-whitebox/v1"
DEFAULT_STEPS = 20
DEFAULT_LR = 0.05


def whitebox_reason(m: Mitigation) -> str | None:
    """Why the white-box attack does not apply to ``m`` (None: it does)."""
    if m.overrides("generate"):
        return "the method replaces generation; no embedding to submit"
    acts = [h for h in ("edit_embeddings", "edit_latents", "cross_attention_processor", "guidance", "on_step_end")
            if m.overrides(h)]
    if m.overrides("rewrite_prompt") and not acts:
        return "the method acts on the prompt text only; a submitted embedding bypasses it"
    return None


def optimise_embedding(pipe: "StableDiffusionPipeline", m: Mitigation, prompt: str, *, seed: int,
                       settings: "GenerationSettings", steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR,
                       budget: float | None = None) -> tuple["torch.Tensor", list[float]]:
    """E (1, tokens, dim) maximising the signal through ``m``'s cross-attention processor; the
    signal's value before each step and after the last. ``budget`` R: every token stays within
    R x its own norm of the encoded prompt (module docstring); None: tokens keep their norm."""
    import torch

    from membench_eval.detection.signal import last_train_timestep, latent_geometry, seeded_latents
    from membench_eval.generation.batch import build_context, cross_attention, encode_for_hooks
    from membench_eval.models.family import family_for
    from membench_eval.mitigation import ImageRequest

    ctx = build_context(pipe, [ImageRequest("whitebox", prompt, 0, int(seed))], settings)
    ctx.do_classifier_free_guidance = True
    family = family_for(pipe)
    with torch.no_grad():
        cond, uncond = encode_for_hooks(pipe, [prompt], ctx.device, True)
    norms = cond.float().norm(dim=-1, keepdim=True)
    origin = cond.detach().float().clone()
    embed = origin.clone().requires_grad_(True)
    latent = seeded_latents(pipe, [seed], latent_geometry(pipe, settings.height, settings.width))
    t = last_train_timestep(pipe)
    model_in = pipe.scheduler.scale_model_input(torch.cat([latent, latent]), t)
    processor = m.cross_attention_processor(pipe, ctx) if m.overrides("cross_attention_processor") else None
    opt = torch.optim.Adam([embed], lr=lr)
    history: list[float] = []
    frozen = [p for p in family.denoiser.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        with cross_attention(pipe, processor):
            for step in range(steps + 1):
                eps = family.predict(model_in, t, torch.cat([uncond.float(), embed]).to(uncond.dtype)).sample
                eps_u, eps_c = eps.float().chunk(2)
                signal = ((eps_c - eps_u) ** 2).sum()
                history.append(float(signal.detach()))
                if step == steps:
                    break
                opt.zero_grad()
                (-signal).backward()
                embed.grad[:, 0] = 0  # BOS carries no prompt
                opt.step()
                with torch.no_grad():
                    if budget is None:
                        embed.mul_(norms / embed.norm(dim=-1, keepdim=True).clamp_min(1e-8))
                    else:
                        embed.copy_(project_to_budget(embed, origin, norms, budget))
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return embed.detach().to(cond.dtype), history


def project_to_budget(embed: "torch.Tensor", origin: "torch.Tensor", norms: "torch.Tensor", budget: float) -> "torch.Tensor":
    """``origin`` + the perturbation clipped per token to L2 norm ``budget`` x the token's norm."""
    delta = embed - origin
    radius = budget * norms
    scale = (radius / delta.norm(dim=-1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)
    return origin + delta * scale


class SubmittedEmbedding(Mitigation):
    """The deployed pipeline of ``method`` fed the attacker's embedding instead of the encoded
    prompt: ``edit_embeddings`` puts E in, then the method's own hooks run as in generation."""

    name = "whitebox"

    method: str = ""  # the attacked method's label
    method_sha256: str = ""  # its source (part of the image key)
    embedding_sha256: str = ""

    def bind(self, method: Mitigation, embeds: dict[str, "torch.Tensor"]) -> "SubmittedEmbedding":
        self._method, self._embeds = method, embeds
        self.batch_by_prompt = method.batch_by_prompt  # type: ignore[misc]
        return self

    def setup(self, pipe: "StableDiffusionPipeline") -> Any:
        from membench_eval.generation.batch import cached_setup

        return cached_setup(pipe, self._method) if self._method.overrides("setup") else None

    def edit_embeddings(self, pipe, prompt_embeds, negative_prompt_embeds, latents, ctx: BatchContext):  # noqa: ANN001, ANN201
        import torch

        first = next(iter(self._embeds.values()))
        rows = [self._embeds.get(r.prompt_id, first) for r in ctx.requests]
        prompt_embeds = torch.cat(rows).to(device=prompt_embeds.device, dtype=prompt_embeds.dtype)
        if self._method.overrides("edit_embeddings"):
            return self._method.edit_embeddings(pipe, prompt_embeds, negative_prompt_embeds, latents, ctx)
        return prompt_embeds, negative_prompt_embeds

    def edit_latents(self, pipe, latents, prompt_embeds, negative_prompt_embeds, ctx):  # noqa: ANN001, ANN201
        return self._method.edit_latents(pipe, latents, prompt_embeds, negative_prompt_embeds, ctx)

    def cross_attention_processor(self, pipe, ctx):  # noqa: ANN001, ANN201
        return self._method.cross_attention_processor(pipe, ctx)

    def guidance(self, pipe, step, timestep, latents, eps_uncond, eps_cond, ctx):  # noqa: ANN001, ANN201
        return self._method.guidance(pipe, step, timestep, latents, eps_uncond, eps_cond, ctx)

    def on_step_end(self, pipe, step, timestep, callback_kwargs, ctx):  # noqa: ANN001, ANN201
        return self._method.on_step_end(pipe, step, timestep, callback_kwargs, ctx)


def embedding_sha256(embeds: "torch.Tensor") -> str:
    t = embeds.detach().to("cpu").float().contiguous()
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()


def stored_embedding(store_root: Path, key_fields: dict[str, Any], compute: Any) -> tuple["torch.Tensor", list[float], bool]:
    """E from ``<store>/attacks/whitebox/<key>.pt``, or ``compute()`` saved there; (E, history, computed now)."""
    import torch

    key = identity_hash({"code": WHITEBOX_CODE_VERSION, "signal": ATTACK_SIGNAL_VERSION, **key_fields})
    path = Path(store_root) / "attacks" / "whitebox" / key[:2] / f"{key}.pt"
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        return saved["embeds"], list(saved["history"].tolist()), False
    embeds, history = compute()
    from membench_eval.store.atomic import write_atomic

    buf = io.BytesIO()
    torch.save({"embeds": embeds.detach().to("cpu"), "history": torch.tensor(history, dtype=torch.float64)}, buf)
    write_atomic(path, buf.getvalue())
    return embeds, history, True
