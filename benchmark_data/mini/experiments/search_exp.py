"""Search experiment on a built mini: chains with mini-mlm; SSCD of best prompts vs random prompts."""
import sys, time, json
sys.path[:0] = [str(__import__('pathlib').Path(__file__).resolve().parents[3])]
import numpy as np, torch
torch.set_num_threads(1)
from pathlib import Path
from membench_eval.models.loading import load_pipeline
from membench_eval.search.gibbs import ChainConfig, GibbsChain, diffusion_scorer
from membench_eval.search.mlm import load_masked_lm
from membench_eval.metrics.sscd import load_sscd
root = Path(sys.argv[1]); chains = int(sys.argv[2]); steps = int(sys.argv[3]); L = int(sys.argv[4]); k = int(sys.argv[5])
pipe = load_pipeline(str(root / "model"), device="cpu")
mlm = load_masked_lm("mini-mlm", device="cpu")
scorer = diffusion_scorer(pipe, height=64, width=64)
sscd = load_sscd("disc_mixup_onnx")
refs = sscd.embed(sorted(str(p) for p in (root / "references").glob("*.png")))
def top1(prompt, n=10):
    g = [torch.Generator().manual_seed(1000 + i) for i in range(n)]
    ims = pipe([prompt] * n, num_inference_steps=20, guidance_scale=7.5, height=64, width=64, generator=g, output_type="np").images
    ims = [(np.clip(im, 0, 1) * 255).round().astype(np.uint8) for im in ims]
    return float((sscd.embed(ims) @ refs.T).max())
res = []
t = time.time()
for c in range(chains):
    out = GibbsChain(mlm, scorer, ChainConfig(length=L, top_k=k, temperature=0.1, seed=c), Path(f"/tmp/chain{c}.jsonl")).run(steps)
    s = top1(res_p := out.best_prompt)
    res.append((res_p, out.best_score, s)); print("chain", c, repr(res_p), round(out.best_score, 2), "sscd", round(s, 3), f"{time.time()-t:.0f}s", flush=True)
rng = np.random.default_rng(0); allowed = np.flatnonzero(mlm.allowed())
rand = [top1(mlm.decode(list(rng.choice(allowed, L)))) for _ in range(10)]
print("random prompts sscd", np.round(rand, 3), "rate>0.5", np.mean(np.array(rand) > 0.5))
