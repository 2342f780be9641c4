"""An HTTP/1.1 server for large and long-lived requests in the end-to-end
tests; nothing is held in memory whole.

Usage: bulk_http.py PORT.

- ``POST /upload``: reads the body as it comes (Content-Length or chunked),
  answers ``{"bytes", "sha256", "expect"}``; ``expect`` is the Expect
  header the server saw, if any.
- ``GET /download?bytes=N``: N bytes of a deterministic pattern, streamed,
  with their SHA-256 in ``x-content-sha256``.
- ``GET /events?count=N&every=S``: a Server-Sent Events stream of N events
  ``S`` seconds apart (chunked), each flushed when written.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CHUNK = 64 * 1024


def pattern(total: int) -> Iterator[bytes]:
    """``total`` bytes in 64 KiB chunks; each chunk differs from the others."""
    sent = 0
    index = 0
    while sent < total:
        block = hashlib.sha256(index.to_bytes(8, "big")).digest() * (CHUNK // 32)
        piece = block[: min(CHUNK, total - sent)]
        sent += len(piece)
        index += 1
        yield piece


class Bulk(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _json(self, document: dict[str, object]) -> None:
        payload = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _body(self) -> Iterator[bytes]:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return
                yield self.rfile.read(size)
                self.rfile.readline()
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining:
            piece = self.rfile.read(min(CHUNK, remaining))
            if not piece:
                return
            remaining -= len(piece)
            yield piece

    def do_POST(self) -> None:
        digest, total = hashlib.sha256(), 0
        for piece in self._body():
            digest.update(piece)
            total += len(piece)
        expect = self.headers.get("Expect")
        self._json({"bytes": total, "sha256": digest.hexdigest(), "expect": expect})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/download":
            self._download(int(query["bytes"]))
        elif url.path == "/events":
            self._events(int(query["count"]), float(query["every"]))
        else:
            self.send_error(404)

    def _download(self, total: int) -> None:
        digest = hashlib.sha256()
        for piece in pattern(total):
            digest.update(piece)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(total))
        self.send_header("x-content-sha256", digest.hexdigest())
        self.end_headers()
        for piece in pattern(total):
            self.wfile.write(piece)

    def _events(self, count: int, every: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index in range(count):
            if index:
                time.sleep(every)
            event = f"id: {index}\ndata: {json.dumps({'pod': os.environ.get('POD_NAME', '')})}\n\n"
            data = event.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.client_address[0]} {format % args}", flush=True)


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Bulk).serve_forever()
