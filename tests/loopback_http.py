"""A threaded HTTP server on 127.0.0.1 for download tests (never the internet).

Each test module supplies its own request handler; this holds the start/stop scaffolding.
"""

from __future__ import annotations

import http.server
import threading


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """Base handler that keeps the test output clean (no access log lines)."""

    def log_message(self, *args: object) -> None:
        pass


class LoopbackServer:
    """Serves ``handler`` on an ephemeral 127.0.0.1 port until ``close()``."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def url(self, path: str) -> str:
        return self.base + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
