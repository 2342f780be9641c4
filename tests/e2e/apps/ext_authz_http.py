"""An HTTP external authorization server for the end-to-end tests: the
service behind Envoy's ``envoy.filters.http.ext_authz`` in HTTP service mode,
modelled on Istio's sample ext-authz server.

Usage: ext_authz_http.py PORT. Binds 0.0.0.0 (``BIND_ADDRESS`` in the
environment overrides it, e.g. 127.0.0.1 for a test on loopback).

Envoy sends one check request per request it authorizes, with the original
method and path (behind the configured path prefix), so every method and
every path is a check:

- request header ``x-ext-authz: allow`` -> 200, response header
  ``x-ext-authz-check-result: allowed``;
- anything else -> 403, body ``denied by ext_authz for header x-ext-authz:
  <value>`` and response header ``x-ext-authz-check-result: denied``.

Each decision is one JSON line on stdout: pod (``POD_NAME``), decision,
method, path and the header's value.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHECK_HEADER = "x-ext-authz"
ALLOWED_VALUE = "allow"
RESULT_HEADER = "x-ext-authz-check-result"
POD = os.environ.get("POD_NAME", "")


class Check(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _check(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)  # with_request_body: read, not judged
        value = self.headers.get(CHECK_HEADER, "")
        allowed = value == ALLOWED_VALUE
        if allowed:
            status, result, body = 200, "allowed", b""
        else:
            status, result = 403, "denied"
            body = f"denied by ext_authz for header {CHECK_HEADER}: {value}".encode()
        self.send_response(status)
        self.send_header(RESULT_HEADER, result)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        decision = {
            "pod": POD,
            "decision": result,
            "method": self.command,
            "path": self.path,
            CHECK_HEADER: value,
        }
        print(json.dumps(decision), flush=True)

    def __getattr__(self, name: str) -> Callable[[], None]:
        # BaseHTTPRequestHandler dispatches to do_<METHOD>: any method is a check.
        if name.startswith("do_"):
            return self._check
        raise AttributeError(name)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the decision line is the log


def main(port: int) -> None:
    address = os.environ.get("BIND_ADDRESS", "0.0.0.0")
    server = ThreadingHTTPServer((address, port), Check)
    print(f"HTTP ext_authz on {address}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]))
