"""The manifest and the file resolver: local dir first, then cache, then a verified download.

Downloads are served by a local HTTP server on 127.0.0.1; nothing here touches the internet.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

from membench_eval.errors import DataError
from membench_eval.fetch.download import (
    ManifestEntry,
    UnverifiedFileWarning,
    load_manifest,
    resolve_file,
)
from tests.loopback_http import LoopbackServer, QuietHandler

PAYLOAD = b"prompt one\nprompt two\n" * 1000
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Server(LoopbackServer):
    """Serves ``routes`` (path -> bytes); counts requests per path."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        self.hits: Counter[str] = Counter()
        server = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                server.hits[self.path] += 1
                body = server.routes.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)



@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.close()


def entry(url: str, **kw: object) -> dict[str, ManifestEntry]:
    fields = {"name": "prompts", "path": "webster/prompts.txt", "url": url, "sha256": SHA, "size": len(PAYLOAD)}
    fields.update(kw)
    return {"prompts": ManifestEntry(**fields)}  # type: ignore[arg-type]


def no_partials(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.endswith(".part")]


def test_local_data_dir_wins_and_is_verified(tmp_path: Path, server: _Server) -> None:
    local = tmp_path / "data"
    (local / "webster").mkdir(parents=True)
    (local / "webster" / "prompts.txt").write_bytes(PAYLOAD)
    manifest = entry(server.base + "/prompts.txt")
    got = resolve_file("prompts", local, cache=tmp_path / "cache", manifest=manifest)
    assert got == local / "webster" / "prompts.txt"
    assert sum(server.hits.values()) == 0

    (local / "webster" / "prompts.txt").write_bytes(PAYLOAD[:-1] + b"X")  # same size, other bytes
    with pytest.raises(DataError, match="sha256") as info:
        resolve_file("prompts", local, cache=tmp_path / "cache", manifest=manifest)
    assert "prompts.txt" in str(info.value)
    (local / "webster" / "prompts.txt").write_bytes(PAYLOAD + b"\n")
    with pytest.raises(DataError, match="size"):
        resolve_file("prompts", local, cache=tmp_path / "cache", manifest=manifest)


def test_environment_variable_names_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "webster").mkdir()
    (tmp_path / "webster" / "prompts.txt").write_bytes(PAYLOAD)
    monkeypatch.setenv("MEMBENCH_DATA_DIR", str(tmp_path))
    got = resolve_file("prompts", cache=tmp_path / "cache", manifest=entry("http://127.0.0.1:9/unused"),
                       download=False)
    assert got == tmp_path / "webster" / "prompts.txt"


