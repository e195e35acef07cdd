"""Damaged lines of a store's shard files: set aside on read, removed by ``store verify --repair``.

Why: one invalid complete line (a bit flip, an editor's stray keystroke) used to make every run and
``verify --repair`` exit 2 with no way out. A reader now copies such a line to
``quarantine/lines/<area>.<shard>.line<N>.jsonl`` (named by shard and line), skips it and reports it,
so the run continues. The line stays in its shard until ``verify --repair`` rewrites the shard
without it: a running writer appends to its own shard through an open file, so shards are only
rewritten when no run holds a claim (as ``prune`` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from membench_eval.store.atomic import write_atomic


@dataclass(frozen=True)
class DamagedLine:
    """One line a reader ignored: where it is, why, and what it would have described (``ident``:
    an image key, or (key, metric, backend) of a score; None for a line that does not parse)."""

    path: Path
    number: int
    why: str
    ident: object = None


def set_aside(root: Path, path: Path, number: int, raw: bytes) -> tuple[Path | None, str]:
    """Copy line ``number`` of shard ``path`` (bytes ``raw``) to ``quarantine/lines/``; returns (the
    copy, or None when the store is read-only, and a note for the problem line)."""
    dest = root / "quarantine" / "lines" / f"{path.parent.name}.{path.stem}.line{number}.jsonl"
    if dest.is_file():
        return dest, f"copied to {dest}"
    try:
        write_atomic(dest, raw.rstrip(b"\n") + b"\n")
    except OSError as exc:
        return None, f"not copied to quarantine ({dest.parent}: {exc.strerror or exc})"
    return dest, f"copied to {dest}"


def drop_lines(root: Path, damaged: list[DamagedLine]) -> list[str]:
    """Rewrite each shard without its damaged lines (each copied to quarantine first); one line
    per shard saying what was removed. Raises OSError (a read-only store) before changing a shard
    whose lines could not be copied."""
    by_shard: dict[Path, dict[int, DamagedLine]] = {}
    for d in damaged:
        by_shard.setdefault(d.path, {})[d.number] = d
    done = []
    for shard, lines in sorted(by_shard.items()):
        data = shard.read_bytes().split(b"\n")
        for number in lines:
            copy, note = set_aside(root, shard, number, data[number - 1])
            if copy is None:
                raise OSError(f"{shard}: line {number} {note}")
        kept = [line for n, line in enumerate(data, start=1) if n not in lines]
        write_atomic(shard, b"\n".join(kept))
        done.append(f"{shard}: removed line(s) {', '.join(str(n) for n in sorted(lines))} "
                    f"(copies in {root / 'quarantine' / 'lines'})")
    return done
