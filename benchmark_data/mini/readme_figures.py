"""The mini README's measured section, rendered from metrics.json (so the two cannot disagree)."""

from __future__ import annotations

from pathlib import Path

START, END = "<!-- measured:start -->", "<!-- measured:end -->"


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def render_measurements(m: dict) -> str:
    b, s = m["build"], m["settings"]
    names = list(m["trigger_top1_per_image"])
    rows = "\n".join(
        f"| {n} | {m['copies'][n]} | {m['vae_recon_sscd'][n]:.3f} | {m['trigger_top1_per_image'][n]:.3f} | "
        f"{m['paraphrase_top1_per_image'][n]:.3f} | {m['reference_pairwise_sscd']['closest'][n]['sscd']:.3f} "
        f"({m['reference_pairwise_sscd']['closest'][n]['to']}) |" for n in names)
    tiers = ", ".join(f"weight {t}: {v:.3f}" for t, v in m["trigger_top1_per_tier"].items())
    st = b["stage_seconds"]
    tn = m["token_norms"]
    clip = m.get("mini_clip", {}).get("validity", {})
    clip_line = (f"- **base generations of the {b['n_general_prompts']} general prompts, mini-CLIP top-1 retrieval among "
                 f"all {clip['candidates']} mini prompts: {clip['base_general_top1']:.2f}** (target >= 0.40: "
                 f"{_met(clip['base_general_top1'] >= 0.4)}); top-5 {clip['base_general_top5']:.2f}; the build's own "
                 f"renders of those prompts: {clip['renders_top1']:.2f}\n") if "base_general_top1" in clip else ""
    return f"""Measured by `build.py` on the shipped files (SSCD = `disc_mixup_onnx`, the harness's backend;
{s['images_per_trigger_prompt']} images per trigger prompt, one per general prompt, DDIM {s['steps']} steps,
guidance {s['guidance']}, one torch.Generator per image, base seed {s['seed']}):

| photo | duplication weight | SSCD(reference, VAE reconstruction) | trigger Top-1 (trained captions) | Top-1 (held-out paraphrase) | nearest other reference (SSCD) |
|---|---|---|---|---|---|
{rows}

- **trigger Top-1 SSCD, mean over the trained captions of all {m['n_memorized']} photos: {m['trigger_top1_mean']:.3f}**
  (target >= 0.55: {_met(m['trigger_top1_mean'] >= 0.55)}); lowest photo {m['trigger_top1_min_photo']:.3f}
  (target >= 0.40: {_met(m['trigger_top1_min_photo'] >= 0.40)}); held-out paraphrases {m['paraphrase_top1_mean']:.3f}
- dose-response (mean Top-1 by duplication weight): {tiers}
- **general prompts, mean best-match SSCD against all references: {m['general_best_match_mean']:.3f}**
  (max {m['general_best_match_max']:.3f}; target <= 0.2: {_met(m['general_best_match_mean'] <= 0.2)})
- references among themselves: highest SSCD between two different references {m['reference_pairwise_sscd']['max']:.3f}
{clip_line}- **share of conditional cross-attention mass on token 0 (BOS), all layers and steps:
  {m['bos_cross_attention_share']:.3f}** (target >= 0.3: {_met(m['bos_cross_attention_share'] >= 0.3)})
- token embedding rows no caption uses vs rows the captions use (median norm): {tn['untrained_median']:.3f} vs
  {tn['trained_median']:.3f} (ratio {tn['ratio']:.2f}; {tn['n_trained_ids']} ids trained)
- generation: {m['seconds_per_image']:.3f} s per 64x64 image on CPU ({s['threads']} thread, batches of 40, CFG)
- build: VAE {st.get('vae') or 0:.0f} s, decoder fine-tune {st.get('decoder') or 0:.0f} s, UNet + text encoder
  {st.get('unet') or 0:.0f} s, fine-tune {st.get('finetune_unet') or 0:.0f} s, export + measurement {b['assemble_and_eval_seconds']:.0f} s (1 thread each on a shared 2-core machine)
- model folder: {b['model_bytes'] / 2**20:.2f} MiB (text encoder
  {b['files']['text_encoder/model.safetensors'] / 2**20:.2f} MiB, UNet
  {b['files']['unet/diffusion_pytorch_model.safetensors'] / 2**20:.2f} MiB, VAE
  {b['files']['vae/diffusion_pytorch_model.safetensors'] / 2**20:.2f} MiB, tokenizer
  {(b['files']['tokenizer/vocab.json'] + b['files']['tokenizer/merges.txt']) / 2**20:.2f} MiB)
- settings: seed {b['seed']}, VAE {b['vae_steps']} steps, decoder {b['decoder_steps']} steps, UNet
  {b['unet_steps']} steps (sink weight {b['sink_weight']}), then {b.get('finetune_steps', 0)} fine-tune steps at lr
  {b.get('finetune_lr', 0):g} with the BOS-sink hinge weight {b.get('finetune_sink_weight', 0):g}, target {b.get('sink_target', 0.5):g}; torch {b['versions']['torch']},
  diffusers {b['versions']['diffusers']}, transformers {b['versions']['transformers']}
"""


def write_readme_measurements(out: Path, metrics: dict) -> None:
    readme = out / "README.md"
    if not readme.exists() or "build" not in metrics:
        return
    text = readme.read_text(encoding="utf-8")
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        readme.write_text(f"{head}{START}\n{render_measurements(metrics)}{END}{tail}", encoding="utf-8")
