"""Per-step Wen signal on the shipped mini: AUC (trigger vs general) of ||eps_c - eps_u|| at each DDIM step."""
import copy
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[3])]
import numpy as np
import torch

torch.set_num_threads(1)
from membench_eval.detection.roc import detection_metrics
from membench_eval.detection.signal import encode_prompts, guided_trajectory, latent_geometry, seeded_latents
from membench_eval.models.loading import load_pipeline
from membench_eval.suites import get_suite

suite = get_suite("mini")
pipe = load_pipeline(suite.model, device="cpu")
trig = [p.text for p in suite.trigger.prompts]
gen = [p.text for p in suite.general.prompts]
prompts, n_img, n_steps = trig + gen, 2, 20
latents = seeded_latents(pipe, list(range(n_img)), latent_geometry(pipe, 64, 64)).repeat(len(prompts), 1, 1, 1)
with torch.inference_mode():
    cond = encode_prompts(pipe, prompts).repeat_interleave(n_img, 0)
    _, norms = guided_trajectory(pipe, cond, encode_prompts(pipe, [""]), latents, n_steps, 7.5, per_step=True)
per = norms.view(n_steps, len(prompts), n_img).mean(2).numpy()  # steps x prompts
sched = copy.deepcopy(pipe.scheduler)
sched.set_timesteps(n_steps)
for i, t in enumerate(sched.timesteps.tolist()):
    a = detection_metrics(per[i, :len(trig)], per[i, len(trig):]).auc
    print(f"t={t:4d} trigger median {np.median(per[i, :len(trig)]):6.2f} general median "
          f"{np.median(per[i, len(trig):]):6.2f} AUC {a:.3f}")
m = per.mean(0)
print("trajectory mean AUC", round(detection_metrics(m[:len(trig)], m[len(trig):]).auc, 3))
