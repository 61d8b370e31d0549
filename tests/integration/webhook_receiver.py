"""A local HTTP receiver for alert webhooks: records every POST (path, JSON body, when) on
127.0.0.1 at a free port, in a thread of the test process. Paths choose its behaviour:
/fail-N/... answers 500 to the first N requests on that path, then 200; /hang/... never answers
(until stop); anything else answers 200. With `tls` (certificate and key files) it speaks
HTTPS. Standard library only.
"""
from __future__ import annotations

import json
import re
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import sandbox


class WebhookReceiver(sandbox.Component):
    def __init__(self, tls: tuple | None = None):
        self.port = sandbox.free_port()
        self.tls = tls
        self.requests: list = []  # dicts: path, body (parsed JSON or text), time, headers
        self.hanging = 0          # /hang requests being held open now
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    def start(self) -> "WebhookReceiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                with receiver._lock:
                    receiver.requests.append({"path": self.path, "body": body,
                                              "time": time.time(),
                                              "headers": dict(self.headers)})
                    seen = sum(r["path"] == self.path for r in receiver.requests)
                if self.path.startswith("/hang"):
                    with receiver._lock:
                        receiver.hanging += 1
                    receiver._release.wait()
                    with receiver._lock:
                        receiver.hanging -= 1
                    return
                failures = re.match(r"/fail-(\d+)", self.path)
                code = 500 if failures and seen <= int(failures[1]) else 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*map(str, self.tls))
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def posts(self, path_prefix: str = "/") -> list:
        with self._lock:
            return [r for r in self.requests if r["path"].startswith(path_prefix)]

    def wait_for(self, path_prefix: str, predicate=lambda body: True, timeout: float = 30):
        """The first POST to a path starting with path_prefix whose body satisfies predicate."""
        def found():
            return next((r for r in self.posts(path_prefix) if predicate(r["body"])), None)
        return sandbox.poll(found, timeout, f"a POST to {path_prefix}")
