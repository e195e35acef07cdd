"""Memorization detection: Wen et al.'s noise-difference signal, detector plugins and their ROC evaluation.

Submodules (import what you need; torch is imported only when a score is computed):
``signal`` (single-step and full-trajectory scores), ``roc`` (AUC, TPR at 1% FPR),
``prompt_files`` (prompt lists in, per-prompt scores out), ``prompt_sets`` (memorized vs
non-memorized prompts of a suite or of files), ``run`` (scoring with a ``Detector``, stored in the
run store), ``checks`` (what a detector must return), ``bootstrap`` (cluster-resampled ROC
intervals), ``leaderboard`` and ``render`` (the detection leaderboard and its files), ``gate``
(a calibrated detector threshold for detect-then-mitigate methods). ``pytest --membench-detect``
lives in the pytest plugin (``membench_eval.pytest_plugin.detect``).
"""
