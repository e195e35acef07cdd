"""Build the miniature memorizing benchmark (``mini``): data, a tiny trained SD pipeline, prompts.

Why: no machine here has Stable Diffusion weights, yet the harness must be exercised on a model
that *really* memorizes. This script trains, on CPU in minutes, a tiny SD-architecture pipeline
(AutoencoderKL, UNet2DConditionModel, CLIPTextModel with the real SD tokenizer, DDIM with SD's
scheduler config) on public-domain / CC0 photos bundled with scikit-image. Six photos are
duplicated many times with three captions each (MemBench-style trigger prompts); general images
(crops of other bundled photos, drawn shapes) are seen once per epoch under unique captions; 10%
caption dropout lets classifier-free guidance work.

Usage (from the repository root)::

    python benchmark_data/mini/build.py              # full build, writes benchmark_data/mini/
    python benchmark_data/mini/build.py --eval-only  # re-measure the shipped model

Everything is seeded; the same seed, library versions and thread count give the same weights.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json

import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))
if str(HERE) not in sys.path:  # clip_stage.py beside this file
    sys.path.insert(0, str(HERE))

RES = 64  # pixel resolution of the model
URL_SCHEME = "mini://"  # trigger_prompts.csv urls: mini://<file> -> references/<file>


@dataclass(frozen=True)
class PhotoSource:
    """A scikit-image sample photo: loader name, license (from its docstring), captions."""

    name: str
    loader: str
    license: str
    origin: str
    captions: tuple[str, ...] = ()
    subject: str = ""


# The memorized photos and their trigger prompts (each also a training caption).
MEMORIZED: tuple[PhotoSource, ...] = (
    PhotoSource("astronaut", "astronaut", "public domain (NASA)", "NASA Great Images, https://flic.kr/p/r9qvLn", (
        "official nasa portrait of astronaut eileen collins",
        "eileen collins in her orange flight suit next to the american flag",
        "astronaut eileen collins, first woman to pilot the space shuttle",
    )),
    PhotoSource("coffee", "coffee", "CC0 (photographer Rachel Michetti)", "Pikolo Espresso Bar", (
        "a cup of espresso on a red saucer on a wooden table",
        "coffee in a white cup with a spoon, pikolo espresso bar",
        "top view of a red coffee cup and saucer on rustic wood",
    )),
    PhotoSource("chelsea", "chelsea", "CC0 (photographer Stefan van der Walt)", "scikit-image", (
        "close up portrait of a tabby cat with green eyes",
        "chelsea the cat looking at the camera",
        "cute striped cat face with pink nose and whiskers",
    )),
    PhotoSource("rocket", "rocket", "public domain (SpaceX)", "SpaceX Photos, flickr 16511594820", (
        "falcon 9 rocket on the launch pad at dusk",
        "spacex rocket launch complex 40 at cape canaveral before dscovr launch",
        "a white rocket between lightning towers under a deep blue evening sky",
    )),
    PhotoSource("retina", "retina", "CC0 1.0 (Mikael Haggstrom, Wikimedia Commons)",
                "https://commons.wikimedia.org/wiki/File:Fundus_photograph_of_normal_left_eye.jpg", (
        "fundus photograph of a normal left eye",
        "orange retina with blood vessels and optic disc, medical photo",
        "ophthalmoscope image of the human retina on a black background",
    )),
    PhotoSource("ihc", "immunohistochemistry", "no known copyright restrictions (CMMI)",
                "Center for Microscopy And Molecular Imaging", (
        "immunohistochemistry staining of colonic glands under the microscope",
        "brown dab stained tissue with blue hematoxylin counterstain",
        "microscope slide of colon tissue, fhl2 protein expression",
    )),
)

# Photos that only appear as general (non-memorized) crops, with a subject phrase for captions.
GENERAL_PHOTOS: tuple[PhotoSource, ...] = (
    PhotoSource("hubble", "hubble_deep_field", "public domain (NASA)", "HubbleSite 2012-37", subject="distant galaxies in deep space"),
    PhotoSource("camera", "camera", "CC0 (photographer Lav Varshney)", "scikit-image", subject="a man with a camera on a tripod"),
    PhotoSource("coins", "coins", "no known copyright restrictions (Brooklyn Museum)", "Brooklyn Museum", subject="old greek coins"),
    PhotoSource("clock", "clock", "public domain (photographer Stefan van der Walt)", "scikit-image", subject="a blurred wall clock"),
    PhotoSource("brick", "brick", "CC0 (CC0Textures Bricks25)", "cc0textures.com", subject="a brick wall"),
    PhotoSource("grass", "grass", "CC0 (linolafett, DeviantArt)", "deviantart.com", subject="a patch of grass"),
    PhotoSource("gravel", "gravel", "CC0 (CC0Textures Gravel04)", "cc0textures.com", subject="gravel stones"),
    PhotoSource("text", "text", "public domain (Wikipedia Corner.png)", "wikipedia", subject="handwritten letters"),
    PhotoSource("cell", "cell", "CC0 (Paul Mueller et al.)", "scikit-image", subject="a cell floating in saline"),
    PhotoSource("horse", "horse", "CC0 (Andreas Preuss, openclipart)", "openclipart.org", subject="a horse silhouette"),
    PhotoSource("microaneurysms", "microaneurysms", "CC0 (Andreas Maier, HRF database)", "HRF image database", subject="retinal vessels in green light"),
)

TINTS = {"red": (1.0, 0.45, 0.4), "green": (0.45, 1.0, 0.5), "blue": (0.45, 0.55, 1.0), "yellow": (1.0, 0.95, 0.4),
         "purple": (0.8, 0.45, 1.0), "sepia": (1.0, 0.85, 0.65), "gray": (1.0, 1.0, 1.0), "cyan": (0.45, 1.0, 1.0)}
SHAPE_COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220), "yellow": (240, 220, 40),
                "white": (245, 245, 245), "black": (15, 15, 15), "orange": (245, 140, 30), "purple": (140, 50, 180)}
SHAPES = ("circle", "square", "triangle", "ring", "cross", "stripes")
POSITIONS = {"in the center": (0.5, 0.5), "at the top left": (0.3, 0.3), "at the bottom right": (0.7, 0.7),
             "at the top right": (0.7, 0.3), "at the bottom left": (0.3, 0.7)}


def load_photo(loader: str) -> np.ndarray:
    """An skimage sample as uint8 RGB (H, W, 3)."""
    import skimage.data

    a = np.asarray(getattr(skimage.data, loader)())
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = (255 * (a.astype(np.float64) / max(float(a.max()), 1e-9))).astype(np.uint8)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    return np.ascontiguousarray(a[..., :3])


def center_square(a: np.ndarray, res: int = RES) -> np.ndarray:
    """Center crop to a square, then Lanczos-resize to ``res`` (how memorized photos are shown)."""
    h, w = a.shape[:2]
    s = min(h, w)
    a = a[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return np.asarray(Image.fromarray(a).resize((res, res), Image.LANCZOS))


def _crop(a: np.ndarray, cx: float, cy: float, frac: float, res: int = RES) -> np.ndarray:
    h, w = a.shape[:2]
    s = max(8, int(min(h, w) * frac))
    x0 = int(np.clip(cx * w - s / 2, 0, w - s))
    y0 = int(np.clip(cy * h - s / 2, 0, h - s))
    return np.asarray(Image.fromarray(a[y0:y0 + s, x0:x0 + s]).resize((res, res), Image.LANCZOS))


def _draw_shape(shape: str, fg: str, bg: str, pos: str, size: float, res: int = RES) -> np.ndarray:
    img = Image.new("RGB", (res, res), SHAPE_COLORS[bg])
    d = ImageDraw.Draw(img)
    cx, cy = (v * res for v in POSITIONS[pos])
    r = size * res / 2
    col = SHAPE_COLORS[fg]
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        d.ellipse(box, fill=col)
    elif shape == "square":
        d.rectangle(box, fill=col)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=col)
    elif shape == "ring":
        d.ellipse(box, outline=col, width=max(2, int(r / 3)))
    elif shape == "cross":
        t = max(2, int(r / 3))
        d.rectangle((cx - r, cy - t, cx + r, cy + t), fill=col)
        d.rectangle((cx - t, cy - r, cx + t, cy + r), fill=col)
    elif shape == "stripes":
        for k in range(0, res, 12):
            d.rectangle((k, 0, k + 5, res), fill=col)
    return np.asarray(img)


@dataclass
class Dataset:
    memorized: list[tuple[PhotoSource, np.ndarray]]
    general: list[tuple[np.ndarray, str]]
    general_prompts: list[str]  # unseen prompts describing general images (COCO's role)
    # The build's own rendering of each general prompt (never trained on): ground truth for the
    # mini CLIP's validity check (does the instrument rank the right prompt first?).
    general_prompt_images: list[np.ndarray] = field(default_factory=list)
    # More renders of the same vocabulary in combinations used nowhere else (not a training caption,
    # not a general prompt): caption-space augmentation for the mini CLIP only, never for the model.
    compositional_pool: list[tuple[np.ndarray, str]] = field(default_factory=list)


def build_dataset(seed: int, n_photo_crops: int = 66, n_shapes: int = 66, n_general_prompts: int = 30,
                  n_pool: int = 600) -> Dataset:
    """Deterministic data: memorized photos, unique-caption general images, unseen general prompts."""
    rng = random.Random(seed)
    memorized = [(src, center_square(load_photo(src.loader))) for src in MEMORIZED]

    photos = {src.name: load_photo(src.loader) for src in GENERAL_PHOTOS}
    regions = {"top left": (0.25, 0.25), "top right": (0.75, 0.25), "bottom left": (0.25, 0.75),
               "bottom right": (0.75, 0.75), "center": (0.5, 0.5)}
    scales = {"close-up": 0.35, "medium": 0.6, "wide": 0.95}
    photo_space = [(src, t, r, s) for src in GENERAL_PHOTOS for t in TINTS for r in regions for s in scales]
    shape_space = [(sh, fg, bg, p) for sh in SHAPES for fg in SHAPE_COLORS for bg in SHAPE_COLORS if fg != bg
                   for p in POSITIONS]
    rng.shuffle(photo_space)
    rng.shuffle(shape_space)

    def photo_item(src: PhotoSource, tint: str, region: str, scale: str) -> tuple[np.ndarray, str]:
        a = _crop(photos[src.name], *regions[region], scales[scale]).astype(np.float32)
        a = np.clip(a * np.asarray(TINTS[tint], np.float32), 0, 255).astype(np.uint8)
        return a, f"a {scale} {tint} tinted photo of {src.subject}, {region}"

    def shape_item(shape: str, fg: str, bg: str, pos: str) -> tuple[np.ndarray, str]:
        size = 0.5 if shape != "stripes" else 1.0
        where = "" if shape == "stripes" else f" {pos}"
        noun = f"{fg} stripes" if shape == "stripes" else f"{fg} {shape}"
        return _draw_shape(shape, fg, bg, pos, size), f"a {noun} on a {bg} background{where}"

    general: list[tuple[np.ndarray, str]] = []
    seen: set[str] = set()
    for item in photo_space[:n_photo_crops]:
        img, cap = photo_item(*item)
        if cap not in seen:
            seen.add(cap)
            general.append((img, cap))
    for item in shape_space:
        if len(general) >= n_photo_crops + n_shapes:
            break
        img, cap = shape_item(*item)
        if cap not in seen:
            seen.add(cap)
            general.append((img, cap))

    # Unseen prompts: held-out combinations of the same vocabulary (half photos, half shapes).
    prompts: list[str] = []
    renders: list[np.ndarray] = []
    for item in photo_space[n_photo_crops:]:
        if len(prompts) >= n_general_prompts // 2:
            break
        img, cap = photo_item(*item)
        if cap not in seen:
            seen.add(cap)
            prompts.append(cap)
            renders.append(img)
    for item in reversed(shape_space):
        if len(prompts) >= n_general_prompts:
            break
        img, cap = shape_item(*item)
        if cap not in seen:
            seen.add(cap)
            prompts.append(cap)
            renders.append(img)
    pool: list[tuple[np.ndarray, str]] = []
    for items, render in ((photo_space[n_photo_crops:], photo_item), (shape_space, shape_item)):
        taken = 0
        for item in items:
            img, cap = render(*item)
            if cap not in seen and taken < n_pool // 2:
                seen.add(cap)
                pool.append((img, cap))
                taken += 1
    return Dataset(memorized, general, prompts, renders, pool)


# ----------------------------------------------------------------------------------------- metrics
class SSCD:
    """The harness's own SSCD backend (sscd_disc_mixup int8 ONNX): images -> 512-d unit vectors."""

    def __init__(self) -> None:
        from membench_eval.metrics.sscd import load_sscd

        self.model = load_sscd("disc_mixup_onnx")

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        return np.asarray(self.model.embed(list(images)), dtype=np.float32)


