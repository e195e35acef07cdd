"""A loopback fake of the Hub API calls ``HfApi.create_repo`` + ``upload_folder`` make (create, the
card's YAML check, preupload, commit), recording what arrives: the upload test runs without a network."""

from __future__ import annotations

import base64
import json

from tests.loopback_http import LoopbackServer, QuietHandler


class FakeHub(LoopbackServer):
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.calls: list[str] = []
        self.auth: set[str] = set()
        hub = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.calls.append(self.path)
                hub.auth.add(self.headers.get("authorization", ""))
                if self.path == "/api/repos/create":
                    req = json.loads(body)
                    return self._json({"url": f"{hub.base}/datasets/{req['organization']}/{req['name']}"})
                if self.path == "/api/validate-yaml":  # the dataset card's YAML header
                    return self._json({"errors": [], "warnings": []})
                if "/preupload/" in self.path:
                    files = json.loads(body)["files"]
                    return self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                 for f in files]})
                if "/commit/" in self.path:
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            hub.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    repo = "/".join(self.path.split("/")[3:5])
                    return self._json({"commitUrl": f"{hub.base}/datasets/{repo}/commit/{'1' * 40}",
                                       "commitOid": "1" * 40})
                self.send_error(404)

            def _json(self, data: dict) -> None:
                raw = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        super().__init__(Handler)
