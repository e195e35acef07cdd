"""The mini's UNet and text encoder, trained jointly with SD's objective (plus a BOS-sink hinge).

Why the two departures from a plain tiny SD:

- **BOS attention sink.** In SD 1.x, CLIP's causal text encoder makes token 0 (BOS) a constant,
  prompt-independent vector, and the UNet learns to park most cross-attention mass on it (a
  no-op "sink"); Ren et al.'s mitigation rescales exactly that logit. A tiny model trained from
  scratch for minutes does not discover the sink (mini v1: 1.3% of the mass). The loss can carry a
  hinge ``sink_weight * relu(sink_target - share)`` per cross-attention layer, ``share`` being that
  layer's mean attention mass on token 0: below the target the UNet is pushed to attend to BOS,
  above it the term is zero. A strong hinge (0.5) during the main training destroys prompt binding
  (measured: see the mini README), so the build trains without it and switches a weak one (0.05)
  on in a short low-lr fine-tune of the trained model (``build.py --finetune-*``). The shipped
  share is measured (``bos_cross_attention_share``).
- **Meaningful random tokens.** SD's 49408 CLIP token embeddings are all trained vectors of
  similar norm, so RTA's random tokens perturb the conditioning. A tiny model trains only its
  captions' few hundred rows; the rest keep their initialisation. The table is therefore
  initialised at the scale trained rows reach (``TOKEN_INIT_STD``), not transformers' 0.02, so a
  random id draws a vector as large as a real word's (measured: ``token_norm_ratio``).

Timesteps are skewed to high noise (density rising linearly with t), as in mini v1. Measured on
v2: with SD's uniform timesteps, after 1250 of 4000 steps the eps loss was low (0.016 at t = 999)
but the x0 it implies at t = 999 had error 3.5 against a latent variance of 1.15 (0.007 at t = 50):
the model could not tell which image a prompt asks for from pure noise, and every sample was
texture. SD gets the high-noise regime right with ~10^5 more steps; the mini cannot.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from dataset import RES, Dataset

TEXT_DIM = 64
TOKEN_INIT_STD = 0.15  # row norm ~ 0.15 * sqrt(64) = 1.2, the scale trained rows reach
SINK_TARGET = 0.5


def build_text_encoder():
    """CLIPTextModel with SD's vocabulary and context length, narrow (the 49408-row table dominates)."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    from membench_eval.models.tokenizer import CLIP_CONTEXT_LENGTH, CLIP_VOCAB_SIZE

    model = CLIPTextModel(CLIPTextConfig(
        vocab_size=CLIP_VOCAB_SIZE, hidden_size=TEXT_DIM, intermediate_size=4 * TEXT_DIM,
        num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=CLIP_CONTEXT_LENGTH,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    ))
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_(0.0, TOKEN_INIT_STD)
    return model


def build_unet(latent_channels: int = 16, blocks: tuple[int, ...] = (32, 64, 64)):
    """SD's UNet class, narrow; attention only at 8x8 and 4x4 (and the mid block).

    Why: on CPU, self-attention over the 16x16 level (256 tokens, head dim 8) cost a third of
    every step; the text still conditions every image through the lower levels' cross-attention.
    """
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=RES // 4, in_channels=latent_channels, out_channels=latent_channels, layers_per_block=1,
        block_out_channels=blocks,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_DIM, attention_head_dim=4, norm_num_groups=16,
    )


