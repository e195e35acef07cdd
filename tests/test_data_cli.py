"""``membench data ...`` end to end: the counts the issue promises, errors as one line + exit 2."""

from __future__ import annotations

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
from membench_eval.suites.types import MemorizedImage, Prompt, PromptSet, Suite, memorized_image_id

EXPECTED = {
    "sd1_trigger_prompts": 3000, "sd1_memorized_images": 151, "coco_prompts": 5000,
    "webster_sd1_memorized": 345, "webster_sd2_memorized": 219, "webster_nonmemorized": 500,
    "wen_sdv1_500": 500,
}


def test_summary_subprocess(shared_data_dir: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from membench_eval.cli import main; sys.exit(main())",
         "data", "summary", "--data-dir", str(shared_data_dir), "--cache-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1],
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
