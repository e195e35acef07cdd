"""``membench data ...`` end to end: the counts the issue promises, errors as one line + exit 2."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

import membench_eval.suites as suites
from membench_eval.cli import main
from membench_eval.cli.data import FETCH_DEFAULTS
from membench_eval.fetch.settings import FetchSettings
from membench_eval.suites.types import MemorizedImage, Prompt, PromptSet, Suite, memorized_image_id
from tests.loopback_http import LoopbackServer, QuietHandler

EXPECTED = {
    "sd1_trigger_prompts": 3000, "sd1_memorized_images": 151, "coco_prompts": 5000,
    "webster_sd1_memorized": 345, "webster_sd2_memorized": 219, "webster_nonmemorized": 500,
    "wen_sdv1_500": 500,
}


def test_summary_subprocess(shared_data_dir: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from membench_eval.cli import main; sys.exit(main())",
         "data", "summary", "--data-dir", str(shared_data_dir), "--cache-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout)
    assert {k: counts[k] for k in EXPECTED} == EXPECTED and counts["sd1_url_entries"] == 7260


def test_summary_uses_environment(shared_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MEMBENCH_DATA_DIR", str(shared_data_dir))
    monkeypatch.setenv("MEMBENCH_CACHE_DIR", str(tmp_path))
    assert main(["data", "summary"]) == 0
    assert json.loads(capsys.readouterr().out)["coco_prompts"] == 5000


def test_wrong_file_in_data_dir_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "membench").mkdir()
    (tmp_path / "membench" / "SD1_final.csv").write_text(",prompt,urls\n0,a,['https://x.y/z.jpg']\n")
    assert main(["data", "summary", "--data-dir", str(tmp_path), "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "SD1_final.csv" in err and "not the upstream sd1_trigger_csv" in err


@pytest.mark.parametrize(
    ("kind", "name", "text", "words"),
    [
        ("trigger-csv", "sd2_final.csv", ",prompt\n0,a\n", "row 1, field 'urls': missing column"),
        ("trigger-csv", "sd2_final.csv", ",prompt,urls\n0,a,['http://a/b'\n", "row 2, field 'urls': not a Python list"),
        ("trigger-csv", "sd2_final.csv", ",prompt,urls\n0,a,[]\n", "row 2, field 'urls': empty list"),
        ("trigger-csv", "sd2_final.csv", ",prompt,urls\n0,a,['ftp://a/b']\n", "row 2, field 'urls': item 0 is not an http(s) URL"),
        ("trigger-csv", "sd2_final.csv", ",prompt,urls\n4,a,['http://a/b']\n4,b,['http://a/c']\n",
         "row 3, field 'index': duplicated prompt id 'sd2-4'"),
        ("trigger-csv", "sd2_final.csv",
         ",prompt,urls\n0,a cat,['http://a/b']\n1,b,['http://a/c']\n2,a cat,['http://a/d']\n",
         "row 4, field 'prompt': same prompt text as row 2 ('a cat')"),
        ("coco-captions", "captions.json", "", "empty caption file"),
        ("coco-captions", "captions.json", "{\"annotations\": [\n{]}", "row 2: invalid JSON"),
        ("caption-jsonl", "wen.jsonl", "{\"caption\": \"a\", \"url\": \"https://a/b\"}\nnot json\n", "row 2: invalid JSON"),
    ],
)
def test_validate_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, name: str,
                            text: str, words: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert main(["data", "validate", kind, str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and words in err


def test_validate_real_file(shared_data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "validate", "prompt-lines", str(shared_data_dir / "webster" / "nonmem500.txt")]) == 0
    assert json.loads(capsys.readouterr().out) == {"prompts": 500}


def test_fetch_references_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (9, 9, 200)).save(buf, "PNG")
    body = buf.getvalue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path != "/ok.png":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        ok, dead = MemorizedImage(memorized_image_id(base + "/ok.png"), base + "/ok.png"), \
            MemorizedImage(memorized_image_id(base + "/gone.png"), base + "/gone.png")
        suite = Suite(name="local", model="m", memorized={ok.image_id: ok, dead.image_id: dead},
                      trigger=PromptSet("trigger", (Prompt("l-0", "a", (ok.image_id,)),
                                                    Prompt("l-1", "b", (dead.image_id,))), 10))
        monkeypatch.setitem(suites._BUILDERS, "local", lambda data_dir: suite)
        assert main(["data", "fetch-references", "--suite", "local", "--cache-dir", str(tmp_path),
                     "--retries", "0", "--workers", "2"]) == 0
    finally:
        httpd.shutdown()
        httpd.server_close()
    out = capsys.readouterr().out
    report = json.loads(out[: out.rindex("}") + 1])
    assert report["images_ok"] == 1 and report["prompts_scorable"] == 1 and report["prompts_total"] == 2
    assert report["unavailable_by_reason"] == {"dead link: HTTP 404": 1}
    assert out.strip().endswith("trigger prompts scorable 1/2 (50.0%)")
    assert len(list((tmp_path / "references" / "objects").rglob("*.png"))) == 1


def test_validate_allow_duplicates_merges_and_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sd2_final.csv"
    path.write_text(",prompt,urls\n0,a cat,['http://a/b']\n1,b,['http://a/c']\n2,a cat,['http://a/d']\n")
    assert main(["data", "validate", "trigger-csv", str(path), "--allow-duplicates"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"prompts": 2, "memorized_images": 3, "url_entries": 3,
                                        "duplicate_prompts_merged": 1}
    warning = captured.err.strip()
    assert "\n" not in warning and warning.startswith("membench: warning: ") and "row 4 repeats row 2" in warning
    assert main(["data", "validate", "prompt-lines", str(path), "--allow-duplicates"]) == 2
    assert "--allow-duplicates applies to trigger-csv" in capsys.readouterr().err


def test_fetch_option_defaults_mirror_fetch_settings() -> None:
    defaults = FetchSettings()
    assert {name: getattr(defaults, name) for name in FETCH_DEFAULTS} == FETCH_DEFAULTS


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [("--retries", "-1", "invalid --retries -1: must be an integer >= 0"),
     ("--timeout", "0", "invalid --timeout 0.0: must be a finite number of seconds > 0"),
     ("--timeout", "-3", "invalid --timeout -3.0: must be a finite number of seconds > 0"),
     ("--total-timeout", "nan", "invalid --total-timeout nan"),
     ("--workers", "0", "invalid --workers 0: must be an integer >= 1")],
)
def test_fetch_references_rejects_bad_options_before_any_work(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        option: str, value: str, words: str) -> None:
    def never(data_dir: object) -> Suite:
        raise AssertionError("the suite was loaded before the options were checked")

    monkeypatch.setitem(suites._BUILDERS, "never", never)
    code = main(["data", "fetch-references", "--suite", "never", "--cache-dir", str(tmp_path), option, value])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith(f"membench: error: {words}"), err
    assert not any(tmp_path.iterdir())


def _png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), color).save(buf, "PNG")
    return buf.getvalue()


class _ImageServer(LoopbackServer):
    """Serves two PNGs; anything else is a 404. Counts requests."""

    def __init__(self) -> None:
        self.routes = {"/a.png": _png((200, 0, 0)), "/b.png": _png((0, 0, 200))}
        self.hits = 0
        server = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.hits += 1
                body = server.routes.get(self.path.split("#")[0])
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)


@pytest.fixture
def image_server():
    srv = _ImageServer()
    yield srv
    srv.close()


def test_fetch_references_from_a_url_list(tmp_path: Path, image_server: _ImageServer,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    a, b, gone = (image_server.url(p) for p in ("/a.png", "/b.png", "/gone.png"))
    urls = tmp_path / "mine.txt"
    urls.write_text(f"# my own reference images\n{a}\n\n  {b}  \n{gone}\n{a}\n")  # a repeat is fetched once
    out = tmp_path / "out"
    assert main(["data", "fetch-references", "--urls", str(urls), "--out", str(out),
                 "--retries", "0", "--workers", "2"]) == 0
    text = capsys.readouterr().out
    report = json.loads(text[: text.rindex("}") + 1])
    assert (report["images_ok"], report["images_total"]) == (2, 3)
    assert report["dead"] == {gone: "dead link: HTTP 404"}
    assert report["unavailable_by_reason"] == {"dead link: HTTP 404": 1}
    assert text.strip().endswith("reference images 2/3 available (66.7%)")
    assert image_server.hits == 3
    stored = sorted((out / "objects").rglob("*.png"))
    assert sorted(p.stem for p in stored) == sorted(hashlib.sha256(image_server.routes[k]).hexdigest()
                                                    for k in ("/a.png", "/b.png"))
    log = [json.loads(line) for line in (out / "coverage.jsonl").read_text().splitlines()]
    assert {r["url"]: r["status"] for r in log} == {a: "ok", b: "ok", gone: "dead"}
    assert all(r["sha256"] for r in log if r["status"] == "ok")


def test_url_list_csv_column(tmp_path: Path, image_server: _ImageServer, capsys: pytest.CaptureFixture[str]) -> None:
    urls = tmp_path / "mine.tsv"
    urls.write_text(f"name\turl\nred\t{image_server.url('/a.png')}\n")
    assert main(["data", "fetch-references", "--urls", str(urls), "--out", str(tmp_path / "o"),
                 "--retries", "0"]) == 0
    assert capsys.readouterr().out.strip().endswith("reference images 1/1 available (100.0%)")


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [("mine.txt", "{a}\n# fine\nftp://example.com/x.png\n",
      "row 3, field 'url': not an http(s) URL: 'ftp://example.com/x.png'"),
     ("mine.txt", "{a}\nnot a url\n", "row 2, field 'url': not an http(s) URL"),
     ("mine.csv", "id,url\n1,{a}\n2,\n", "row 3, field 'url': not an http(s) URL: ''"),
     ("mine.csv", "id,link\n1,{a}\n", "row 1, field 'url': no 'url' column"),
     ("mine.txt", "# nothing\n\n", "no URLs")],
)
def test_url_list_bad_lines_are_one_line_errors(tmp_path: Path, image_server: _ImageServer,
                                                capsys: pytest.CaptureFixture[str], name: str, text: str,
                                                words: str) -> None:
    urls = tmp_path / name
    urls.write_text(text.format(a=image_server.url("/a.png")))
    assert main(["data", "fetch-references", "--urls", str(urls), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(urls) in err and words in err
    assert image_server.hits == 0 and not (tmp_path / "o").exists()  # nothing fetched from a bad list


def test_urls_and_out_go_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "fetch-references", "--urls", str(tmp_path / "x.txt")]) == 2
    assert main(["data", "fetch-references", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.count("--urls FILE and --out DIR go together") == 2
