"""A small time-dependent classifier p(y | x_t, t) and classifier guidance with it (SIDE's surrogate
condition; guidance as Dhariwal & Nichol 2021, in the noise-prediction form for DDIM).

SIDE (Chen et al. 2024) trains a time-dependent classifier on the unconditional model's OWN
generations, labelled by their clusters, and samples with its gradient as the condition:

    eps_hat(x_t, t) = eps(x_t, t) - scale * sqrt(1 - alpha_bar_t) * grad_x log p(y | x_t, t)

The network is a few strided convolutions with the diffusers sinusoidal timestep embedding added
after the first one; it is trained with cross-entropy on ``scheduler.add_noise(x0, noise, t)`` at
uniform random t, the noise the sampler will show it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def build_classifier(n_classes: int, in_channels: int = 3, width: int = 32) -> "torch.nn.Module":
    """conv(w) + t-emb -> conv(2w, /2) -> conv(2w, /2) -> conv(2w, /2) -> mean pool -> linear."""
    import torch
    from diffusers.models.embeddings import TimestepEmbedding, Timesteps
    from torch import nn

    class TimeClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.time_proj = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
            self.time_emb = TimestepEmbedding(width, width)
            self.stem = nn.Conv2d(in_channels, width, 3, padding=1)

            def block(cin: int, cout: int) -> nn.Module:
                return nn.Sequential(nn.GroupNorm(8, cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, stride=2, padding=1))

            self.body = nn.Sequential(block(width, 2 * width), block(2 * width, 2 * width), block(2 * width, 2 * width),
                                      nn.GroupNorm(8, 2 * width), nn.SiLU())
            self.head = nn.Linear(2 * width, n_classes)

        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            h = self.stem(x) + self.time_emb(self.time_proj(t).to(x.dtype))[:, :, None, None]
            return self.head(self.body(h).mean(dim=(2, 3)))

    return TimeClassifier()


def train_classifier(x0: "torch.Tensor", labels: "torch.Tensor", scheduler_config: dict[str, Any], *,
                     n_classes: int, steps: int, seed: int, batch_size: int = 64, lr: float = 2e-3,
                     width: int = 32) -> tuple["torch.nn.Module", dict[str, float]]:
    """Train on noised ``x0`` (n, C, H, W in [-1, 1]) with ``labels`` (n,); returns the model (eval
    mode, CPU) and its accuracy on the last batches, split at t < 500 and t >= 500."""
    import torch
    from diffusers import DDPMScheduler

    torch.manual_seed(seed)
    model = build_classifier(n_classes, x0.shape[1], width)
    sched = DDPMScheduler.from_config(scheduler_config)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    lr_at = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    n_t = sched.config.num_train_timesteps
    hits = {"low_t": [0, 0], "high_t": [0, 0]}
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(x0), (batch_size,), generator=gen)
        t = torch.randint(0, n_t, (batch_size,), generator=gen)
        xt = sched.add_noise(x0[idx], torch.randn(x0[idx].shape, generator=gen), t)
        logits = model(xt, t)
        loss = torch.nn.functional.cross_entropy(logits, labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lr_at.step()
        if step >= steps - max(1, steps // 10):
            right = (logits.argmax(1) == labels[idx]).detach()
            for name, mask in (("low_t", t < n_t // 2), ("high_t", t >= n_t // 2)):
                hits[name][0] += int(right[mask].sum())
                hits[name][1] += int(mask.sum())
    model.eval().requires_grad_(False)
    return model, {f"accuracy_{k}": (h / m if m else float("nan")) for k, (h, m) in hits.items()}


def guidance(classifier: "torch.nn.Module", targets: "torch.Tensor", scheduler_config: dict[str, Any],
             scale: float):
    """The ``guide(x_t, t, eps, rows)`` hook for ``ddim_sample``: classifier guidance toward
    ``targets[rows]`` (one class per generated image; ``rows`` are the batch's image indices)."""
    import torch
    from diffusers import DDPMScheduler

    alphas = DDPMScheduler.from_config(scheduler_config).alphas_cumprod

    def guide(x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        y = targets[rows.cpu()].to(x.device)
        with torch.enable_grad():
            xin = x.detach().requires_grad_(True)
            logp = torch.log_softmax(classifier(xin, t), dim=1)
            grad = torch.autograd.grad(logp[torch.arange(x.shape[0]), y].sum(), xin)[0]
        sigma = (1 - alphas[t.cpu()]).sqrt().to(x.device, x.dtype).view(-1, 1, 1, 1)
        return eps - scale * sigma * grad

    return guide


def state_arrays(model: "torch.nn.Module") -> dict[str, Any]:
    """The state dict as numpy arrays (for the stage cache)."""
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def load_state_arrays(model: "torch.nn.Module", arrays: dict[str, Any]) -> "torch.nn.Module":
    import torch

    model.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items() if not k.startswith("meta_")})
    return model.eval().requires_grad_(False)