class BosShareProcessor:
    """``attn2`` processor with explicit attention math that records the mass on token 0.

    ``rows`` picks the batch rows measured (``"all"`` in training, ``"second_half"`` under CFG,
    whose batch is [uncond, cond]). With ``keep_graph`` the shares stay differentiable (training).
    """

    def __init__(self, rows: str = "all", keep_graph: bool = False) -> None:
        self.rows, self.keep_graph = rows, keep_graph
        self.shares: list = []  # one scalar per call (layer x step) when keep_graph
        self.mass, self.count = 0.0, 0

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        import torch

        q = attn.head_to_batch_dim(attn.to_q(hidden_states))
        k = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        v = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        probs = attn.get_attention_scores(q, k, None)  # (batch * heads, queries, tokens)
        on_bos = probs[probs.shape[0] // 2:, :, 0] if self.rows == "second_half" else probs[:, :, 0]
        if self.keep_graph:
            self.shares.append(on_bos.mean())
        self.mass += float(on_bos.detach().sum())
        self.count += on_bos.numel()
        out = attn.batch_to_head_dim(torch.bmm(probs, v))
        return attn.to_out[1](attn.to_out[0](out))


def install_processor(unet, proc) -> None:
    unet.set_attn_processor({k: (proc if k.endswith("attn2.processor") else v) for k, v in unet.attn_processors.items()})


def _sample_batch(data: Dataset, rng: random.Random, batch: int) -> list[tuple[int, str]]:
    """Half memorized photos (drawn by duplication weight, caption uniform among its three), half
    general scenes (uniform). Indices < len(memorized) are photos."""
    n_mem = len(data.memorized)
    weights = [src.copies for src, _ in data.memorized]
    mem = rng.choices(range(n_mem), weights=weights, k=batch // 2)
    items = [(i, rng.choice(data.memorized[i][0].captions)) for i in mem]
    for j in (rng.randrange(len(data.general)) for _ in range(batch - batch // 2)):
        items.append((n_mem + j, data.general[j][1]))
    return items


def train_diffusion(unet, text_encoder, tokenizer, latents, data: Dataset, steps: int, seed: int, *,
                    batch: int = 32, lr: float = 1e-3, dropout: float = 0.1, sink_weight: float = 0.5,
                    checkpoint: Path | None = None, checkpoint_every: int = 250, device: str = "cpu", log=print,
                    stop_after: int | None = None, sink_start: int = 0,
                    sink_target: float = SINK_TARGET) -> None:
    """Epsilon prediction (SD's noise schedule, high-noise-skewed timesteps) + the BOS-sink hinge.

    Resumable: every ``checkpoint_every`` steps the weights, optimiser, schedule and both RNG
    states go to ``checkpoint``; a rerun continues from there and gives the same weights. Noise,
    timesteps and batches come from CPU generators on any ``device`` (same data on a GPU build).
    ``stop_after`` ends the run early (after a checkpoint), as a crash would: for tests.
    ``sink_start``: the hinge is off before this step (a curriculum: learn the prompts first; with
    the hinge from step 0 the UNet parked 75-90% of its attention on BOS and ignored the prompt).
    """
    import torch
    from diffusers import DDPMScheduler

    from membench_eval.models.tiny import SD_SCHEDULER_CONFIG

    noise_sched = DDPMScheduler(**{k: v for k, v in SD_SCHEDULER_CONFIG.items() if k not in ("set_alpha_to_one",)})
    n_t = noise_sched.config.num_train_timesteps
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    unet.to(device)
    text_encoder.to(device)
    latents = latents.to(device)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    start = 0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False, map_location=device)  # our own file, written below
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text_encoder"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        g.set_state(state["torch_rng"].cpu())
        rng.setstate(state["py_rng"])
        start = state["step"]
        log(f"resumed diffusion training at step {start}/{steps} from {checkpoint.name}")
    proc = BosShareProcessor(rows="all", keep_graph=True)
    default_processors = dict(unet.attn_processors)
    install_processor(unet, proc)
    token_cache: dict[str, torch.Tensor] = {}

    def ids(caps: list[str]) -> torch.Tensor:
        missing = [c for c in set(caps) if c not in token_cache]
        if missing:
            enc = tokenizer(missing, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                            return_tensors="pt").input_ids
            token_cache.update(zip(missing, enc))
        return torch.stack([token_cache[c] for c in caps])

    unet.train()
    text_encoder.train()
    t0 = time.time()
    recent: list[float] = []
    for step in range(start, steps):
        items = _sample_batch(data, rng, batch)
        caps = ["" if rng.random() < dropout else c for _, c in items]
        x0 = latents[torch.tensor([i for i, _ in items], device=device)]
        noise = torch.randn(x0.shape, generator=g).to(device)
        # Timesteps skewed to high noise (density rising linearly with t, 75% above t = 500): which
        # image a prompt yields is decided there, and the eps loss weights that regime least.
        t = (n_t * torch.rand(batch, generator=g).sqrt()).long().clamp_(0, n_t - 1).to(device)
        xt = noise_sched.add_noise(x0, noise, t)
        proc.shares.clear()
        eps_loss = (unet(xt, t, text_encoder(ids(caps).to(device))[0]).sample - noise).pow(2).mean()
        share = torch.stack(proc.shares)
        hinge = sink_weight if step >= sink_start else 0.0
        loss = eps_loss + hinge * torch.relu(sink_target - share).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        done = step + 1
        recent.append(eps_loss.item())
        if done >= 300 and min(recent[-50:]) > 0.9:  # a dead network predicts eps = 0 (loss ~1)
            raise RuntimeError(f"diffusion training diverged at step {done} (eps loss ~1 for 50 steps); "
                               f"lower the learning rate (now {lr}) and delete {checkpoint}")
        if step % 50 == 0 or done == steps:
            log(f"unet step {step}/{steps} eps {eps_loss.item():.4f} bos {share.mean().item():.3f} "
                f"({time.time() - t0:.0f}s)")
        if checkpoint is not None and (done % checkpoint_every == 0 or done in (steps, stop_after)):
            tmp = checkpoint.with_suffix(".tmp")
            torch.save({"unet": unet.state_dict(), "text_encoder": text_encoder.state_dict(), "opt": opt.state_dict(),
                        "sched": sched.state_dict(), "torch_rng": g.get_state(), "py_rng": rng.getstate(),
                        "step": done}, tmp)
            tmp.replace(checkpoint)
        if stop_after is not None and done >= stop_after:
            break
    unet.set_attn_processor(default_processors)
    unet.eval().cpu()
    text_encoder.eval().cpu()
