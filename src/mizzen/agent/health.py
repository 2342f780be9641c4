"""Readiness on :15021 ``/healthz/ready`` (asyncio, stdlib only).

Ready means: Envoy is LIVE and has applied at least one CDS and one LDS
update from xDS. It is judged from two small admin requests per poll,

    GET /ready                                   -> LIVE / PRE_INITIALIZING / ...
    GET /stats?filter=^(...lds|...cds)\\.update_success$

so the poll stays cheap (every 200 ms until ready, then every 2 s). The HTTP
client and server are hand-written on asyncio streams rather than
``urllib``/``http.server``: after the agent drops to uid 1337 it may not be
able to import anything more from a 0700 interpreter directory, and these
paths need nothing beyond what is imported up front.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

READY_PATH = "/healthz/ready"

STATS_FILTER = r"^(listener_manager\.lds|cluster_manager\.cds)\.update_success$"


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str


NOT_STARTED = Readiness(False, "Envoy admin not reachable yet")


def parse_stats(text: str) -> dict[str, int]:
    """Parse Envoy's plain ``/stats`` output (``name: value`` lines)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition(": ")
        # Histograms and text stats do not parse as integers; skip them.
        if sep and value.isdigit():
            out[name] = int(value)
    return out


def evaluate(state: str, stats: Mapping[str, int]) -> Readiness:
    """Readiness from Envoy's server state and the xDS counters (pure)."""
    cds = stats.get("cluster_manager.cds.update_success", 0)
    lds = stats.get("listener_manager.lds.update_success", 0)
    missing = [name for name, count in (("CDS", cds), ("LDS", lds)) if count < 1]
    waiting = f"no {' and '.join(missing)} received from xDS yet" if missing else ""
    if state != "LIVE":
        return Readiness(
            False, f"Envoy is {state or 'starting'}" + (f": {waiting}" if waiting else "")
        )
    if waiting:
        return Readiness(False, waiting)
    return Readiness(True, "ready")


# --- admin client ---------------------------------------------------------------


async def http_get(host: str, port: int, path: str, timeout_s: float = 1.0) -> tuple[int, bytes]:
    """A minimal HTTP/1.1 GET with ``Connection: close``; returns (status, body).

    HTTP/1.1 because Envoy's admin refuses 1.0 (426); it may answer chunked.
    """

    async def go() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            writer.write(request.encode("ascii"))
            await writer.drain()
            data = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return parse_http_response(data)

    return await asyncio.wait_for(go(), timeout_s)


def parse_http_response(data: bytes) -> tuple[int, bytes]:
    """(status, body) of a complete HTTP/1.x response read until close (pure)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status_line = lines[0].split()
    if not sep or len(status_line) < 2 or not status_line[1].isdigit():
        raise ConnectionError("malformed HTTP response")
    chunked = any(
        line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower()
        for line in lines[1:]
    )
    return int(status_line[1]), _dechunk(body) if chunked else body


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        end = body.find(b"\r\n", pos)
        if end < 0:
            raise ConnectionError("truncated chunked HTTP body")
        size_text = body[pos:end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ConnectionError("malformed chunk size in HTTP body") from None
        if size == 0:
            return bytes(out)
        start = end + 2
        if start + size > len(body):
            raise ConnectionError("truncated chunked HTTP body")
        out += body[start : start + size]
        pos = start + size + 2


def parse_admin_address(text: str) -> tuple[str, int] | None:
    """Parse what Envoy writes to ``--admin-address-path`` (``127.0.0.1:15000``)."""
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


AdminLocator = Callable[[], Awaitable[tuple[str, int] | None]]


def fixed_admin(host: str, port: int) -> AdminLocator:
    async def locate() -> tuple[str, int] | None:
        return host, port

    return locate


def admin_from_file(path: Path) -> AdminLocator:
    """Locate an admin bound to an ephemeral port through Envoy's address file."""

    async def locate() -> tuple[str, int] | None:
        try:
            text = path.read_text()
        except OSError:
            return None
        found = parse_admin_address(text)
        if found is None:
            return None
        host, port = found
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        return host, port

    return locate


async def check_envoy(locate: AdminLocator) -> Readiness:
    """One readiness check against Envoy's admin."""
    address = await locate()
    if address is None:
        return Readiness(False, "Envoy admin address not known yet")
    host, port = address
    try:
        # /ready gives the live server state; the server.state gauge only
        # moves at stats flushes and would lag.
        _, state = await http_get(host, port, "/ready")
        status, body = await http_get(
            host, port, "/stats?filter=" + urllib.parse.quote(STATS_FILTER, safe="")
        )
    except (OSError, TimeoutError, ConnectionError):
        return NOT_STARTED
    if status != 200:
        return Readiness(False, f"Envoy admin answered {status} to /stats")
    return evaluate(
        state.decode("ascii", "replace").strip(), parse_stats(body.decode("utf-8", "replace"))
    )


class ReadinessMonitor:
    """Keeps the latest readiness, polling fast until ready, then slowly."""

    def __init__(
        self,
        check: Callable[[], Awaitable[Readiness]],
        *,
        fast_interval_s: float = 0.2,
        slow_interval_s: float = 2.0,
    ) -> None:
        self._check = check
        self._fast = fast_interval_s
        self._slow = slow_interval_s
        self.current = NOT_STARTED

    async def run(self) -> None:
        while True:
            self.current = await self._check()
            await asyncio.sleep(self._slow if self.current.ready else self._fast)


# --- health server --------------------------------------------------------------

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
_REASONS[503] = "Service Unavailable"


def _response(status: int, body: str) -> bytes:
    payload = body.encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + payload


def respond(method: str, path: str, readiness: Readiness) -> bytes:
    """The full HTTP response for one request (pure)."""
    path = path.split("?", 1)[0]
    if path != READY_PATH:
        return _response(404, f"not found: {path}; try {READY_PATH}\n")
    if method not in ("GET", "HEAD"):
        return _response(405, "use GET\n")
    if readiness.ready:
        return _response(200, "ready\n")
    return _response(503, f"not ready: {readiness.reason}\n")


# Extra routes: (method, path) -> (status, body), or None when not handled.
Routes = Callable[[str, str], Awaitable[tuple[int, str] | None]]


class HealthServer:
    """Serves ``/healthz/ready`` from a :class:`ReadinessMonitor`, and
    whatever ``routes`` answers (the app probes on 15020)."""

    def __init__(self, monitor: ReadinessMonitor, routes: Routes | None = None) -> None:
        self._monitor = monitor
        self._routes = routes
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Bind and return the bound port (useful with port 0)."""
        self._server = await asyncio.start_server(self._handle, host, port, reuse_address=True)
        sockets = self._server.sockets
        return int(sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 5.0)
            parts = request_line.decode("latin-1").split()
            # Drain headers so the client sees a clean response, not a reset.
            while True:
                line = await asyncio.wait_for(reader.readline(), 5.0)
                if line in (b"\r\n", b"\n", b""):
                    break
            if len(parts) < 2:
                writer.write(_response(400, "bad request\n"))
            else:
                routed = await self._routes(parts[0], parts[1]) if self._routes else None
                if routed is not None:
                    data = _response(*routed)
                else:
                    data = respond(parts[0], parts[1], self._monitor.current)
                if parts[0] == "HEAD":
                    data = data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
                writer.write(data)
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
