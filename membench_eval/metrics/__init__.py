"""Scores of generated images and their aggregation (MemBench's metrics).

- :mod:`.registry` one spec per leaderboard metric (columns, direction, scorer, aggregation);
  every table, export, gate and the JSON read it. A new per-image metric is a module with its
  scorer plus one ``registry.register(MetricSpec(...))``;
- :mod:`.sscd` copy-detection embeddings (backends ``disc_large``, ``disc_mixup_onnx``) and the
  on-disk reference-embedding cache;
- :mod:`.clip_score` CLIP score; :mod:`.aesthetic` LAION aesthetic score;
- :mod:`.preprocessing` every pixel transform, pinned and named;
- :mod:`.aggregate` Top-1 / Top-3 / SSCD>0.5 per prompt and over prompts;
- :mod:`.memorization` AMS / UMS.

Submodules import torch/onnxruntime/open_clip lazily; import them directly.
"""