def test_download_then_cache_hit(tmp_path: Path, server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMBENCH_DATA_DIR", raising=False)
    server.routes["/prompts.txt"] = PAYLOAD
    manifest = entry(server.base + "/prompts.txt")
    cache = tmp_path / "cache"
    got = resolve_file("prompts", cache=cache, manifest=manifest, progress=False)
    assert got == cache / "data" / "webster" / "prompts.txt" and got.read_bytes() == PAYLOAD
    again = resolve_file("prompts", cache=cache, manifest=manifest, progress=False)
    assert again == got and server.hits["/prompts.txt"] == 1  # second resolve comes from the cache
    got.write_bytes(b"corrupted")  # a damaged cache copy is replaced, not trusted
    assert resolve_file("prompts", cache=cache, manifest=manifest, progress=False).read_bytes() == PAYLOAD
    assert server.hits["/prompts.txt"] == 2 and no_partials(cache)


def test_download_with_wrong_checksum_leaves_nothing(tmp_path: Path, server: _Server,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMBENCH_DATA_DIR", raising=False)
    server.routes["/prompts.txt"] = PAYLOAD[:-1] + b"X"
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="sha256"):
        resolve_file("prompts", cache=cache, manifest=entry(server.base + "/prompts.txt"), progress=False)
    assert not (cache / "data" / "webster" / "prompts.txt").exists() and no_partials(cache)


def test_mirror_used_when_primary_fails_and_errors_are_named(tmp_path: Path, server: _Server,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMBENCH_DATA_DIR", raising=False)
    server.routes["/mirror.txt"] = PAYLOAD
    manifest = entry(server.base + "/gone.txt", mirrors=(server.base + "/mirror.txt",))
    got = resolve_file("prompts", cache=tmp_path / "c1", manifest=manifest, progress=False)
    assert got.read_bytes() == PAYLOAD and server.hits["/gone.txt"] == 1

    with pytest.raises(DataError, match="HTTP 404") as info:
        resolve_file("prompts", cache=tmp_path / "c2", manifest=entry(server.base + "/gone.txt"), progress=False)
    assert "--data-dir" in str(info.value)


def test_no_download_mode_reports_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMBENCH_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="not found") as info:
        resolve_file("prompts", tmp_path / "nowhere", cache=tmp_path / "cache",
                     manifest=entry("http://127.0.0.1:9/x"), download=False)
    assert str(tmp_path / "nowhere" / "webster" / "prompts.txt") in str(info.value)
    with pytest.raises(DataError, match="unknown file"):
        resolve_file("nope", cache=tmp_path, manifest=entry("http://127.0.0.1:9/x"), download=False)


def test_zip_member_is_extracted_and_verified(tmp_path: Path, server: _Server,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMBENCH_DATA_DIR", raising=False)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("annotations/instances_val2017.json", b"{}")
        zf.writestr("annotations/captions_val2017.json", PAYLOAD)
    server.routes["/annotations.zip"] = buf.getvalue()
    manifest = entry(server.base + "/annotations.zip", path="coco/captions_val2017.json",
                     archive_member="annotations/captions_val2017.json")
    cache = tmp_path / "cache"
    got = resolve_file("prompts", cache=cache, manifest=manifest, progress=False)
    assert got == cache / "data" / "coco" / "captions_val2017.json" and got.read_bytes() == PAYLOAD
    assert sorted(p.name for p in got.parent.iterdir()) == ["captions_val2017.json"]  # archive removed

    bad = entry(server.base + "/annotations.zip", path="coco/other.json", archive_member="annotations/missing.json")
    with pytest.raises(DataError, match="no member"):
        resolve_file("prompts", cache=cache, manifest=bad, progress=False)
    assert no_partials(cache)


def test_unpinned_checksum_warns_loudly(tmp_path: Path, server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMBENCH_DATA_DIR", raising=False)
    server.routes["/weights.pt"] = PAYLOAD
    manifest = entry(server.base + "/weights.pt", sha256=None, size=None)
    with pytest.warns(UnverifiedFileWarning, match=f"UNVERIFIED.*{SHA}"):
        got = resolve_file("prompts", cache=tmp_path, manifest=manifest, progress=False)
    assert got.read_bytes() == PAYLOAD


def test_real_manifest_matches_shared_data(shared_data_dir: Path, tmp_path: Path) -> None:
    manifest = load_manifest()
    assert {"sd1_trigger_csv", "coco_captions_val2017", "aesthetic_head", "webster_sd1_mem345",
            "webster_sd2_mem219", "webster_nonmem500", "wen_sdv1_500", "sscd_disc_large"} <= set(manifest)
    for name, item in manifest.items():
        assert item.url.startswith("https://"), name  # TLS first; plain-http mirrors only behind a sha256
        assert item.sha256 or all(u.startswith("https://") for u in item.urls), name
        if name == "sscd_disc_large":
            assert item.sha256 is None  # documented as unpinned; flip this when it is pinned
            continue
        got = resolve_file(name, shared_data_dir, cache=tmp_path, manifest=manifest, download=False)
        assert got == shared_data_dir / item.path
        assert hashlib.sha256(got.read_bytes()).hexdigest() == item.sha256
    assert "f22a0fdcd24fa0f4a43bf7b9a8e42c8c78af302f" in manifest["sd1_trigger_csv"].url


def test_bad_manifest_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text('{"files": {"x": {"path": "../escape", "url": "https://a/b"}}}')
    with pytest.raises(DataError, match="inside the data dir"):
        load_manifest(path)
    path.write_text('{"files": {"x": {"path": "a", "url": "https://a/b", "sha256": "abc"}}}')
    with pytest.raises(DataError, match="64 hex"):
        load_manifest(path)
