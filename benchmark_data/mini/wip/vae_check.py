import sys, torch, numpy as np
sys.path[:0]=['/work/main','/work/main/benchmark_data/mini']
torch.set_num_threads(1)
from safetensors.torch import load_file
from dataset import build_dataset
from vae_stage import build_vae, vae_recon
from measure import SSCD
d=build_dataset(0); vae=build_vae(); vae.load_state_dict(load_file(sys.argv[1])); vae.eval()
if len(sys.argv)>2:
    from vae_stage import encode_means
    vae.load_state_dict(load_file(sys.argv[2])); vae.eval()
refs=[m for _,m in d.memorized]; s=SSCD()
a=s.embed(refs); b=s.embed(vae_recon(vae,refs)); v=(a*b).sum(1)
print({src.name: round(float(x),3) for (src,_),x in zip(d.memorized,v)}, 'mean', v.mean().round(3), 'min', v.min().round(3))
p=a@a.T; np.fill_diagonal(p,-1); print('pairwise max', p.max().round(3), [ (d.memorized[i][0].name, d.memorized[int(p[i].argmax())][0].name, round(float(p[i].max()),3)) for i in range(len(p)) if p[i].max()>0.3])
