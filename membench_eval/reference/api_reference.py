"""MemBench's reference performance computed from web image search (Google Custom Search), scored
exactly like a method's generations, and saved so the leaderboard can show it beside the paper's.

For each trigger prompt: the API's top image results (``image_search``; cached, resumable, quota
aware), downloaded by the safe fetcher, scored with the run's SSCD (Top-1/Top-3/SSCD>0.5 against
the prompt's memorized images) and CLIP (against the prompt). A result that IS a memorized image
(the same URL as one, or SSCD > 0.5 to one) is counted per prompt (``reference_copies``) and kept
unless ``exclude_memorized`` (then the row label says so). The result file records the query
dates, the prompts covered and the scorers, and is only used on runs with the same scorers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from membench_eval.errors import DataError
from membench_eval.fetch.image_files import open_image
from membench_eval.report.records import PromptResult

if TYPE_CHECKING:
    from membench_eval.suites.types import Prompt, Suite

RESULT_FORMAT = 1
COPY_THRESHOLD = 0.5


def reference_folder(cache: str | os.PathLike | None = None) -> Path:
    from membench_eval.paths import cache_dir

    return Path(cache) if cache is not None else cache_dir() / "image_search"


def result_path(folder: Path, suite: str) -> Path:
    return folder / f"reference-{suite}.json"


def api_label(dates: list[str], exclude_memorized: bool) -> str:
    span = dates[0] if len(set(dates)) == 1 else f"{min(dates)}..{max(dates)}"
    return f"reference (Google image search {span}{', memorized copies excluded' if exclude_memorized else ''})"


@dataclass
class ApiReference:
    label: str
    results: list[PromptResult]
    stopped: str | None  # the quota message when the run stopped early
    summary: dict[str, Any]


def compute_api_reference(prompts: list["Prompt"], client: Any, folder: Path, *, suite: "Suite",
                          score: Callable[[list[Any], list[str]], list[dict[str, Any]]],
                          aggregate: Callable[[str, "Prompt", list[dict[str, Any]]], PromptResult],
                          scorer_ids: Callable[[], dict[str, Any]], k: int = 10,
                          exclude_memorized: bool = False, progress: bool = False) -> ApiReference:
    """Search, download and score ``prompts`` of ``suite`` (those the quota allows); see the module
    docstring. The run's scorers come in as functions: ``score(images, texts)`` -> one score row
    per image, ``aggregate(label, prompt, rows)`` -> the prompt's trigger row, ``scorer_ids()`` ->
    ``{"sscd_backend", "clip_model"}`` (asked last: what the saved result is valid for)."""
    from membench_eval.reference.image_search import download_hits, search_prompts
    from membench_eval.fetch.reference_store import ReferenceStore

    found, stopped = search_prompts(client, [(p.prompt_id, p.text) for p in prompts], num=k, progress=progress)
    store = ReferenceStore(folder / "images")
    downloaded = download_hits(found, store, progress=progress)
    memorized_urls = {img.source for img in suite.memorized.values()}
    dates = sorted({r.date for r in found.values()}) or ["-"]
    label = api_label(dates, exclude_memorized)
    results, no_image, copies, total = [], [], 0, 0
    for p in prompts:
        if p.prompt_id not in found:
            continue
        usable = [(hit, path) for hit, path, _ in downloaded.get(p.prompt_id, []) if path is not None]
        images = []
        for _, path in usable:
            images.append(open_image(path, what="downloaded reference image"))
        if not images:
            no_image.append(p.prompt_id)
            continue
        rows = score(images, [p.text] * len(images))
        is_copy = [hit.link in memorized_urls or max(r["sscd"].values()) > COPY_THRESHOLD
                   for (hit, _), r in zip(usable, rows)]
        copies += sum(is_copy)
        total += len(rows)
        kept = [r for r, c in zip(rows, is_copy) if not (exclude_memorized and c)]
        if not kept:
            no_image.append(p.prompt_id)
            continue
        result = aggregate(label, p, kept)
        result.metrics["reference_copies"] = float(sum(is_copy))
        results.append(result)
    ids = scorer_ids()
    summary = {"format": RESULT_FORMAT, "suite": suite.name, "suite_key": suite.result_key, "label": label, "dates": dates,
               "prompts_total": len(prompts), "prompts_scored": len(results), "prompts_without_image": no_image,
               "images": total, "memorized_copies": copies, "exclude_memorized": exclude_memorized,
               "sscd_backend": ids["sscd_backend"], "clip_model": ids["clip_model"], "k": k}
    return ApiReference(label, results, stopped, summary)


def save(reference: ApiReference, folder: Path) -> Path:
    # Filed by result_key (name, plus the content hash of a suite file): never shared by two suites.
    path = result_path(folder, reference.summary.get("suite_key", reference.summary["suite"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**reference.summary, "per_prompt": [r.to_dict() for r in reference.results]},
                              indent=1) + "\n")
    os.replace(tmp, path)
    return path


def load_saved(folder: Path, suite: str) -> dict[str, Any] | None:
    path = result_path(folder, suite)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        data["per_prompt"] = [PromptResult.from_dict(d) for d in data["per_prompt"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(path, f"not a saved reference ({exc}); delete it and rerun `membench reference`") from None
    return data
