"""Per-step Wen signal on the shipped mini: AUC (trigger vs general) of ||eps_c - eps_u|| at each DDIM step."""
import sys, copy
from pathlib import Path
sys.path[:0] = [str(Path(__file__).resolve().parents[3])]
import numpy as np, torch
torch.set_num_threads(1)
from membench_eval.detection.roc import detection_metrics
from membench_eval.detection.signal import encode_prompts, latent_geometry, seeded_latents
from membench_eval.generation.pipeline import load_pipeline
from membench_eval.suites import get_suite
suite = get_suite("mini"); pipe = load_pipeline(suite.model, device="cpu")
trig = [p.text for p in suite.trigger.prompts]; gen = [p.text for p in suite.general.prompts]
prompts = trig + gen; n_img = 2
geo = latent_geometry(pipe, 64, 64); lat0 = seeded_latents(pipe, list(range(n_img)), geo)
sched = copy.deepcopy(pipe.scheduler); sched.set_timesteps(20)
with torch.inference_mode():
    u = encode_prompts(pipe, [""]); c = encode_prompts(pipe, prompts).repeat_interleave(n_img, 0)
    lat = lat0.repeat(len(prompts), 1, 1, 1); n = lat.shape[0]
    emb = torch.cat([u.expand(n, -1, -1), c]); per = []
    for t in sched.timesteps:
        eu, ec = pipe.unet(sched.scale_model_input(torch.cat([lat, lat]), t), t, encoder_hidden_states=emb).sample.chunk(2)
        per.append((ec - eu).flatten(1).norm(dim=1).view(len(prompts), n_img).mean(1).numpy())
        lat = sched.step(eu + 7.5 * (ec - eu), t, lat).prev_sample
per = np.array(per)  # steps x prompts
for i, t in enumerate(sched.timesteps.tolist()):
    a = detection_metrics(per[i, :len(trig)], per[i, len(trig):]).auc
    print(f"t={t:4d} trigger median {np.median(per[i,:len(trig)]):6.2f} general median {np.median(per[i,len(trig):]):6.2f} AUC {a:.3f}")
m = per.mean(0); print("trajectory mean AUC", round(detection_metrics(m[:len(trig)], m[len(trig):]).auc, 3))
