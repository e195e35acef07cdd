"""The static HTML report in a real browser: headless Chromium renders it from file://, and the
rendered DOM shows the expected table rows and that every image loaded.

Skips only when chromium is not installed and CI is not set; under CI=true a missing chromium fails
(``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from membench_eval.report import write_report
from membench_eval.store.run_store import RunStore
from membench_eval.suites import SD1_TARGETS
from tests.report.test_report_synthetic import ROWS, synthetic_run


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe:
        return exe
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed (CI installs it in .ci/run: apt-get install -y chromium)")
    pytest.skip("chromium is not installed (apt-get install -y chromium); CI runs this test")


def dump_dom(page: Path, profile: Path) -> str:
    """The DOM after the page loaded (and its script ran), as headless Chromium serialises it."""
    cmd = [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


class _Dom(HTMLParser):
    """Body attributes, table rows (``data-row`` per table id) and image sources of a DOM dump."""

    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str] = {}
        self.rows: dict[str, list[str]] = {}
        self.images: list[str] = []
        self.sections: list[str] = []
        self._table: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = a
        elif tag == "table":
            self._table = a.get("id", "")
            self.rows[self._table] = []
        elif tag == "tr" and "data-row" in a and self._table is not None:
            self.rows[self._table].append(a["data-row"])
        elif tag == "img":
            self.images.append(a.get("src", ""))
        elif tag == "section":
            self.sections.append(a.get("id", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None


def test_report_renders_with_its_tables_and_every_image(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path)
    board = run.board(suite="sd1", targets=SD1_TARGETS)
    with RunStore(run.store_dir) as store:
        files = write_report(board, tmp_path / "out", store=store, references=run.refs)
    assert files.warnings == []
    dom = _Dom()
    dom.feed(dump_dom(files.html, tmp_path / "profile"))

    # the page's script ran after every image settled, and every one has pixels
    n_images = 1 + len(ROWS)  # the frontier + one gallery per row
    assert dom.body.get("data-images-total") == str(n_images), dom.body
    assert dom.body.get("data-images-loaded") == "all", dom.body.get("data-images-broken")
    assert dom.body.get("data-images-ok") == str(n_images)
    assert sorted(dom.images) == sorted(["sd1_files/frontier.png"]
                                        + [f"sd1_files/{p.name}" for p in files.galleries.values()])

    methods = list(ROWS)
    reference = "reference (MemBench paper, image-search reference)"
    assert dom.rows["table-main"] == [reference] + methods
    assert dom.rows["table-delta"] == methods[1:]
    assert dom.rows["table-extra"] == methods
    assert dom.rows["table-memorization-trigger"] == methods
    assert dom.rows["table-memorization-general"] == methods
    assert dom.rows["table-paper"] == methods  # sd1: the paper beside ours
    for sid in ("main", "delta", "memorization", "paper", "frontier", "gallery", "run"):
        assert sid in dom.sections
    # self-contained: no external style sheet, script or image, nothing fetched from a network
    page = files.html.read_text()
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page) and "<link" not in page
    assert "<script src" not in page


def test_missing_chromium_skips_locally_and_fails_under_ci(monkeypatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium is not installed"):
        _chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="chromium is not installed"):
        _chromium()


def test_a_missing_image_is_seen_by_the_page(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path)
    with RunStore(run.store_dir) as store:
        files = write_report(run.board(), tmp_path / "out", store=store, references=run.refs)
    files.galleries["base"].unlink()
    dom = _Dom()
    dom.feed(dump_dom(files.html, tmp_path / "profile"))
    assert dom.body.get("data-images-loaded") == "some-failed"
    assert re.fullmatch(r"mini_files/gallery-base\.png", dom.body.get("data-images-broken", ""))
    assert "table-paper" not in dom.rows  # mini: no published numbers
