"""``membench sscd IMAGE_A IMAGE_B``: the SSCD similarity of two images, as one number on stdout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sscd",
        help="SSCD copy-detection similarity of two images",
        description="Print the SSCD cosine similarity of two images (one number on stdout; "
        "the backend used is reported on stderr).",
    )
    p.add_argument("image_a", type=Path, metavar="IMAGE_A")
    p.add_argument("image_b", type=Path, metavar="IMAGE_B")
    p.add_argument(
        "--backend",
        choices=["auto", "disc_large", "disc_mixup_onnx"],
        default="auto",
        help="SSCD model; auto = disc_large (the paper's) when its file is found, else disc_mixup_onnx",
    )
    p.add_argument("--weights", type=Path, default=None, help="local model file for the chosen backend")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from membench_eval.errors import DataError
    from membench_eval.metrics.sscd import default_backend, load_sscd

    for path in (args.image_a, args.image_b):
        if not path.is_file():
            raise DataError(path, "image file not found")
    backend = args.backend
    if backend == "auto":
        if args.weights is not None:
            raise DataError(args.weights, "--weights needs an explicit --backend")
        backend = default_backend()
    model = load_sscd(backend, weights=args.weights, device=args.device)
    try:
        emb = model.embed([args.image_a, args.image_b], batch_size=2)
    except OSError as exc:  # PIL cannot read one of the files
        raise DataError(getattr(exc, "filename", None) or f"{args.image_a} / {args.image_b}", str(exc)) from exc
    print(f"sscd backend: {model.backend}", file=sys.stderr)
    print(f"{float(emb[0] @ emb[1]):.6f}")
    return 0
