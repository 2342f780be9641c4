"""Shared plumbing for the Bookinfo apps (stdlib only).

- ``serve``: a quiet HTTP/1.1 keep-alive server on ``HOST``:``PORT`` (default
  ``0.0.0.0:9080``) that exits cleanly on SIGTERM/SIGINT. It prints one line,
  ``<name> listening on <host>:<port>``, so callers using ``PORT=0`` learn the port.
- ``propagated``: the request headers an app must copy onto its outgoing calls
  so the mesh can stitch traces together and route on them (``end-user``).
- ``get_json``: a short-timeout GET that never goes through an HTTP proxy.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

# Trace-context headers (Envoy request id, B3, W3C, OpenTracing, Google, Datadog)
# plus the headers Bookinfo routes on. Envoy can create spans but cannot know that
# an outgoing call belongs to an incoming one: the app must copy these.
PROPAGATED_HEADERS: tuple[str, ...] = (
    "x-request-id",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "traceparent",
    "tracestate",
    "x-ot-span-context",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "end-user",
    "user-agent",
)

POD_NAME = os.environ.get("POD_NAME", "")

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Headers(Protocol):
    """Read access to request headers: a dict, or the case-insensitive
    ``email.message.Message`` that ``BaseHTTPRequestHandler`` provides."""

    def get(self, name: str, /) -> str | None: ...


def propagated(headers: Headers) -> dict[str, str]:
    """The propagated headers present in ``headers``."""
    out: dict[str, str] = {}
    for name in PROPAGATED_HEADERS:
        value = headers.get(name)
        if value is not None:
            out[name] = value
    return out


class UpstreamError(Exception):
    """An upstream call failed: connection error, timeout, non-2xx or bad JSON."""


def get_json(url: str, headers: Mapping[str, str], timeout: float) -> Any:
    request = urllib.request.Request(url, headers=dict(headers))
    try:
        with _NO_PROXY.open(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise UpstreamError(f"{url}: HTTP {exc.code}") from exc
    except (OSError, ValueError) as exc:  # URLError, timeouts, resets, bad JSON
        raise UpstreamError(f"{url}: {exc}") from exc


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass(frozen=True)
class Request:
    path: str
    params: tuple[str, ...]  # regex groups of the matched route
    query: Mapping[str, list[str]]
    headers: Headers


@dataclass
class Response:
    status: int = 200
    body: Any = None  # JSON-encoded unless it is bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]
Routes = list[tuple[str, Handler]]  # (full-match regex on the path, handler)


def health(_: Request) -> Response:
    return Response(body={"status": "ok"})


def _handler_class(routes: Routes) -> type[BaseHTTPRequestHandler]:
    compiled = [(re.compile(pattern), fn) for pattern, fn in routes]

    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive; every response has Content-Length
        timeout = 120  # drop idle keep-alive connections eventually

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            response = Response(404, {"error": f"no route for {url.path}"})
            for pattern, fn in compiled:
                match = pattern.fullmatch(url.path)
                if match:
                    request = Request(url.path, match.groups(), parse_qs(url.query), self.headers)
                    try:
                        response = fn(request)
                    except Exception as exc:
                        response = Response(500, {"error": f"{type(exc).__name__}: {exc}"})
                    break
            self._send(response)

        def _send(self, response: Response) -> None:
            body = response.body
            if not isinstance(body, bytes):
                body = json.dumps(body).encode() + b"\n"
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the sidecar has access logs

    return _Handler


def serve(name: str, routes: Routes) -> None:
    host = os.environ.get("HOST", "0.0.0.0")
    port = int(os.environ.get("PORT", "9080"))
    server = ThreadingHTTPServer((host, port), _handler_class(routes))
    server.daemon_threads = True

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever() to return, which runs in this
        # (main) thread: call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"{name} listening on {host}:{server.server_port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    sys.exit(0)
