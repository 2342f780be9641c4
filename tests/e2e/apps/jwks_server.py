"""A JWKS server for the end-to-end tests: the jwksUri of a
RequestAuthentication.

Usage: jwks_server.py ADDRESS PORT FILE.

- ``GET /stats``: ``{"requests": N, "paths": {path: count}}``, the fetches
  of the JWKS so far, so that a test can see the sidecar fetch (and
  re-fetch) the keys; ``/stats`` itself is not counted;
- ``GET`` of any other path: the JWKS in FILE as ``application/json``.
  FILE is read on every request, so a test can rotate the keys by
  rewriting it.

Each fetch is one JSON line on stdout.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

STATS_PATH = "/stats"


class Jwks(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    file: ClassVar[Path]
    fetches: ClassVar[Counter[str]] = Counter()
    lock: ClassVar[threading.Lock] = threading.Lock()

    def _send(self, payload: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == STATS_PATH:
            with self.lock:
                stats = {"requests": sum(self.fetches.values()), "paths": dict(self.fetches)}
            self._send(json.dumps(stats).encode())
            return
        payload = self.file.read_bytes()
        with self.lock:
            self.fetches[self.path] += 1
            count = sum(self.fetches.values())
        self._send(payload)
        print(json.dumps({"fetch": self.path, "requests": count}), flush=True)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the fetch line is the log


class Server6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def main(address: str, port: int, file: Path) -> None:
    Jwks.file = file
    server = (Server6 if ":" in address else ThreadingHTTPServer)((address, port), Jwks)
    print(f"JWKS {file} on {address}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
