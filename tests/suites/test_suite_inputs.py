"""Inputs that blew up (issue 33, cases 5 and 10): every image the harness opens goes through one
checked loader with the fetcher's pixel limit (exit 2 naming the file), and ``urls`` list literals
parse strictly, naming row and field."""

from __future__ import annotations

import csv
import zlib
import struct
from pathlib import Path

import pytest

from membench_eval.cli import main
from membench_eval.errors import DataError
from membench_eval.fetch.settings import FetchSettings
from membench_eval.fetch.image_files import MAX_IMAGE_PIXELS, ImageFileError, open_image
from membench_eval.metrics.preprocessing import to_rgb_image
from membench_eval.suites import get_suite
from tests.suites.test_suite_file import folder  # noqa: F401 - the suite-folder fixture


def _huge_png(path: Path, width: int, height: int) -> Path:
    """A valid PNG header claiming ``width`` x ``height`` (a few hundred bytes: decompressing it is the bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_the_loader_shares_the_fetchers_limit_and_names_the_file(tmp_path: Path):
    assert FetchSettings().max_pixels == MAX_IMAGE_PIXELS
    for width, height in ((9000, 9000), (40000, 40000)):  # over the limit; and over PIL's own bomb limit
        big = _huge_png(tmp_path / f"big{width}.png", width, height)
        with pytest.raises(ImageFileError, match=rf"big{width}\.png.*(too many pixels|readable image)") as info:
            to_rgb_image(big)  # the SSCD path for local references
        assert info.value.exit_code == 2
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ImageFileError, match=r"notes\.png: image is not a readable image"):
        open_image(text)


@pytest.mark.parametrize("bad", ["huge", "text"])
def test_suite_check_refuses_a_bad_local_reference_with_exit_2(folder: Path, bad: str, capsys):  # noqa: F811
    target = folder / "refs" / "coffee.png"
    target.unlink()
    if bad == "huge":
        _huge_png(target, 9000, 9000)
    else:
        target.write_text("<html>not an image</html>")
    assert main(["suite", "check", str(folder / "s.toml")]) == 2
    err = capsys.readouterr().err
    assert "t.csv, row 3, field 'urls': reference 'coffee.png'" in err and "coffee.png" in err


@pytest.mark.parametrize("cell, expected", [
    ("['astronaut.png' 'coffee.png']", "two strings without a comma"),
    ("['astronaut.png', 'coffee.png'", "not a Python list literal"),
    ("[1, 2]", "expected a list of strings"),
])
def test_urls_list_literals_parse_strictly(folder: Path, cell: str, expected: str):  # noqa: F811
    with open(folder / "t.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["", "prompt", "urls"])
        w.writerow(["t000", "official nasa portrait of astronaut eileen collins", cell])
    with pytest.raises(DataError, match=rf"t\.csv, row 2, field 'urls': {expected}"):
        get_suite(str(folder / "s.toml"))
