"""Memorized-image candidates: cluster many generations of a high-score prompt by SSCD.

A prompt that triggers a memorized image produces near-copies of it from most seeds; ordinary
prompts produce varied images. MemBench generates 50 images of a chain's best prompt and runs
DBSCAN on the SSCD distance ``1 - cosine`` (clipped at 0) with eps 0.5 and min_samples 3: every
cluster is a candidate memorized image (then checked by reverse image search).

Layout written (PNG + JSON only)::

    <out>/<chain>/images/<i>.png          all generated images (i = image index = seed offset)
    <out>/<chain>/cluster_<k>/<i>.png     images of cluster k
    <out>/<chain>/manifest.json           prompt, score, seeds, cluster sizes and members
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline
    from PIL import Image

# images -> (n, d) L2-normalised SSCD embeddings.
Embedder = Callable[[Sequence["Image.Image"]], np.ndarray]

DEFAULT_EPS = 0.5
DEFAULT_MIN_SAMPLES = 3
DEFAULT_N_IMAGES = 50


def cluster_embeddings(embeddings: np.ndarray, *, eps: float = DEFAULT_EPS, min_samples: int = DEFAULT_MIN_SAMPLES) -> list[list[int]]:
    """DBSCAN clusters (lists of image indices, largest first) on distance ``max(0, 1 - cos)``."""
    from sklearn.cluster import DBSCAN

    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] == 0:
        raise ValueError(f"expected an (n, d) embedding matrix, got shape {emb.shape}")
    dist = np.clip(1.0 - emb @ emb.T, 0.0, None)
    np.fill_diagonal(dist, 0.0)
    labels = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit(dist).labels_
    clusters = [np.flatnonzero(labels == lab).tolist() for lab in sorted(set(labels.tolist()) - {-1})]
    return sorted(clusters, key=lambda c: (-len(c), c[0]))


def generate_images(
    pipe: "StableDiffusionPipeline",
    prompt: str,
    n: int,
    *,
    seed: int = 0,
    batch_size: int = 8,
    progress: bool = False,
    **generation: Any,
) -> list["Image.Image"]:
    """``n`` images of ``prompt``; image ``i`` uses its own generator seeded ``seed + i``."""
    import torch
    from tqdm.auto import tqdm

    images: list["Image.Image"] = []
    for start in tqdm(range(0, n, batch_size), desc="candidate images", disable=not progress):
        idx = list(range(start, min(n, start + batch_size)))
        gens = [torch.Generator("cpu").manual_seed(seed + i) for i in idx]
        out = pipe(prompt=[prompt] * len(idx), generator=gens, output_type="pil", **generation)
        images.extend(out.images)
    return images


def write_clusters(
    out_dir: str | Path,
    *,
    prompt: str,
    score: float,
    images: Sequence["Image.Image"],
    clusters: list[list[int]],
    seeds: Sequence[int],
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write images, cluster folders and ``manifest.json`` (last, atomically: its presence = done)."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        img.save(out / "images" / f"{i}.png")
    for k, members in enumerate(clusters):
        folder = out / f"cluster_{k}"
        folder.mkdir(exist_ok=True)
        for i in members:
            images[i].save(folder / f"{i}.png")
    manifest = {
        "prompt": prompt,
        "score": float(score),
        "n_images": len(images),
        "seeds": [int(s) for s in seeds],
        "n_clusters": len(clusters),
        "cluster_sizes": [len(c) for c in clusters],
        "clusters": [{"folder": f"cluster_{k}", "images": c} for k, c in enumerate(clusters)],
        **(meta or {}),
    }
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(out / "manifest.json")
    return manifest


def cluster_candidates(
    pipe: "StableDiffusionPipeline",
    embed: Embedder,
    prompt: str,
    score: float,
    out_dir: str | Path,
    *,
    n_images: int = DEFAULT_N_IMAGES,
    seed: int = 0,
    eps: float = DEFAULT_EPS,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    batch_size: int = 8,
    progress: bool = False,
    meta: dict[str, Any] | None = None,
    **generation: Any,
) -> dict[str, Any]:
    """Generate, embed, cluster and write one prompt's candidates; skipped if already written."""
    out = Path(out_dir)
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        done = json.loads(manifest_path.read_text(encoding="utf-8"))
        if done.get("prompt") == prompt and done.get("n_images") == n_images:
            return done
    images = generate_images(pipe, prompt, n_images, seed=seed, batch_size=batch_size, progress=progress, **generation)
    emb = np.asarray(embed(images))
    clusters = cluster_embeddings(emb, eps=eps, min_samples=min_samples)
    extra = {"eps": eps, "min_samples": min_samples, "generation": {k: v for k, v in generation.items() if _jsonable(v)}}
    return write_clusters(out, prompt=prompt, score=score, images=images, clusters=clusters,
                          seeds=[seed + i for i in range(n_images)], meta={**extra, **(meta or {})})


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except TypeError:
        return False
