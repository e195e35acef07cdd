"""`membench reference --source api` end to end against a loopback server that speaks the Custom
Search response format: served images scored like a method's, memorized copies detected, the
result saved and shown by the next leaderboard beside the gallery reference."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.loopback_http import LoopbackServer, QuietHandler

MINI = Path(__file__).resolve().parents[2] / "benchmark_data" / "mini"


def _server(images: dict[str, bytes], answers: dict[str, list[str]]) -> LoopbackServer:
    """GET /customsearch/v1?q=... answers with the listed image paths; GET /img/NAME serves them."""
    holder: dict[str, str] = {}

    class Handler(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            url = urlsplit(self.path)
            if url.path == "/customsearch/v1":
                q = parse_qs(url.query)
                names = answers.get(q["q"][0], [])
                body = {"kind": "customsearch#search", "searchInformation": {"totalResults": str(len(names))},
                        "items": [{"link": f"{holder['base']}/img/{n}", "mime": "image/png",
                                   "image": {"width": 64, "height": 64}} for n in names]}
                data, ctype = json.dumps(body).encode(), "application/json"
            elif url.path.startswith("/img/") and url.path[5:] in images:
                data, ctype = images[url.path[5:]], "image/png"
            else:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = LoopbackServer(Handler)
    holder["base"] = server.base
    return server


@pytest.mark.slow
def test_api_reference_scores_served_images_and_joins_the_leaderboard(tmp_path: Path, monkeypatch, capsys):
    import csv

    from membench_eval.cli import main

    with open(MINI / "trigger_prompts.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    first, second = rows[0], rows[1]
    own = first["urls"].split("mini://")[1].strip("[]'\" ")
    gallery = sorted((MINI / "gallery").glob("general-*.png"))[:3]
    images = {p.name: p.read_bytes() for p in gallery}
    images["copy.png"] = (MINI / "references" / own).read_bytes()  # the memorized image itself
    answers = {first["prompt"]: ["copy.png", gallery[0].name, gallery[1].name],
               second["prompt"]: [gallery[1].name, gallery[2].name]}
    server = _server(images, answers)
    monkeypatch.setenv("GOOGLE_API_KEY", "test-key-123")
    monkeypatch.setenv("GOOGLE_CSE_ID", "test-cx")
    monkeypatch.setenv("MEMBENCH_CACHE_DIR", str(tmp_path / "cache"))
    try:
        args = ["reference", "--suite", "mini", "--source", "api", "--limit", "2", "--endpoint",
                server.url("/customsearch/v1"), "--no-progress"]
        assert main(args) == 0
        out = capsys.readouterr().out
        saved = json.loads((tmp_path / "cache" / "image_search" / "reference-mini.json").read_text())
        assert saved["prompts_scored"] == 2 and saved["images"] == 5 and saved["memorized_copies"] == 1
        per = {r["prompt_id"]: r for r in saved["per_prompt"]}
        assert per["mini-t000"]["metrics"]["top1_sscd"] > 0.9  # the served copy is found
        assert per["mini-t000"]["metrics"]["reference_copies"] == 1.0
        assert per["mini-t001"]["metrics"]["top1_sscd"] < 0.5
        assert "test-key-123" not in json.dumps(saved) and "test-key-123" not in out
        assert "1 of 5 images are memorized copies" in out
        # With the copies excluded the first prompt scores its two other images only.
        assert main([*args, "--exclude-memorized"]) == 0
        capsys.readouterr()
        excl = json.loads((tmp_path / "cache" / "image_search" / "reference-mini.json").read_text())
        assert "memorized copies excluded" in excl["label"]
        assert {r["prompt_id"]: r for r in excl["per_prompt"]}["mini-t000"]["metrics"]["top1_sscd"] < 0.5
    finally:
        server.close()

    # The next run's leaderboard shows the saved web reference (trigger prompts only) and the
    # gallery reference, no network needed.
    assert main(["run", "--suite", "mini", "--limit", "2", "--store", str(tmp_path / "store"), "--out",
                 str(tmp_path / "lb"), "--no-progress"]) == 0
    md = (tmp_path / "lb" / "mini.limit-2.md").read_text()
    assert "| reference (Google image search " in md and "memorized copies excluded" in md
    assert "| reference (local gallery, mini-clip retrieval)" in md