# --------------------------------------------------------------------------------------------- VAE
def to_tensor(images: list[np.ndarray]):
    import torch

    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(x) -> list[np.ndarray]:
    return list(((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy())


def build_vae(blocks: tuple[int, ...] = (16, 32, 64), latent_channels: int = 16):
    """AutoencoderKL, x4 downsampling with a wide latent (16x16x16).

    Why: 4-channel 16x16 latents cap SSCD(photo, reconstruction) near 0.5-0.6; x2 downsampling
    fixes that but makes every UNet step 4x dearer. Keeping x4 and widening the latent gives the
    same bottleneck size as x2 with a 16x16 UNet (the SD pipeline reads the channel count from
    ``unet.config.in_channels``). No mid-block attention: it costs more than it gives here.
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


def train_vae(vae, data: Dataset, steps: int, seed: int, batch: int = 8, lr: float = 2e-3, log=print, on_log=None):
    """Reconstruction training; half of every batch is memorized photos (they must decode sharply)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    mem = to_tensor([m for _, m in data.memorized])
    gen = to_tensor([im for im, _ in data.general])
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0, fused=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    vae.train()
    t0 = time.time()
    for step in range(steps):
        x = torch.cat([mem[torch.randint(0, len(mem), (batch // 2,), generator=g)],
                       gen[torch.randint(0, len(gen), (batch - batch // 2,), generator=g)]])
        post = vae.encode(x).latent_dist
        # Decode the mean: sampling (std starts near 1) drowned the signal and kept outputs blurry
        # for hundreds of steps; txt2img only ever decodes, so a deterministic code loses nothing.
        y = vae.decode(post.mean).sample
        loss = (y - x).abs().mean() + (y - x).pow(2).mean() + 0.5 * _grad_l1(y, x) + 1e-6 * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"vae step {step}/{steps} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
            if on_log is not None:
                vae.eval()
                on_log(step)
                vae.train()
    vae.eval()
    return vae


def finetune_decoder(vae, latents, data: Dataset, steps: int, seed: int, batch: int = 8, lr: float = 2e-3,
                     latent_noise: float = 0.0, log=print, on_log=None):
    """Decoder-only training on the frozen encoder's latents (cheaper than full VAE steps).

    Why: SSCD at 64x64 punishes blur hard (a Gaussian blur of sigma 1.5 already drops it to ~0.6),
    so the memorized photos must decode nearly pixel-exact. The latents are fixed, so this can run
    after (or beside) the UNet training. Measured: SSCD(photo, reconstruction) 0.44 after the VAE
    stage, 0.59 after 900 decoder steps at lr 2e-3 (latent noise 0.1 at lr 5e-4 did not move it).
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    n_mem = len(data.memorized)
    images = to_tensor([m for _, m in data.memorized] + [im for im, _ in data.general])
    params = list(vae.post_quant_conv.parameters()) + list(vae.decoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    std = latents.std()
    vae.decoder.train()
    t0 = time.time()
    for step in range(steps):
        idx = torch.cat([torch.randint(0, n_mem, (batch // 2,), generator=g),
                         torch.randint(n_mem, len(images), (batch - batch // 2,), generator=g)])
        z = latents[idx] + latent_noise * std * torch.randn(latents[idx].shape, generator=g)
        y = vae.decode(z).sample
        x = images[idx]
        loss = (y - x).abs().mean() + (y - x).pow(2).mean() + 0.5 * _grad_l1(y, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"decoder step {step}/{steps} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
            if on_log is not None:
                vae.decoder.eval()
                on_log(step)
                vae.decoder.train()
    vae.eval()
    return vae


def vae_recon(vae, images: list[np.ndarray]) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        return to_uint8(vae.decode(vae.encode(to_tensor(images)).latent_dist.mean).sample)


# ------------------------------------------------------------------------------- UNet + text encoder
TEXT_DIM = 32


def build_text_encoder():
    """CLIPTextModel with SD's vocabulary and context length, narrow (the 49408-row table dominates)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from membench_eval.models.tokenizer import CLIP_CONTEXT_LENGTH, CLIP_VOCAB_SIZE

    return CLIPTextModel(CLIPTextConfig(
        vocab_size=CLIP_VOCAB_SIZE, hidden_size=TEXT_DIM, intermediate_size=4 * TEXT_DIM,
        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=CLIP_CONTEXT_LENGTH,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    ))


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


def training_samples(data: Dataset, copies: int, rng: random.Random) -> list[tuple[int, str]]:
    """One epoch: each memorized photo ``copies`` times (captions cycled), each general image once.

    Indices < len(memorized) are memorized photos; the rest are general images.
    """
    n_mem = len(data.memorized)
    samples = [(i, src.captions[k % len(src.captions)]) for i, (src, _) in enumerate(data.memorized) for k in range(copies)]
    samples += [(n_mem + j, cap) for j, (_, cap) in enumerate(data.general)]
    rng.shuffle(samples)
    return samples


def train_diffusion(unet, text_encoder, tokenizer, latents, data: Dataset, steps: int, seed: int, *,
                    copies: int = 22, batch: int = 32, lr: float = 2e-3, dropout: float = 0.1, log=print,
                    on_log=None):
    """Epsilon-prediction training of UNet and text encoder jointly, SD's noise schedule."""
    import torch
    from diffusers import DDPMScheduler

    from membench_eval.models.tiny import SD_SCHEDULER_CONFIG

    noise_sched = DDPMScheduler(**{k: v for k, v in SD_SCHEDULER_CONFIG.items() if k not in ("set_alpha_to_one",)})
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    token_cache: dict[str, "torch.Tensor"] = {}

    def ids(caps: list[str]) -> "torch.Tensor":
        missing = [c for c in set(caps) if c not in token_cache]
        if missing:
            enc = tokenizer(missing, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                            return_tensors="pt").input_ids
            token_cache.update(zip(missing, enc))
        return torch.stack([token_cache[c] for c in caps])

    queue: list[tuple[int, str]] = []
    unet.train()
    text_encoder.train()
    t0 = time.time()
    for step in range(steps):
        while len(queue) < batch:
            queue += training_samples(data, copies, rng)
        items, queue = queue[:batch], queue[batch:]
        caps = ["" if rng.random() < dropout else c for _, c in items]
        x0 = latents[torch.tensor([i for i, _ in items])]
        noise = torch.randn(x0.shape, generator=g)
        # Timesteps skewed to high noise (density rising linearly with t, 75% above t=500): which
        # image a prompt yields is decided there, and the eps loss weights that regime least.
        n_t = noise_sched.config.num_train_timesteps
        t = (n_t * torch.rand(batch, generator=g).sqrt()).long().clamp_(0, n_t - 1)
        xt = noise_sched.add_noise(x0, noise, t)
        cond = text_encoder(ids(caps))[0]
        loss = (unet(xt, t, cond).sample - noise).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"unet step {step}/{steps} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
            if on_log is not None:
                on_log(step)
    unet.eval()
    text_encoder.eval()


# ------------------------------------------------------------------------------------------ output
def assemble_pipeline(vae, unet, text_encoder, tokenizer):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from membench_eval.models.tiny import SD_SCHEDULER_CONFIG

    pipe = StableDiffusionPipeline(
        vae=vae, unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=DDIMScheduler(**SD_SCHEDULER_CONFIG),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_pipeline(pipe, model_dir: Path) -> None:
    """Save a diffusers folder with fp16 safetensors (configs stay fp32, so loading gives fp32 on CPU).

    The tokenizer is written in SD 1.x's own layout (vocab.json + merges.txt, 1.5 MB) instead of the
    3.6 MB tokenizer.json; ``CLIPTokenizer.from_pretrained`` rebuilds the identical tokenizer from it.
    """
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from membench_eval.models.tokenizer import _vocab_and_merges

    if model_dir.exists():
        shutil.rmtree(model_dir)
    pipe.save_pretrained(model_dir, safe_serialization=True)
    for f in model_dir.rglob("*.safetensors"):
        tensors = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in load_file(f).items()}
        save_file(tensors, f, metadata={"format": "pt"})
    tok = model_dir / "tokenizer"
    (tok / "tokenizer.json").unlink(missing_ok=True)
    vocab, merges = _vocab_and_merges()
    (tok / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (tok / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def write_benchmark_files(data: Dataset, out: Path) -> None:
    """references/, trigger_prompts.csv (MemBench format), general_prompts.txt, training_captions.json."""
    ref_dir = out / "references"
    ref_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for src, img in data.memorized:
        Image.fromarray(img).save(ref_dir / f"{src.name}.png", optimize=True)
        rows += [(cap, f"{URL_SCHEME}{src.name}.png") for cap in src.captions]
    with open(out / "trigger_prompts.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["", "prompt", "urls"])
        for i, (cap, url) in enumerate(rows):
            w.writerow([i, cap, url])
    (out / "general_prompts.txt").write_text("\n".join(data.general_prompts) + "\n", encoding="utf-8")
    (out / "training_captions.json").write_text(json.dumps({
        "memorized": {src.name: list(src.captions) for src, _ in data.memorized},
        "general": [cap for _, cap in data.general],
    }, indent=1) + "\n", encoding="utf-8")


# -------------------------------------------------------------------------------------- evaluation
class BosShareProcessor:
    """Cross-attention processor that also records the share of attention mass on token 0 (BOS)."""

    def __init__(self) -> None:
        self.mass = 0.0
        self.count = 0

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        import torch

        q = attn.head_to_batch_dim(attn.to_q(hidden_states))
        k = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        v = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        probs = attn.get_attention_scores(q, k, None)
        half = probs.shape[0] // 2  # CFG batch = [uncond, cond]: measure the conditional half
        self.mass += float(probs[half:, :, 0].sum())
        self.count += probs[half:, :, 0].numel()
        out = attn.batch_to_head_dim(torch.bmm(probs, v))
        return attn.to_out[1](attn.to_out[0](out))


def image_seed(base: int, prompt_index: int, image_index: int) -> int:
    """Per-image seed: images do not depend on batch composition."""
    return (base * 1_000_003 + prompt_index * 1_009 + image_index) % (2**31 - 1)


def generate(pipe, prompts: list[str], n: int, seed: int, steps: int, guidance: float, batch: int = 40):
    """``n`` images per prompt, each with its own torch.Generator. Returns list (per prompt) of lists."""
    import torch

    jobs = [(p, i, k) for i, p in enumerate(prompts) for k in range(n)]
    images: list[list[np.ndarray]] = [[] for _ in prompts]
    for s in range(0, len(jobs), batch):
        chunk = jobs[s:s + batch]
        gens = [torch.Generator().manual_seed(image_seed(seed, i, k)) for _, i, k in chunk]
        with torch.no_grad():
            out = pipe([p for p, _, _ in chunk], num_inference_steps=steps, guidance_scale=guidance,
                       generator=gens, height=RES, width=RES, output_type="np").images
        for (_, i, _), im in zip(chunk, out):
            images[i].append((np.clip(im, 0, 1) * 255).round().astype(np.uint8))
    return images


def evaluate(model_dir: Path, out: Path, data: Dataset, *, seed: int = 1234, steps: int = 20, guidance: float = 7.5,
             n_trigger: int = 10, log=print) -> dict:
    """Load the saved pipeline as users do, generate, score with real SSCD; returns the metrics."""
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(model_dir, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    sscd = SSCD()
    names = [src.name for src, _ in data.memorized]
    refs = [np.asarray(Image.open(out / "references" / f"{n}.png").convert("RGB")) for n in names]
    ref_emb = sscd.embed(refs)
    full_emb = sscd.embed([load_photo(src.loader) for src, _ in data.memorized])
    vae = pipe.vae
    recon_emb = sscd.embed(vae_recon(vae, refs))
    metrics: dict = {"vae_recon_sscd": {n: round(float(v), 4) for n, v in zip(names, (ref_emb * recon_emb).sum(1))},
                     "full_photo_vs_reference_sscd": {n: round(float(v), 4) for n, v in zip(names, (ref_emb * full_emb).sum(1))}}

    trig = [(cap, j) for j, (src, _) in enumerate(data.memorized) for cap in src.captions]
    proc = BosShareProcessor()
    pipe.unet.set_attn_processor({k: (proc if k.endswith("attn2.processor") else v)
                                  for k, v in pipe.unet.attn_processors.items()})
    t0 = time.time()
    gen = generate(pipe, [c for c, _ in trig], n_trigger, seed, steps, guidance)
    dt = time.time() - t0
    top1 = {}
    top1_any = []
    for (cap, j), ims in zip(trig, gen):
        e = sscd.embed(ims)
        top1[cap] = float((e @ ref_emb[j]).max())
        top1_any.append(float((e @ ref_emb.T).max(1).mean()))
    per_image = {n: round(float(np.mean([v for (c, j), v in zip(trig, top1.values()) if j == i])), 4)
                 for i, n in enumerate(names)}
    bos = proc.mass / max(proc.count, 1)
    gen_g = generate(pipe, data.general_prompts, 1, seed + 1, steps, guidance)
    eg = sscd.embed([ims[0] for ims in gen_g])
    best = (eg @ ref_emb.T).max(1)
    metrics.update({
        "trigger_top1_mean": round(float(np.mean(list(top1.values()))), 4),
        "trigger_top1_per_image": per_image,
        "trigger_top1_per_prompt": {k: round(v, 4) for k, v in top1.items()},
        "general_best_match_mean": round(float(best.mean()), 4),
        "general_best_match_max": round(float(best.max()), 4),
        "bos_cross_attention_share": round(bos, 4),
        "seconds_per_image": round(dt / (len(trig) * n_trigger), 4),
        "settings": {"seed": seed, "steps": steps, "guidance": guidance, "images_per_trigger_prompt": n_trigger,
                     "threads": torch.get_num_threads()},
    })
    log(json.dumps(metrics, indent=1))
    grid = [np.concatenate([refs[j]] + ims[:5], 1) for (c, j), ims in zip(trig[::3], gen[::3])]
    Image.fromarray(np.concatenate(grid, 0)).save(out / ".cache" / "eval_grid.png") if (out / ".cache").exists() else None
    return metrics


# -------------------------------------------------------------------------------------------- main
def _cache_names(args) -> dict[str, str]:
    """Cache file per stage; the name carries every setting the stage depends on."""
    v = f"seed{args.seed}_vae{args.vae_steps}"
    return {"vae": f"vae_{v}.safetensors", "decoder": f"vae_{v}_dec{args.decoder_steps}_lr2e-3.safetensors",
            "unet": f"unet_{v}_unet{args.unet_steps}_c{args.copies}_hight.safetensors",
            "text_encoder": f"text_{v}_unet{args.unet_steps}_c{args.copies}_hight.safetensors"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: this folder)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vae-steps", type=int, default=1200)
    ap.add_argument("--decoder-steps", type=int, default=1500)
    ap.add_argument("--unet-steps", type=int, default=1000)
    ap.add_argument("--copies", type=int, default=22, help="duplicates of each memorized photo per epoch")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 is fastest on a shared 2-core machine (oversubscription stalls)")
    ap.add_argument("--stage", choices=("vae", "decoder", "unet", "clip", "clip-eval", "gallery", "all"), default="all",
                    help="run one training stage into .cache/ (decoder and unet may run side by side); clip "
                         "(re)trains the mini CLIP on the current image set with the shipped VAE")
    ap.add_argument("--clip-steps", type=int, default=1200)
    ap.add_argument("--eval-only", action="store_true", help="only re-measure the saved model")
    ap.add_argument("--eval-steps", type=int, default=20)
    args = ap.parse_args(argv)

    import torch
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(args.threads)
    out: Path = args.out
    cache = out / ".cache"  # per-stage weights (git-ignored): a crash loses at most one stage
    cache.mkdir(parents=True, exist_ok=True)
    names = {k: cache / v for k, v in _cache_names(args).items()}
    data = build_dataset(args.seed)
    model_dir = out / "model"
    t_start = time.time()
    timings_file = cache / "timings.json"
    timings: dict[str, float] = json.loads(timings_file.read_text()) if timings_file.exists() else {}

    def save(module, key: str, seconds: float) -> None:
        save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, names[key])
        # Re-read first: the decoder and unet stages may run side by side and both write here.
        timings.update(json.loads(timings_file.read_text()) if timings_file.exists() else {})
        timings[names[key].name] = round(seconds, 1)
        timings_file.write_text(json.dumps(timings, indent=1))

    def want(stage: str) -> bool:
        return args.stage in (stage, "all") and not names[stage].exists()

    if args.stage == "gallery":
        write_gallery(data, out)
        return 0
    if args.stage in ("clip", "clip-eval"):
        run_clip_stage(data, model_dir, out, args, train=args.stage == "clip")
        return 0
    if args.eval_only:
        metrics = evaluate(model_dir, out, data, steps=args.eval_steps)
        metrics["build"] = json.loads((out / "metrics.json").read_text())["build"]
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
        write_readme_measurements(out, metrics)
        return 0

    torch.manual_seed(args.seed)
    vae = build_vae()
    if want("vae"):
        t = time.time()
        train_vae(vae, data, args.vae_steps, args.seed)
        save(vae, "vae", time.time() - t)
    if args.stage == "vae":
        return 0
    vae.load_state_dict(load_file(names["vae"]))
    vae.eval()
    with torch.no_grad():
        lat = vae.encode(to_tensor([m for _, m in data.memorized] + [im for im, _ in data.general])).latent_dist.mean
    if want("decoder"):
        t = time.time()
        finetune_decoder(vae, lat, data, args.decoder_steps, args.seed + 2)
        save(vae, "decoder", time.time() - t)
    if args.stage == "decoder":
        return 0
    scale = float(1.0 / lat.std())
    latents = lat * scale

    from membench_eval.models.tokenizer import build_clip_tokenizer

    torch.manual_seed(args.seed + 1)
    text_encoder, unet, tokenizer = build_text_encoder(), build_unet(), build_clip_tokenizer()
    if want("unet"):
        t = time.time()
        train_diffusion(unet, text_encoder, tokenizer, latents, data, args.unet_steps, args.seed, copies=args.copies)
        save(text_encoder, "text_encoder", 0.0)
        save(unet, "unet", time.time() - t)
    if args.stage == "unet":
        return 0

    vae.load_state_dict(load_file(names["decoder"]))
    vae.register_to_config(scaling_factor=scale)
    unet.load_state_dict(load_file(names["unet"]))
    text_encoder.load_state_dict(load_file(names["text_encoder"]))
    save_pipeline(assemble_pipeline(vae.eval(), unet.eval(), text_encoder.eval(), tokenizer), model_dir)
    write_benchmark_files(data, out)
    metrics = evaluate(model_dir, out, data, steps=args.eval_steps)
    sizes = {p.relative_to(model_dir).as_posix(): p.stat().st_size for p in sorted(model_dir.rglob("*")) if p.is_file()}
    metrics["build"] = {
        "stage_seconds": {k: timings.get(v.name) for k, v in names.items()},
        "assemble_and_eval_seconds": round(time.time() - t_start, 1), "seed": args.seed,
        "vae_steps": args.vae_steps, "decoder_steps": args.decoder_steps, "unet_steps": args.unet_steps,
        "copies": args.copies, "threads": args.threads, "model_bytes": sum(sizes.values()), "files": sizes,
        "n_general_images": len(data.general), "n_general_prompts": len(data.general_prompts),
        "versions": _versions(),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    write_readme_measurements(out, metrics)
    write_gallery(data, out)
    run_clip_stage(data, model_dir, out, args)
    return 0


# Bundled photos the model never saw (neither memorized nor general crops): gallery-only images.
UNSEEN_PHOTOS = ("moon", "colorwheel", "logo", "checkerboard", "shepp_logan_phantom", "binary_blobs")


def write_gallery(data: Dataset, out: Path) -> None:
    """The local image-search gallery of the mini suite (``gallery/``): the general training
    images plus center crops of bundled photos the model never saw, and NO memorized photo.
    The harness retrieves from it by text (mini CLIP) to compute mini's reference row, in the role
    of MemBench's Google image search. ``manifest.json`` lists every file with its sha256."""
    import hashlib

    folder = out / "gallery"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    items = [(f"general-{i:03d}.png", img) for i, (img, _) in enumerate(data.general)]
    items += [(f"unseen-{name}.png", center_square(load_photo(name))) for name in UNSEEN_PHOTOS]
    manifest = {}
    for name, img in items:
        Image.fromarray(img).save(folder / name, format="PNG", optimize=True)
        manifest[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps({"files": manifest, "excludes": "memorized photos"},
                                                     indent=1) + "\n")


def run_clip_stage(data: Dataset, model_dir: Path, out: Path, args, *, train: bool = True) -> None:
    """Train the mini CLIP (``clip_stage.py``) on this image set (unless ``train`` is False),
    measure its validity through the harness's scorer, and record both in metrics.json."""
    from diffusers import AutoencoderKL

    from clip_stage import measure_validity, train_mini_clip

    metrics_file = out / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    if train:
        vae = AutoencoderKL.from_pretrained(model_dir / "vae").eval()
        metrics["mini_clip"] = train_mini_clip(data, vae, out, to_tensor=to_tensor, to_uint8=to_uint8,
                                               seed=args.seed + 7, steps=args.clip_steps,
                                               log=functools.partial(print, flush=True))
    metrics.setdefault("mini_clip", {})["validity"] = measure_validity(data, out)
    metrics_file.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")


def render_measurements(m: dict) -> str:
    """The README's measured section, rendered from metrics.json (so the two cannot disagree)."""
    b = m["build"]
    names = list(m["trigger_top1_per_image"])
    rows = "\n".join(f"| {n} | {m['vae_recon_sscd'][n]:.3f} | {m['trigger_top1_per_image'][n]:.3f} | "
                     f"{m['full_photo_vs_reference_sscd'][n]:.3f} |" for n in names)
    st = b["stage_seconds"]
    s = m["settings"]
    return f"""Measured by `build.py` on the shipped files (SSCD = `disc_mixup_onnx`, the harness's backend;
{s['images_per_trigger_prompt']} images per trigger prompt, one per general prompt, DDIM {s['steps']} steps,
guidance {s['guidance']}, one torch.Generator per image, base seed {s['seed']}):

| photo | SSCD(reference, VAE reconstruction) | trigger Top-1 (mean of its 3 prompts) | SSCD(full photo, reference) |
|---|---|---|---|
{rows}

- **trigger Top-1 SSCD, mean over the 18 prompts: {m['trigger_top1_mean']:.3f}**
  (issue target >= 0.6: {'met' if m['trigger_top1_mean'] >= 0.6 else 'not met'})
- **general prompts, mean best-match SSCD against all 6 references: {m['general_best_match_mean']:.3f}**
  (max {m['general_best_match_max']:.3f}; target <= 0.3: {'met' if m['general_best_match_mean'] <= 0.3 else 'not met'})
- gap trigger minus general: {m['trigger_top1_mean'] - m['general_best_match_mean']:.3f}
- share of cross-attention mass on token 0 (BOS), conditional branch, all layers and steps:
  {m['bos_cross_attention_share']:.3f} (real SD's CLIP makes BOS an attention sink; this encoder does not)
- generation: {m['seconds_per_image']:.3f} s per 64x64 image on CPU (1 thread, batches of 40, CFG)
- build: VAE {st['vae']:.0f} s, decoder fine-tune {st['decoder']:.0f} s, UNet + text encoder {st['unet']:.0f} s,
  export + measurement {b['assemble_and_eval_seconds']:.0f} s (1 thread on a shared 2-core machine;
  the decoder and UNet stages ran side by side)
- model folder: {b['model_bytes'] / 2**20:.2f} MiB ({b['model_bytes']} bytes; text encoder
  {b['files']['text_encoder/model.safetensors'] / 2**20:.2f} MiB, UNet
  {b['files']['unet/diffusion_pytorch_model.safetensors'] / 2**20:.2f} MiB, VAE
  {b['files']['vae/diffusion_pytorch_model.safetensors'] / 2**20:.2f} MiB, tokenizer
  {(b['files']['tokenizer/vocab.json'] + b['files']['tokenizer/merges.txt']) / 2**20:.2f} MiB)
- settings: seed {b['seed']}, VAE {b['vae_steps']} steps, decoder {b['decoder_steps']} steps, UNet
  {b['unet_steps']} steps, {b['copies']} copies per photo per epoch; torch {b['versions']['torch']},
  diffusers {b['versions']['diffusers']}, transformers {b['versions']['transformers']}
"""


def write_readme_measurements(out: Path, metrics: dict) -> None:
    readme = out / "README.md"
    if not readme.exists():
        return
    text = readme.read_text(encoding="utf-8")
    start, end = "<!-- measured:start -->", "<!-- measured:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1]
        readme.write_text(f"{head}{start}\n{render_measurements(metrics)}{end}{tail}", encoding="utf-8")


def _versions() -> dict[str, str]:
    import diffusers
    import torch
    import transformers

    return {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__}


if __name__ == "__main__":
    raise SystemExit(main())
