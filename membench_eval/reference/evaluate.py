"""Computed reference rows inside an evaluation: the local-gallery reference and a saved web
image-search reference, scored with the evaluation's own SSCD and CLIP scorers like generations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from membench_eval.errors import MembenchError

if TYPE_CHECKING:
    from membench_eval.evaluation_plan import MethodSpec
    from membench_eval.report.records import PromptResult
    from membench_eval.suites.types import Prompt, Suite


def saved_api_reference(ev: Any) -> list["MethodSpec"]:
    """The web image-search reference saved by `membench reference --source api`, when it was
    scored with this run's SSCD and CLIP models (loads those scorers only if a saved one exists)."""
    from membench_eval.reference.api_reference import reference_folder, saved_spec

    found = saved_spec(ev, reference_folder(ev.options.reference_dir))
    if found is None:
        return []
    ev.__dict__["_saved_reference"] = found
    return [found[0]]


def gallery_label(suite: "Suite") -> str:
    from membench_eval.reference.gallery import Gallery

    return Gallery.label((suite.clip_backend or ("ViT-g-14", ""))[0])


def gallery_reference(ev: Any, method: "MethodSpec", role: str, prompts: Sequence["Prompt"],
                      k: int) -> list["PromptResult"]:
    """The suite's local image-search reference (``membench_eval.reference.gallery``): per prompt,
    the top-``k`` gallery images by the suite's CLIP model, scored like generations;
    ``reference_copies`` counts retrieved images with SSCD > 0.5 to a memorized image."""
    from PIL import Image

    from membench_eval.reference.gallery import COPY_THRESHOLD, load_gallery, retrieve

    if ev.clip is None:
        raise MembenchError(f"suite {ev.suite.name}: the gallery reference retrieves by CLIP, which is not "
                            f"available: {ev.unavailable().get('clip')}")
    gallery = ev._load_once("gallery", lambda: load_gallery(ev.suite.reference_gallery))
    picks = retrieve(ev.clip, gallery, [p.text for p in prompts], k)
    results = []
    for prompt, chosen in zip(prompts, picks):
        images = []
        for i in chosen:
            with Image.open(gallery.files[i]) as im:
                images.append(im.convert("RGB"))
        rows = ev._score_loaded(images, [prompt.text] * len(images))
        result = ev._aggregate(method, role, prompt, rows)
        result.metrics["reference_copies"] = float(sum(max(r["sscd"].values()) > COPY_THRESHOLD for r in rows))
        results.append(result)
    return results
