"""Readiness probes run from the host, as kubelet runs them.

The host reaches pod IPs directly over the bridge. http.client is used
rather than urllib so that no *_proxy environment variable can send a probe
elsewhere.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class HttpGetProbe:
    port: int
    path: str = "/"
    scheme: str = "HTTP"  # "HTTP" | "HTTPS"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TcpSocketProbe:
    port: int


Probe = HttpGetProbe | TcpSocketProbe


def check_tcp(ip: str, port: int, timeout: float = 1.0, source: str | None = None) -> bool:
    """``source``: the local address to connect from (port chosen by the kernel)."""
    bind = (source, 0) if source else None
    try:
        with socket.create_connection((ip, port), timeout=timeout, source_address=bind):
            return True
    except OSError:
        return False


def check_http(
    ip: str, probe: HttpGetProbe, timeout: float = 1.0, source: str | None = None
) -> bool:
    """2xx and 3xx mean ready (redirects are not followed, as in kubelet)."""
    bind = (source, 0) if source else None
    conn: http.client.HTTPConnection
    if probe.scheme.upper() == "HTTPS":
        # kubelet does not verify the certificate of an HTTPS probe.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(
            ip, probe.port, timeout=timeout, context=ctx, source_address=bind
        )
    else:
        conn = http.client.HTTPConnection(ip, probe.port, timeout=timeout, source_address=bind)
    try:
        path = probe.path if probe.path.startswith("/") else f"/{probe.path}"
        conn.request("GET", path, headers={"User-Agent": "mizzen-probe", **probe.headers})
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
    return 200 <= status < 400


def is_ready(
    ip: str, probe: Probe | None, container_ports: Sequence[int] = (), timeout: float = 1.0
) -> bool:
    """Run probe against ip; with no probe, every declared port must accept TCP."""
    if isinstance(probe, HttpGetProbe):
        return check_http(ip, probe, timeout)
    if isinstance(probe, TcpSocketProbe):
        return check_tcp(ip, probe.port, timeout)
    return all(check_tcp(ip, p, timeout) for p in container_ports)


def wait_until(
    pred: Callable[[], bool],
    timeout: float,
    interval: float = 0.1,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Poll pred until it is true (returns True) or timeout passes (False)."""
    deadline = clock() + timeout
    while True:
        if pred():
            return True
        now = clock()
        if now >= deadline:
            return False
        sleep(min(interval, deadline - now))


def http_ok(ip: str, port: int, path: str = "/", timeout: float = 1.0) -> bool:
    """Shorthand for an HTTP GET probe: 2xx/3xx from http://ip:port/path."""
    return check_http(ip, HttpGetProbe(port, path), timeout)


def tcp_ok(ip: str, port: int, timeout: float = 1.0) -> bool:
    """Shorthand for a tcpSocket probe."""
    return check_tcp(ip, port, timeout)
