"""The mini's VAE: an x4 AutoencoderKL with a wide latent, trained for near pixel-exact copies.

Why: SSCD at 64x64 punishes blur hard (a Gaussian blur of sigma 1.5 drops it to ~0.6), and a
generated copy can score no higher than its decoder's reconstruction of the photo: the VAE is the
ceiling of the whole benchmark. The encoder is trained with the decoder once; then the decoder
alone is fine-tuned on the frozen encoder's latents, with most of every batch memorized photos.
"""

from __future__ import annotations

import time

import numpy as np

from dataset import RES, Dataset


def to_tensor(images: list[np.ndarray]):
    import torch

    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(x) -> list[np.ndarray]:
    return list(((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy())


def build_vae(blocks: tuple[int, ...] = (32, 64, 64), latent_channels: int = 16):
    """AutoencoderKL, x4 downsampling with a wide latent (16x16x16).

    Why: 4-channel 16x16 latents cap SSCD(photo, reconstruction) near 0.5-0.6; x2 downsampling
    fixes that but makes every UNet step 4x dearer. Keeping x4 and widening the latent gives the
    same bottleneck size as x2 with a 16x16 UNet (the SD pipeline reads the channel count from
    ``unet.config.in_channels``). No mid-block attention: it costs more than it gives here.
    Blocks (32, 64, 64), twice v1's full-resolution width: with 16 photos at (16, 32, 64) the VAE
    stage reached SSCD(photo, reconstruction) 0.31 on average (textures 0.13-0.25).
    """
    from diffusers import AutoencoderKL

    n = len(blocks)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=latent_channels,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=blocks, layers_per_block=1, norm_num_groups=8, sample_size=RES,
        mid_block_add_attention=False,
    )


def _grad_l1(a, b):
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return (dx(a) - dx(b)).abs().mean() + (dy(a) - dy(b)).abs().mean()


def _recon_loss(y, x):
    return (y - x).abs().mean() + (y - x).pow(2).mean() + 0.5 * _grad_l1(y, x)


def _batch_indices(g, n_mem: int, n_all: int, batch: int, mem: int):
    import torch

    return torch.cat([torch.randint(0, n_mem, (mem,), generator=g),
                      torch.randint(n_mem, n_all, (batch - mem,), generator=g)])


def _one_cycle(params: list, loss, steps: int, lr: float, name: str, log) -> None:
    """``steps`` AdamW steps on ``loss()`` under a one-cycle schedule (both VAE stages train so)."""
    import torch

    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    t0 = time.time()
    for step in range(steps):
        value = loss()
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"{name} step {step}/{steps} loss {value.item():.4f} ({time.time() - t0:.0f}s)")


def train_vae(vae, data: Dataset, steps: int, seed: int, batch: int = 8, lr: float = 2e-3, device: str = "cpu", log=print):
    """Reconstruction training; half of every batch is memorized photos (they must decode sharply).

    Batches are drawn by a CPU generator on any ``device``, so a GPU build sees the same data."""
    import torch

    g = torch.Generator().manual_seed(seed)
    images = to_tensor([m for _, m in data.memorized] + [im for im, _ in data.general]).to(device)
    vae.to(device)

    def loss():
        x = images[_batch_indices(g, len(data.memorized), len(images), batch, batch // 2).to(device)]
        post = vae.encode(x).latent_dist
        # Decode the mean: sampling (std starts near 1) drowned the signal and kept outputs blurry
        # for hundreds of steps; txt2img only ever decodes, so a deterministic code loses nothing.
        return _recon_loss(vae.decode(post.mean).sample, x) + 1e-6 * post.kl().mean()

    vae.train()
    _one_cycle(list(vae.parameters()), loss, steps, lr, "vae", log)
    vae.eval().cpu()
    return vae


def finetune_decoder(vae, latents, data: Dataset, steps: int, seed: int, batch: int = 12, memorized_per_batch: int = 8,
                     lr: float = 2e-3, device: str = "cpu", log=print):
    """Decoder-only training on the frozen encoder's latents (cheaper than full VAE steps).

    Measured on mini v1: SSCD(photo, reconstruction) 0.44 after the VAE stage, 0.56-0.75 after
    1500 decoder steps (still climbing), so v2 runs longer and gives memorized photos 2/3 of
    every batch: generated copies are decoded from (near) those exact latents.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    images = to_tensor([m for _, m in data.memorized] + [im for im, _ in data.general]).to(device)
    latents = latents.to(device)
    vae.to(device)

    def loss():
        idx = _batch_indices(g, len(data.memorized), len(images), batch, memorized_per_batch).to(device)
        return _recon_loss(vae.decode(latents[idx]).sample, images[idx])

    vae.decoder.train()
    _one_cycle(list(vae.post_quant_conv.parameters()) + list(vae.decoder.parameters()), loss, steps, lr, "decoder", log)
    vae.eval().cpu()
    return vae


def encode_means(vae, images: list[np.ndarray], batch: int = 256):
    import torch

    with torch.no_grad():
        return torch.cat([vae.encode(to_tensor(images[i:i + batch])).latent_dist.mean for i in range(0, len(images), batch)])


def vae_recon(vae, images: list[np.ndarray]) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        return to_uint8(vae.decode(vae.encode(to_tensor(images)).latent_dist.mean).sample)
