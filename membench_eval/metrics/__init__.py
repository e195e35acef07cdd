"""Scores of generated images and their aggregation (MemBench's metrics).

- :mod:`.sscd` copy-detection embeddings (backends ``disc_large``, ``disc_mixup_onnx``) and the
  on-disk reference-embedding cache;
- :mod:`.clip_score` CLIP score; :mod:`.aesthetic` LAION aesthetic score;
- :mod:`.preprocessing` every pixel transform, pinned and named;
- :mod:`.aggregate` Top-1 / Top-3 / SSCD>0.5 per prompt and over prompts;
- :mod:`.memorization` AMS / UMS.

Submodules import torch/onnxruntime/open_clip lazily; import them directly.
"""
