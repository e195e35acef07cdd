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


def dump_dom(page: Path, profile: Path, window: str = "1280,800") -> str:
    """The DOM after the page loaded (and its script ran), as headless Chromium serialises it."""
    cmd = [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--window-size={window}",
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
        self.scroll: list[dict[str, str]] = []  # div.scroll attributes, in page order
        self.banners: list[str] = []
        self.verdicts: list[str] = []
        self.title = ""
        self._table: str | None = None
        self._in: str | None = None
        self._text: list[str] = []

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
        elif tag == "div" and a.get("class") == "scroll":
            self.scroll.append(a)
        elif tag == "div" and "data-banner" in a:
            self.banners.append(a["data-banner"])
        elif tag in ("li", "title") and (tag == "title" or "data-verdict" in a):
            self._in, self._text = tag, []

    def handle_data(self, data: str) -> None:
        if self._in:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        if tag == self._in:
            (self.verdicts.append if tag == "li" else lambda t: setattr(self, "title", t))("".join(self._text))
            self._in = None


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


@pytest.mark.slow
def test_a_limited_run_says_so_first_and_its_main_table_fits_1280_px(tmp_path: Path) -> None:
    """At 1280x800 (a laptop): the banner and the title say LIMITED, one verdict line per method
    leads the page, and the main table needs no horizontal scrolling."""
    run = synthetic_run(tmp_path)
    board = run.board(metadata={**run.metadata, "limit": 2})
    with RunStore(run.store_dir) as store:
        files = write_report(board, tmp_path / "out", store=store, references=run.refs)
    dom = _Dom()
    dom.feed(dump_dom(files.html, tmp_path / "profile", window="1280,800"))
    assert dom.banners == ["LIMITED"] and "[LIMITED]" in dom.title
    assert dom.sections[0] == "verdict"
    by_label = dict(v.split(": ", 1) for v in dom.verdicts)
    assert list(by_label) == ["rna n=1", "rna n=6", "wen l=2"]
    # wen l=2 copies least (strength 0.2): its Top-1 interval lies below zero; CLIP is lower too
    assert re.match(r"removes copies: Top-1 -0\.\d{3} \[-0\.\d{3}, -0\.\d{3}\]", by_label["wen l=2"])
    assert "prompt fidelity: lower CLIP -0.016" in by_label["wen l=2"]
    main = dom.scroll[0]
    assert int(dom.body["data-viewport-width"]) == 1280
    assert int(main["data-scroll-width"]) <= int(main["data-client-width"]) <= 1280, main
    md = files.markdown.read_text()
    assert md.startswith("# MemBench leaderboard: suite `mini` [LIMITED]") and "> **LIMITED: --limit 2" in md
    assert "- **wen l=2**: removes copies: Top-1 -" in md
    # the gallery captions are HTML text (prompt, score, seed), not pixels
    page = files.html.read_text()
    assert "“a photo of memorized thing t" in page and ", seed 4" in page
