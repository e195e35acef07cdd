"""Memorized reference images of a suite: fetch each URL once, then say which are available.

MemBench ships only URLs for its 151 memorized images, and many have died since. The reference
script stops in a debugger on the first dead link; here a dead link is recorded (with its reason)
and excluded, and every consumer reports coverage: how many memorized images are available and how
many trigger prompts are scorable (at least one of their images available).

The parts: :mod:`membench_eval.fetch.settings` (limits), :mod:`membench_eval.fetch.image_fetch` (one
URL, safely), :mod:`membench_eval.fetch.reference_store` (objects + coverage log), and
:mod:`.url_lists` (a user's own URL list, fetched by this same code path).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Iterable

from membench_eval.fetch.image_fetch import fetch_one
from membench_eval.fetch.reference_store import DEAD, OK, Coverage, FetchRecord, ReferenceStore
from membench_eval.fetch.settings import FetchSettings, validate_fetch_settings
from membench_eval.suites.types import MemorizedImage, Suite


def fetch_references(
    images: Iterable[MemorizedImage],
    cache: str | os.PathLike | None = None,
    *,
    settings: FetchSettings | None = None,
    store: ReferenceStore | None = None,
    progress: bool | None = None,
    retry_dead: bool = True,
) -> dict[str, FetchRecord]:
    """Fetch every distinct web image once (already-stored ones are skipped); returns the latest
    record per image id. Local images are ignored. Dead links are recorded, never raised."""
    import requests
    from tqdm import tqdm

    settings = settings or FetchSettings()
    validate_fetch_settings(settings)  # again: a settings object may bypass __post_init__
    store = store or ReferenceStore.in_cache(cache)
    records = store.records()
    todo: dict[str, MemorizedImage] = {}
    for image in images:
        if image.is_local or image.image_id in todo:
            continue
        record = records.get(image.image_id)
        if store.available(record, image.source) is not None:
            continue
        if record is not None and record.status == DEAD and record.url == image.source and not retry_dead:
            continue
        todo[image.image_id] = image
    if not todo:
        return records

    local = threading.local()

    def work(image: MemorizedImage) -> FetchRecord:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return fetch_one(image, store, settings, local.session)

    with ThreadPoolExecutor(max_workers=max(1, settings.workers)) as pool, \
            tqdm(total=len(todo), unit="img", desc="reference images",
                 disable=(not progress) if progress is not None else None) as bar:
        futures = [pool.submit(work, image) for image in todo.values()]
        try:
            for future in as_completed(futures):
                record = future.result()
                store.append(record)  # one writer (this thread); flushed per record
                records[record.image_id] = record
                bar.update(1)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return records


def reference_paths(suite: Suite, cache: str | os.PathLike | None = None, *,
                    store: ReferenceStore | None = None) -> tuple[dict[str, Path], Coverage]:
    """Paths of the suite's available memorized images, and its coverage. Never touches the network.

    Local images (the mini suite) are resolved against ``suite.reference_dir``; web images come
    from the reference store filled by :func:`fetch_references`.
    """
    store = store or ReferenceStore.in_cache(cache)
    records = store.records() if any(not im.is_local for im in suite.memorized.values()) else {}
    paths: dict[str, Path] = {}
    unavailable: dict[str, str] = {}
    for image_id, image in suite.memorized.items():
        if image.is_local:
            path = Path(image.source)
            if not path.is_absolute() and suite.reference_dir is not None:
                path = suite.reference_dir / path
            if path.is_file():
                paths[image_id] = path
            else:
                unavailable[image_id] = f"missing local file {path}"
            continue
        record = records.get(image_id)
        found = store.available(record, image.source)
        if found is not None:
            paths[image_id] = found
        elif record is not None and record.url == image.source and record.status == DEAD:
            unavailable[image_id] = f"dead link: {record.reason}"
        elif record is not None and record.status == OK and record.url == image.source:
            unavailable[image_id] = "stored file missing from the cache (fetch again)"
        else:
            unavailable[image_id] = f"not fetched yet (membench data fetch-references --suite {suite.cli_name})"
    prompts = suite.trigger.prompts if suite.trigger is not None else ()
    scorable = sum(1 for p in prompts if any(i in paths for i in p.memorized_ids))
    coverage = Coverage(images_ok=len(paths), images_total=len(suite.memorized),
                        prompts_scorable=scorable, prompts_total=len(prompts), unavailable=unavailable)
    return paths, coverage


def fetch_suite_references(suite: Suite, cache: str | os.PathLike | None = None, *,
                           settings: FetchSettings | None = None, progress: bool | None = None,
                           retry_dead: bool = True,
                           store: ReferenceStore | None = None) -> tuple[dict[str, Path], Coverage]:
    """Fetch a suite's web images (resumable), then report what is available. ``store`` defaults to
    the cache's reference store (where scoring looks); a URL list passes its own folder."""
    store = store or ReferenceStore.in_cache(cache)
    fetch_references(suite.memorized.values(), settings=settings, store=store, progress=progress,
                     retry_dead=retry_dead)
    return reference_paths(suite, store=store)
