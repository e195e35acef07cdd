"""Preview a diffusion stage (checkpoint or safetensors) with given VAE files: SSCD on the 16 trigger prompts and their paraphrases, general leakage, BOS share; grids go to the working directory.

Usage: python preview.py UNET_OR_CKPT VAE_ENCODER VAE_DECODER [IMAGES_PER_PROMPT] [TAG]
"""
import sys, time, torch, numpy as np
sys.path[:0] = [str(__import__('pathlib').Path(__file__).resolve().parents[3]), str(__import__('pathlib').Path(__file__).resolve().parents[1])]
torch.set_num_threads(1)
from safetensors.torch import load_file
from dataset import build_dataset
from vae_stage import build_vae, encode_means
from diffusion_stage import build_unet, build_text_encoder, BosShareProcessor, install_processor
from outputs import assemble_pipeline
from measure import SSCD, generate
from membench_eval.models.tokenizer import build_clip_tokenizer
ckpt, vae_enc, vae_dec = sys.argv[1], sys.argv[2], sys.argv[3]
n_img = int(sys.argv[4]) if len(sys.argv) > 4 else 4
tag = sys.argv[5] if len(sys.argv) > 5 else ''
d = build_dataset(0)
vae = build_vae(); vae.load_state_dict(load_file(vae_enc)); vae.eval()
lat = encode_means(vae, [m for _, m in d.memorized] + [im for im, _ in d.general])
scale = float(1 / lat.std())
vae.load_state_dict(load_file(vae_dec)); vae.register_to_config(scaling_factor=scale)
unet, te = build_unet(), build_text_encoder()
st = torch.load(ckpt, weights_only=False) if ckpt.endswith('.pt') else None
if st: unet.load_state_dict(st['unet']); te.load_state_dict(st['text_encoder']); print('step', st['step'])
else: unet.load_state_dict(load_file(ckpt)); te.load_state_dict(load_file(ckpt.replace('unet_', 'text_')))
pipe = assemble_pipeline(vae.eval(), unet.eval(), te.eval(), build_clip_tokenizer())
s = SSCD(); refs = [m for _, m in d.memorized]; R = s.embed(refs)
trig = [(src.captions[0], j) for j, (src, _) in enumerate(d.memorized)] + [(src.paraphrase, j) for j, (src, _) in enumerate(d.memorized)]
proc = BosShareProcessor(rows="second_half"); install_processor(pipe.unet, proc)
t = time.time()
gen = generate(pipe, [c for c, _ in trig], n_img, 1234, 20, 7.5)
print('gen s/img', (time.time() - t) / (len(trig) * n_img), 'bos', proc.mass / proc.count)
top = [float((s.embed(ims) @ R[j]).max()) for (c, j), ims in zip(trig, gen)]
names = [src.name for src, _ in d.memorized]
print('trained top1', np.round(top[:16], 2), 'mean', np.mean(top[:16]).round(3))
print('paraphrase top1', np.round(top[16:], 2), 'mean', np.mean(top[16:]).round(3))
gg = generate(pipe, d.general_prompts, 1, 1235, 20, 7.5)
E = s.embed([g[0] for g in gg]); print('general best match mean', (E @ R.T).max(1).mean().round(3))
from PIL import Image
Image.fromarray(np.concatenate([np.concatenate([r, g[0]], 1) for r, g in zip(d.general_prompt_images[:12], gg[:12])], 0)).save(f'preview_general{tag}.png')
Image.fromarray(np.concatenate([np.concatenate([refs[j]] + ims[:4], 1) for (c, j), ims in list(zip(trig, gen))[:16]], 0)).save(f'preview_trig{tag}.png')
