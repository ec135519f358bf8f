"""A counting reverse proxy in front of a tracking server: every request that reaches the
server passes through it and is recorded (method, path, and when it arrived and was
answered), whichever client sent it (MLflow's client, the lean reader, a CLI process). Used to
count registry calls and sequential round trips.

A *round* is one step of the longest chain of requests where each one arrived after the one
before it was answered: requests whose lifetimes overlap, sent at once, cost one round; a
request that may have waited for an answer costs one more.

>>> with CountingProxy("http://127.0.0.1:5000") as proxy:
...     run_something(tracking_uri=proxy.uri)
...     proxy.calls   # [("GET", "/api/2.0/mlflow/registered-models/alias?..."), ...]
...     proxy.registry_rounds()   # [[call, call, call], [call], ...]
"""

from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailers", "transfer-encoding", "upgrade", "host", "content-length"}


class CountingProxy:
    """Forwards HTTP/1.1 requests to ``upstream`` and records each one in ``calls``."""

    def __init__(self, upstream: str, latency: float = 0.0) -> None:
        """``latency``: seconds each answer is held back, as a network between client and
        server would (requests sent at once then overlap however busy the machine is)."""
        parts = urlsplit(upstream)
        self._latency = latency
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self.calls: list[tuple[str, str]] = []
        # (method, path, arrived, answered): time.monotonic() at the proxy
        self.spans: list[tuple[str, str, float, float]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # silent

            def _forward(self) -> None:
                arrived = time.monotonic()
                try:
                    self._relay()
                finally:
                    with proxy._lock:
                        proxy.spans.append((self.command, self.path, arrived,
                                            time.monotonic()))

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy._lock:
                    proxy.calls.append((self.command, self.path))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn = http.client.HTTPConnection(proxy._host, proxy._port, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    answer = conn.getresponse()
                    payload = answer.read()
                finally:
                    conn.close()
                if proxy._latency:
                    time.sleep(proxy._latency)
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in _HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def registry_calls(self) -> list[tuple[str, str]]:
        """The calls to MLflow's REST API (``/api/...``), artifact proxying included."""
        with self._lock:
            return [c for c in self.calls if c[1].startswith("/api/")]

    def registry_rounds(self) -> list[list[tuple[str, str]]]:
        """The calls to MLflow's REST API in sequential rounds (see the module's docstring).

        Counted strictly: a request may depend on every request answered before it arrived,
        so its round is one more than the latest round among those (the longest chain of
        request-after-answer). Requests sent at once share a round; a request sent after an
        answer never shares its round, even while other requests are still in flight."""
        with self._lock:
            spans = sorted((s for s in self.spans if s[1].startswith("/api/")),
                           key=lambda s: s[2])
        depth: list[int] = []
        for i, (_, _, arrived, _) in enumerate(spans):
            before = [depth[j] for j in range(i) if spans[j][3] < arrived]
            depth.append(1 + max(before, default=0))
        rounds: list[list[tuple[str, str]]] = [[] for _ in range(max(depth, default=0))]
        for (method, path, _, _), d in zip(spans, depth, strict=True):
            rounds[d - 1].append((method, path))
        return rounds

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.spans.clear()

    def start(self) -> CountingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> CountingProxy:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
