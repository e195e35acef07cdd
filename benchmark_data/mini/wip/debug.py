import sys, torch, numpy as np
sys.path[:0] = [str(__import__('pathlib').Path(__file__).resolve().parents[3]), str(__import__('pathlib').Path(__file__).resolve().parents[1])]
torch.set_num_threads(1)
from safetensors.torch import load_file
from dataset import build_dataset
from vae_stage import build_vae, encode_means
from diffusion_stage import build_unet, build_text_encoder
from membench_eval.models.tokenizer import build_clip_tokenizer
from diffusers import DDPMScheduler
from membench_eval.models.tiny import SD_SCHEDULER_CONFIG
d = build_dataset(0)
vae = build_vae(); vae.load_state_dict(load_file('/work/mini_v2/.cache/vae_v2b_seed0_vae1500.safetensors')); vae.eval()
lat = encode_means(vae, [m for _, m in d.memorized] + [im for im, _ in d.general][:50])
scale = float(1 / lat.std()); L = lat * scale
unet, te = build_unet(), build_text_encoder()
st = torch.load('/tmp/ckpt_preview.pt', weights_only=False); unet.load_state_dict(st['unet']); te.load_state_dict(st['text_encoder'])
unet.eval(); te.eval()
tok = build_clip_tokenizer()
ns = DDPMScheduler(**{k: v for k, v in SD_SCHEDULER_CONFIG.items() if k != 'set_alpha_to_one'})
caps = [src.captions[0] for src, _ in d.memorized]
ids = tok(caps, padding='max_length', max_length=77, truncation=True, return_tensors='pt').input_ids
with torch.no_grad():
    c = te(ids)[0]
    print('cond std', c.std().item(), 'bos', c[0,0].norm().item(), 'tok1', c[0,1].norm().item())
    x0 = L[:16]
    g = torch.Generator().manual_seed(0)
    for tt in [50, 300, 600, 900, 999]:
        n = torch.randn(x0.shape, generator=g); t = torch.full((16,), tt)
        xt = ns.add_noise(x0, n, t)
        e = unet(xt, t, c).sample
        a = ns.alphas_cumprod[tt]
        x0h = (xt - (1 - a).sqrt() * e) / a.sqrt()
        print(tt, 'eps mse', (e - n).pow(2).mean().item(), 'x0 mse', (x0h - x0).pow(2).mean().item(), 'x0 var', x0.var().item())
