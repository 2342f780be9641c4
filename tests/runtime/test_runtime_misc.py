from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import mizzen.runtime.preflight as preflight
from mizzen.runtime.network import forward_warning_from
from mizzen.runtime.probes import (
    HttpGetProbe,
    TcpSocketProbe,
    http_ok,
    is_ready,
    tcp_ok,
    wait_until,
)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = {"/ok": 200, "/redirect": 302, "/bad": 503}.get(self.path, 404)
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_http_probe(server: int) -> None:
    assert is_ready("127.0.0.1", HttpGetProbe(server, "/ok"))
    assert is_ready("127.0.0.1", HttpGetProbe(server, "redirect"))
    assert not is_ready("127.0.0.1", HttpGetProbe(server, "/bad"))
    assert not is_ready("127.0.0.1", HttpGetProbe(_free_port(), "/ok"))


def test_tcp_and_default_probe(server: int) -> None:
    closed = _free_port()
    assert is_ready("127.0.0.1", TcpSocketProbe(server))
    assert not is_ready("127.0.0.1", TcpSocketProbe(closed))
    assert is_ready("127.0.0.1", None, [server])
    assert not is_ready("127.0.0.1", None, [server, closed])
    assert is_ready("127.0.0.1", None, [])  # nothing declared: nothing to wait for


def test_wait_until_uses_deadline() -> None:
    now = [0.0]
    calls = []

    def sleep(d: float) -> None:
        calls.append(d)
        now[0] += d

    assert not wait_until(lambda: False, 1.0, 0.3, clock=lambda: now[0], sleep=sleep)
    assert now[0] == pytest.approx(1.0)
    assert calls[-1] == pytest.approx(0.1)
    seq = iter([False, False, True])
    assert wait_until(lambda: next(seq), 5.0, 0.01)


def test_preflight_problems(tmp_path: Path) -> None:
    assert (
        preflight.problems(euid=lambda: 0, which=lambda t: f"/bin/{t}", netns_path=tmp_path) == []
    )
    found = preflight.problems(
        euid=lambda: 1000, which=lambda t: None, netns_path=tmp_path / "missing"
    )
    assert found[0] == "mizzen up needs root (namespaces, bridges, iptables): run it with sudo"
    assert "iptables is missing: apt-get install iptables" in found
    assert "setpriv is missing: apt-get install util-linux" in found
    assert found[-1].startswith("this kernel has no network namespaces")


def test_port_in_use() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert preflight.port_in_use(port)
        msg = preflight.port_problem(port, purpose="the ingress gateway")
        assert msg is not None and msg.startswith(f"port {port} on 127.0.0.1 is already in use")
    assert preflight.port_problem(_free_port()) is None


@pytest.mark.parametrize(
    ("nf", "rules", "warns"),
    [
        (None, "-P FORWARD DROP\n", False),
        ("0\n", "-P FORWARD DROP\n", False),
        ("1\n", "-P FORWARD ACCEPT\n", False),
        ("1\n", "-P FORWARD DROP\n-N DOCKER-USER\n", True),
    ],
)
def test_forward_warning(nf: str | None, rules: str, warns: bool) -> None:
    msg = forward_warning_from(nf, rules)
    assert (msg is not None) == warns
    if msg:
        assert "iptables -I FORWARD" in msg and "\n" not in msg


def test_probe_shorthands(server: int) -> None:
    assert http_ok("127.0.0.1", server, "/ok")
    assert not http_ok("127.0.0.1", server, "/bad")
    assert tcp_ok("127.0.0.1", server)
