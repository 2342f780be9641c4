"""An HTTP echo whose pods can be told, one request at a time, to fail or to
be slow, for the traffic-policy tests: every replica of one Deployment runs
the same command, and the query string names the pods that misbehave.

Usage: echo_modes.py PORT...

Every answer is a JSON document naming the pod (``POD_NAME``), as
echo.py's. Query parameters:

- ``fail=NAMES``: the pods named (comma-separated pod names, or ``*`` for
  every pod) answer 500, still with the JSON document;
- ``slow=NAMES&ms=N``: the pods named wait N milliseconds (at most 10 s)
  before answering.

So ``GET /?fail=backend-0`` fails on exactly one of three replicas and
``GET /?slow=backend-0&ms=200`` is slow on exactly one. ``/healthz``
always answers 200 (the readiness probe). HTTP/1.1 keep-alive.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

POD = os.environ.get("POD_NAME", "")
MAX_DELAY_MS = 10_000


def _names(query: dict[str, list[str]], key: str) -> set[str]:
    return {name.strip() for value in query.get(key, []) for name in value.split(",")}


def _applies(query: dict[str, list[str]], key: str) -> bool:
    names = _names(query, key)
    return POD in names or "*" in names


class EchoModes(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave at once

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        query = parse_qs(urlsplit(self.path).query)
        status = 200
        if urlsplit(self.path).path != "/healthz":
            if _applies(query, "slow"):
                delay_ms = min(int((query.get("ms") or ["0"])[0]), MAX_DELAY_MS)
                time.sleep(delay_ms / 1000)
            if _applies(query, "fail"):
                status = 500
        document = {
            "pod": POD,
            "port": self.server.server_address[1],
            "status": status,
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_bytes": len(body),
        }
        payload = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would drown the pod's log


def main() -> None:
    servers = [ThreadingHTTPServer(("0.0.0.0", int(port)), EchoModes) for port in sys.argv[1:]]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
