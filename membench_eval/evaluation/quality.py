"""CLIP and aesthetic scorers of an evaluation, or the reason each is unavailable.

On suites that allow it (mini), an open_clip tag whose weights are not in the local cache is not
downloaded (an offline attempt takes a minute of retries): the metric is reported as unavailable
with the reason. A checkpoint path given explicitly must exist. On the paper's suites missing
weights are an error (MissingWeightsError).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from membench_eval.errors import MissingWeightsError

if TYPE_CHECKING:
    from membench_eval.evaluation.plan import EvalOptions
    from membench_eval.suites.types import Suite


def load_quality_scorers(options: "EvalOptions", suite: "Suite") -> dict[str, Any]:
    """``{"clip": scorer | None, "aesthetic": scorer | None, "<metric>_reason": why not}`` for a
    run with ``options`` (models, weights, device) on ``suite`` (its CLIP model, its leniency)."""
    from membench_eval.metrics.aesthetic import DEFAULT_AESTHETIC_CLIP, DEFAULT_AESTHETIC_PRETRAINED
    from membench_eval.metrics.clip_score import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED

    o = options
    # Missing CLIP/aesthetic weights reported as unavailable instead of an error (the suite file's
    # scoring.allow_missing_quality_weights: the mini's, so a bare checkout runs).
    lenient = suite.allow_missing_quality_weights
    clip_model, clip_pretrained = suite.clip_backend or (DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED)
    if o.clip_model and o.clip_model != clip_model:  # another model: its own default weights
        clip_model, clip_pretrained = o.clip_model, DEFAULT_CLIP_PRETRAINED
    specs = {
        "clip": (clip_model, o.clip_pretrained or clip_pretrained,
                 "--membench-clip-pretrained / --clip-pretrained"),
        "aesthetic": (DEFAULT_AESTHETIC_CLIP, o.aesthetic_pretrained or DEFAULT_AESTHETIC_PRETRAINED,
                      "--membench-aesthetic-pretrained / --aesthetic-pretrained"),
    }
    out: dict[str, Any] = {}
    for metric, (model, pretrained, flag) in specs.items():
        out[metric] = None
        if lenient and not _looks_like_file(pretrained) and not open_clip_weights_cached(model, pretrained):
            out[metric + "_reason"] = (f"{metric} score not available: open_clip {model} / {pretrained} weights are "
                                       f"not in the local cache (none can be downloaded here); pass a local "
                                       f"checkpoint with {flag} PATH")
            continue
        try:
            if metric == "clip":
                from membench_eval.metrics.clip_score import ClipScorer

                out[metric] = ClipScorer(model, pretrained, o.device)
            else:
                from membench_eval.metrics.aesthetic import AestheticScorer

                out[metric] = AestheticScorer(model, pretrained, o.aesthetic_head, o.device)
        except MissingWeightsError as exc:
            if not lenient or _looks_like_file(pretrained):
                raise MissingWeightsError(f"{metric} score needed for suite {suite.name}: {exc}") from exc
            out[metric + "_reason"] = f"{metric} score not available: {_one_line(exc)}"
    return out




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
