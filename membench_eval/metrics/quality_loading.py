"""Loading the CLIP and aesthetic scorers of a run (the registry's loaders for ``clip`` / ``aesthetic``).

On suites that allow it (mini), an open_clip tag whose weights are not in the local cache is not
downloaded (an offline attempt takes a minute of retries): the loader raises
``MetricUnavailable`` with the reason, and the metric is reported as unavailable. A checkpoint path
given explicitly must exist. On the paper's suites missing weights are an error (MissingWeightsError).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from membench_eval.errors import MissingWeightsError
from membench_eval.errors import MetricUnavailable


def load_clip(options: Any, suite: Any) -> Any:
    """The CLIP scorer: the suite's CLIP backend unless ``--clip-model`` names another model."""
    from membench_eval.metrics.clip_score import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED, ClipScorer

    model, pretrained = suite.clip_backend or (DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED)
    if options.clip_model and options.clip_model != model:  # another model: its own default weights
        model, pretrained = options.clip_model, DEFAULT_CLIP_PRETRAINED
    pretrained = options.clip_pretrained or pretrained
    return _load_open_clip_scorer("clip", model, pretrained, "--membench-clip-pretrained / --clip-pretrained",
                                  suite, lambda: ClipScorer(model, pretrained, options.device))


def load_aesthetic(options: Any, suite: Any) -> Any:
    """The LAION aesthetic scorer (its head on open_clip ViT-L-14)."""
    from membench_eval.metrics.aesthetic import DEFAULT_AESTHETIC_CLIP, DEFAULT_AESTHETIC_PRETRAINED, AestheticScorer

    model, pretrained = DEFAULT_AESTHETIC_CLIP, options.aesthetic_pretrained or DEFAULT_AESTHETIC_PRETRAINED
    return _load_open_clip_scorer("aesthetic", model, pretrained,
                                  "--membench-aesthetic-pretrained / --aesthetic-pretrained", suite,
                                  lambda: AestheticScorer(model, pretrained, options.aesthetic_head, options.device))


def _load_open_clip_scorer(metric: str, model: str, pretrained: str, flag: str, suite: Any,
                           build: Callable[[], Any]) -> Any:
    # Missing CLIP/aesthetic weights reported as unavailable instead of an error (the suite file's
    # scoring.allow_missing_quality_weights: the mini's, so a bare checkout runs).
    lenient = suite.allow_missing_quality_weights
    if lenient and not _looks_like_file(pretrained) and not open_clip_weights_cached(model, pretrained):
        raise MetricUnavailable(f"open_clip {model} / {pretrained} weights are not in the local cache (none can be "
                                f"downloaded here); pass a local checkpoint with {flag} PATH")
    try:
        return build()
    except MissingWeightsError as exc:
        if not lenient or _looks_like_file(pretrained):
            raise MissingWeightsError(f"{metric} score needed for suite {suite.name}: {exc}") from exc
        raise MetricUnavailable(_one_line(exc)) from exc


def _looks_like_file(pretrained: str) -> bool:
    return os.sep in pretrained or pretrained.endswith((".bin", ".pt", ".pth", ".safetensors"))


def open_clip_weights_cached(model: str, tag: str) -> bool:
    """Whether open_clip's ``model``/``tag`` weights are already on disk (checked without network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
        from open_clip.pretrained import get_pretrained_cfg
    except ImportError:
        return False
    cfg = get_pretrained_cfg(model, tag) or {}
    if cfg.get("file"):
        return Path(cfg["file"]).is_file()
    hub = cfg.get("hf_hub", "")
    if hub:
        repo, filename = hub.rstrip("/").rsplit("/", 1) if not hub.endswith("/") else (hub.rstrip("/"), "")
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        for name in names:
            found = try_to_load_from_cache(repo, name)
            if isinstance(found, str):
                return True
    url = cfg.get("url", "")
    if url:
        cache = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        return cache.is_file()
    return False


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
