"""Check a built wheel's file list against the checkout: what a run reads is in, build-only files are out.

The rule, independent of setup.py's globs: the wheel holds ``membench_eval/`` and the top-level folders
``benchmark_data/``, ``mitigations/``, ``detectors/``, ``extractions/`` under ``membench_eval/_bundled/``,
byte for byte (so the bundled methods' source fingerprints, and with them the store keys, are the
checkout's), minus the miniature benchmark's build scripts (``*.py`` and ``experiments/`` under
benchmark_data), and nothing else. Prints the wheel's size. Usage: python .ci/wheel_files.py WHEEL
"""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ("benchmark_data", "mitigations", "detectors", "extractions")
SKIP_PARTS = {"__pycache__", ".cache"}


def build_only(rel: Path) -> bool:
    """Files that rebuild the miniature benchmarks from a checkout; a run never reads them."""
    return rel.parts[0] == "benchmark_data" and (rel.suffix == ".py" or "experiments" in rel.parts
                                                 or rel.name == ".gitignore")


def expected() -> dict[str, Path]:
    """Wheel path -> checkout file, for every file the wheel must carry."""
    out: dict[str, Path] = {}
    for folder, prefix in [("membench_eval", "membench_eval")] + [(f, f"membench_eval/_bundled/{f}") for f in BUNDLED]:
        for file in sorted((ROOT / folder).rglob("*")):
            rel = file.relative_to(ROOT)
            if not file.is_file() or SKIP_PARTS & set(rel.parts) or file.suffix == ".pyc" or build_only(rel):
                continue
            if folder == "membench_eval" and file.suffix != ".py":
                continue
            out[prefix + "/" + rel.relative_to(folder).as_posix()] = file
    return out


def main(wheel: str) -> int:
    with zipfile.ZipFile(wheel) as zf:
        names = {n for n in zf.namelist() if not n.endswith("/")}
        want = expected()
        missing = sorted(set(want) - names)
        extra = sorted(n for n in names - set(want) if ".dist-info/" not in n)
        changed = sorted(n for n in set(want) & names
                         if hashlib.sha256(zf.read(n)).digest() != hashlib.sha256(want[n].read_bytes()).digest())
        unpacked = sum(i.file_size for i in zf.infolist())
    problems = [("missing", missing), ("unexpected", extra), ("differs from the checkout", changed)]
    for what, files in problems:
        for name in files:
            print(f"wheel_files: {what}: {name}", file=sys.stderr)
    size = Path(wheel).stat().st_size
    print(f"wheel_files: {Path(wheel).name}: {len(names)} files, {size / 2**20:.1f} MiB "
          f"({unpacked / 2**20:.1f} MiB unpacked)")
    return 1 if any(files for _, files in problems) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
