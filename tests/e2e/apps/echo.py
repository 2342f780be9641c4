"""A small HTTP echo server for the end-to-end tests.

Listens on every port given on the command line. GET and POST answer with a
JSON document: the pod's name, the port, the request's method, path and
headers, and the size of the body. HTTP/1.1 keep-alive, so a client can hold
one connection for many requests. ``/healthz`` answers 200 (the readiness
probe).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        document = {
            "pod": os.environ.get("POD_NAME", ""),
            "port": self.server.server_address[1],
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_bytes": len(body),
        }
        payload = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per probe would drown the pod's log


def main() -> None:
    servers = [ThreadingHTTPServer(("0.0.0.0", int(port)), Echo) for port in sys.argv[1:]]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
