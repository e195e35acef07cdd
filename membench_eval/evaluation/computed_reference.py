"""Computed reference rows inside an evaluation: the local-gallery reference and a saved web
image-search reference, scored with the evaluation's own SSCD and CLIP scorers like generations.

The evaluation hands in what each step needs (the gallery, the CLIP scorer, its scoring and
aggregation functions, its scorer identities), so this module never reaches back into it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from membench_eval.fetch.image_files import open_image

if TYPE_CHECKING:
    from membench_eval.evaluation.plan import MethodSpec
    from membench_eval.report.records import PromptResult
    from membench_eval.suites.types import Prompt, Suite

# images, their texts -> one score row per image (``Evaluation.score_images``)
ScoreImages = Callable[[list[Any], list[str]], list[dict[str, Any]]]


def saved_api_reference(folder: Path, suite_key: str, *, sscd_backend: Callable[[], str],
                        clip_model: Callable[[], str | None],
                        ) -> "tuple[MethodSpec, dict[str, PromptResult]] | None":
    """The web image-search reference saved by `membench reference --source api` in ``folder``,
    when it was scored with this run's SSCD backend and CLIP model (each asked for only when a
    saved reference exists, and CLIP only when SSCD matches: asking loads the scorer)."""
    from membench_eval.evaluation.plan import MethodSpec
    from membench_eval.reference.api_reference import load_saved

    data = load_saved(folder, suite_key)
    if data is None or data.get("sscd_backend") != sscd_backend():
        return None
    if data.get("clip_model") != clip_model():
        return None
    spec = MethodSpec(data["label"], "computed_reference", "reference", {}, roles=("trigger",))
    return spec, {r.prompt_id: r for r in data["per_prompt"]}


def gallery_label(suite: "Suite") -> str:
    from membench_eval.reference.gallery import Gallery

    return Gallery.label((suite.clip_backend or ("ViT-g-14", ""))[0])


def gallery_reference(gallery: Any, clip: Any, prompts: Sequence["Prompt"], k: int, *, score: ScoreImages,
                      aggregate: Callable[["Prompt", list[dict[str, Any]]], "PromptResult"]) -> list["PromptResult"]:
    """The suite's local image-search reference (``membench_eval.reference.gallery``): per prompt,
    the top-``k`` images of ``gallery`` by the ``clip`` scorer, scored (``score``) and aggregated
    (``aggregate``) like generations; ``reference_copies`` counts retrieved images with SSCD > 0.5
    to a memorized image."""
    from membench_eval.reference.gallery import COPY_THRESHOLD, retrieve

    picks = retrieve(clip, gallery, [p.text for p in prompts], k)
    results = []
    for prompt, chosen in zip(prompts, picks):
        images = []
        for i in chosen:
            images.append(open_image(gallery.files[i], what="gallery image"))
        rows = score(images, [prompt.text] * len(images))
        result = aggregate(prompt, rows)
        result.metrics["reference_copies"] = float(sum(max(r["sscd"].values()) > COPY_THRESHOLD for r in rows))
        results.append(result)
    return results


def describe(label: str, results: Sequence["PromptResult"]) -> str:
    """The leaderboard metadata's line on a computed reference row."""
    rs = [r for r in results if r.label == label]
    images = sum(r.n_images for r in rs)
    copies = int(sum(r.metrics.get("reference_copies") or 0 for r in rs))
    return (f"{label}: {images} retrieved images over {len(rs)} prompts, {copies} of them copies of a "
            f"memorized image (SSCD > 0.5, kept); retrieval uses the CLIP model that scores the CLIP "
            f"column, so its CLIP is an upper-biased proxy")
