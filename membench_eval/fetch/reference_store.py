"""Where fetched reference images live: content-addressed objects plus an append-only coverage log.

Layout under ``<cache>/references/``:
  ``objects/ab/<sha256>.<ext>``  the original bytes (never re-encoded, so SSCD sees what was served)
  ``coverage.jsonl``             one record per fetch attempt; the last record for an image wins.
Each record is written and flushed as soon as its URL is done, so Ctrl-C loses nothing and a rerun
skips images already stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from membench_eval.paths import cache_dir

OK, DEAD = "ok", "dead"


@dataclass(frozen=True)
class FetchRecord:
    """What happened to one URL: ``ok`` with the stored object, or ``dead`` with the reason."""

    image_id: str
    url: str
    status: str
    sha256: str | None = None
    path: str | None = None  # relative to the reference store root
    reason: str | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    fetched_at: str = ""


@dataclass(frozen=True)
class Coverage:
    """How much of a suite's memorized-image side can be scored."""

    images_ok: int
    images_total: int
    prompts_scorable: int
    prompts_total: int
    # image_id -> why it is unavailable (dead link reason, missing local file, not fetched yet)
    unavailable: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.images_ok == self.images_total

    def summary(self) -> str:
        def pct(a: int, b: int) -> str:
            return f"{100.0 * a / b:.1f}%" if b else "n/a"

        images = (f"reference images {self.images_ok}/{self.images_total} available "
                  f"({pct(self.images_ok, self.images_total)})")
        if not self.prompts_total:  # a plain URL list has no prompts to score
            return images
        return (f"{images}; trigger prompts scorable {self.prompts_scorable}/{self.prompts_total} "
                f"({pct(self.prompts_scorable, self.prompts_total)})")

    def to_dict(self) -> dict[str, object]:
        return {"images_ok": self.images_ok, "images_total": self.images_total,
                "prompts_scorable": self.prompts_scorable, "prompts_total": self.prompts_total,
                "unavailable": dict(self.unavailable)}


class ReferenceStore:
    """Content-addressed image objects plus the append-only coverage log."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else cache_dir() / "references"
        self.coverage_file = self.root / "coverage.jsonl"

    @classmethod
    def in_cache(cls, cache: str | os.PathLike | None = None) -> "ReferenceStore":
        return cls((Path(cache) if cache is not None else cache_dir()) / "references")

    def records(self) -> dict[str, FetchRecord]:
        """The latest record per image id (unreadable lines, e.g. cut by a crash, are skipped)."""
        latest: dict[str, FetchRecord] = {}
        if not self.coverage_file.is_file():
            return latest
        names = set(FetchRecord.__dataclass_fields__)
        with self.coverage_file.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    raw = json.loads(line)
                    record = FetchRecord(**{k: v for k, v in raw.items() if k in names})
                except (json.JSONDecodeError, TypeError):
                    continue
                latest[record.image_id] = record
        return latest

    def append(self, record: FetchRecord) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with self.coverage_file.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(record), sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def put(self, data: bytes, ext: str) -> tuple[str, str]:
        """Store bytes under their sha256; returns (sha256, path relative to the root)."""
        sha = hashlib.sha256(data).hexdigest()
        rel = f"objects/{sha[:2]}/{sha}{ext}"
        target = self.root / rel
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".obj-", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, target)
            finally:
                Path(tmp).unlink(missing_ok=True)
        return sha, rel

    def available(self, record: FetchRecord | None, url: str) -> Path | None:
        """The stored file for ``record`` if it is ok, for this URL, and still on disk."""
        if record is None or record.status != OK or record.url != url or not record.path:
            return None
        path = self.root / record.path
        return path if path.is_file() else None
