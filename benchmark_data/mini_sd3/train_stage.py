"""Flow-matching training of the tiny MMDiT and both text encoders (resumable, seeded).

Objective: rectified flow as SD3 (Esser et al. 2024, arXiv:2403.03206): x_t = (1 - s) x0 + s eps,
the transformer predicts the velocity eps - x0 at timestep 1000 s, plain MSE.

Timesteps: SD3's logit-normal density (u = sigmoid(n), n ~ N(0, 1)) mapped through the
scheduler's shift (3.0, SD3 medium's): s = 3u / (1 + 2u). Median s = 0.75, 84% of draws above
s = 0.5. Why: the mini (UNet, eps) measured that uniform timesteps fail at this budget (the model
never learnt which image a prompt asks for from pure noise) and trained with a density rising
linearly in t; SD3's own choice already puts most mass at high noise, and matches the shift the
shipped scheduler samples with, so the build keeps SD3's recipe rather than inventing one.

Batches: the mini's sampler (half memorized photos by duplication weight, half general scenes),
captions dropped to "" with probability 0.1 for classifier-free guidance. AdamW lr 1e-3,
one-cycle, grad clip 1 (the mini's settings).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from diffusion_stage import _sample_batch  # the mini's batch sampler (same tiers, same captions)
from model_stage import encode, tokenize
from zero_tokens import install

SHIFT = 3.0


def sample_sigmas(g, n: int, shift: float = SHIFT):
    """SD3 training noise levels: logit-normal(0, 1), shifted as the scheduler shifts."""
    import torch

    u = torch.sigmoid(torch.randn(n, generator=g))
    return shift * u / (1 + (shift - 1) * u)


def train_flow(transformer, text_encoders, tokenizer, latents, data, steps: int, seed: int, *,
               batch: int = 32, lr: float = 1e-3, dropout: float = 0.1, checkpoint: Path | None = None,
               checkpoint_every: int = 200, log=print, stop_after: int | None = None) -> None:
    """Train in place. Every ``checkpoint_every`` steps the weights, optimiser, schedule and RNG
    states go to ``checkpoint`` (atomically); a rerun resumes there and reaches the same weights.
    ``stop_after`` ends the run after that step (with a checkpoint), as a kill would: for tests."""
    import torch

    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    params = list(transformer.parameters()) + [p for e in text_encoders for p in e.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    start = 0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        transformer.load_state_dict(state["transformer"])
        for i, e in enumerate(text_encoders):
            e.load_state_dict(state[f"text_encoder_{i}"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        g.set_state(state["torch_rng"])
        rng.setstate((state["py_rng_version"], tuple(state["py_rng"].tolist()), None))
        start = int(state["step"])
        log(f"resumed flow training at step {start}/{steps} from {checkpoint}")
    previous, _ = install(transformer, count=256)  # one zero token == the pipeline's 256 (zero_tokens.py)
    token_cache: dict[str, torch.Tensor] = {}

    def ids(caps: list[str]):
        missing = [c for c in set(caps) if c not in token_cache]
        if missing:
            token_cache.update(zip(missing, tokenize(tokenizer, missing)))
        return torch.stack([token_cache[c] for c in caps])

    transformer.train()
    for e in text_encoders:
        e.train()
    t0 = time.time()
    for step in range(start, steps):
        items = _sample_batch(data, rng, batch)
        caps = ["" if rng.random() < dropout else c for _, c in items]
        x0 = latents[torch.tensor([i for i, _ in items])]
        noise = torch.randn(x0.shape, generator=g)
        s = sample_sigmas(g, batch)
        xt = (1 - s.view(-1, 1, 1, 1)) * x0 + s.view(-1, 1, 1, 1) * noise
        ctx, pooled = encode(text_encoders, ids(caps), t5_tokens=1)
        loss = (transformer(xt, ctx, pooled, s * 1000).sample - (noise - x0)).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        done = step + 1
        if step % 25 == 0 or done == steps:
            log(f"flow step {done}/{steps} loss {loss.item():.4f} lr {sched.get_last_lr()[0]:.2e} "
                f"({time.time() - t0:.0f}s)")
        if checkpoint is not None and (done % checkpoint_every == 0 or done in (steps, stop_after)):
            version, internal, _ = rng.getstate()
            state = {"transformer": transformer.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                     "torch_rng": g.get_state(), "py_rng": torch.tensor(internal, dtype=torch.int64),
                     "py_rng_version": version, "step": done,
                     **{f"text_encoder_{i}": e.state_dict() for i, e in enumerate(text_encoders)}}
            tmp = checkpoint.with_suffix(".tmp")
            torch.save(state, tmp)
            tmp.replace(checkpoint)
        if stop_after is not None and done >= stop_after:
            break
    transformer.set_attn_processor(previous)
    transformer.eval()
    for e in text_encoders:
        e.eval()
