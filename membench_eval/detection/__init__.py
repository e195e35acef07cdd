"""Memorization detection: Wen et al.'s noise-difference signal and its ROC evaluation.

Submodules (import what you need; torch is imported only when a score is computed):
``signal`` (single-step and full-trajectory scores), ``roc`` (AUC, TPR at 1% FPR),
``prompt_files`` (prompt lists in, per-prompt scores out).
"""
