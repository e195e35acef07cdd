"""Evaluating mitigation methods on a suite: the one library both shells (``membench run``, the
pytest plugin) call. ``runner.Evaluation`` plans, generates, scores and builds the leaderboard;
its helpers each own one step and get what they need as arguments: ``plan`` (options, method
configs, prompt selection), ``scoring`` (per-image scores, per-prompt rows), ``quality`` (CLIP and
aesthetic scorers), ``stored_configs`` (configs the store already holds), ``computed_reference``
(image-search reference rows), ``metadata`` (the JSON's metadata), ``gates`` (CI thresholds) and
``preflight`` (writable folders before any work)."""

from membench_eval.evaluation.plan import SUBSETS, EvalOptions, MethodSpec, Plan, select_prompts
from membench_eval.evaluation.runner import Evaluation
from membench_eval.metrics.score_rows import AESTHETIC_METRIC, CLIP_METRIC, SSCD_METRIC

__all__ = ["AESTHETIC_METRIC", "CLIP_METRIC", "SSCD_METRIC", "SUBSETS", "EvalOptions", "Evaluation", "MethodSpec",
           "Plan", "select_prompts"]
