"""Rewritten application probes (Istio's 15020 ``/app-health/...``): the
ISTIO_KUBE_APP_PROBERS JSON both ways, and the handler against real HTTP,
HTTPS and TCP servers on loopback."""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mizzen.agent.appprobes import (
    APP_HEALTH_PREFIX,
    AppProbe,
    app_health_path,
    app_probe_handler,
    parse_probers,
    probers_json,
)
from mizzen.ca import self_signed_root
from mizzen.runtime.probes import HttpGetProbe, TcpSocketProbe

READY = app_health_path("web", "readyz")
LIVE = app_health_path("web", "livez")


def test_app_health_path() -> None:
    assert READY == "/app-health/web/readyz"
    assert LIVE == "/app-health/web/livez"
    assert READY.startswith(APP_HEALTH_PREFIX)


PROBERS: dict[str, tuple[AppProbe, float]] = {
    READY: (HttpGetProbe(8080, "/ready", "HTTP"), 1.0),
    LIVE: (TcpSocketProbe(8080), 2.5),
    app_health_path("tls", "readyz"): (
        HttpGetProbe(8443, "/z", "HTTPS", {"X-Probe": "1", "Host": "web.shop"}),
        3.0,
    ),
}


def test_round_trip() -> None:
    text = probers_json(PROBERS)
    assert parse_probers(text) == PROBERS
    assert probers_json(parse_probers(text)) == text


def test_json_is_istios_shape() -> None:
    raw = json.loads(probers_json(PROBERS))
    assert raw[READY] == {
        "httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"},
        "timeoutSeconds": 1.0,
    }
    assert raw[LIVE] == {"tcpSocket": {"port": 8080}, "timeoutSeconds": 2.5}
    assert raw["/app-health/tls/readyz"]["httpGet"]["httpHeaders"] == [
        {"name": "X-Probe", "value": "1"},
        {"name": "Host", "value": "web.shop"},
    ]


def test_reads_what_istio_writes() -> None:
    text = json.dumps(
        {
            "/app-health/web/readyz": {
                "httpGet": {"path": "/", "port": 8080, "scheme": "http"},
                "timeoutSeconds": 1,
            },
            "/app-health/web/livez": {"tcpSocket": {"port": 8080}},
        }
    )
    assert parse_probers(text) == {
        READY: (HttpGetProbe(8080, "/", "HTTP"), 1.0),
        LIVE: (TcpSocketProbe(8080), 1.0),  # Kubernetes' default timeout
    }
    # 0 is what an unset timeout looks like: Kubernetes makes it 1 s.
    zero = json.dumps({LIVE: {"tcpSocket": {"port": 8080}, "timeoutSeconds": 0}})
    assert parse_probers(zero) == {LIVE: (TcpSocketProbe(8080), 1.0)}


@pytest.mark.parametrize("text", ["", "  ", "{}"])
def test_empty_is_no_probers(text: str) -> None:
    assert parse_probers(text) == {}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"x": ', "not valid JSON"),
        ("[]", "must be a JSON object of path -> probe"),
        ({"/healthz": {"tcpSocket": {"port": 1}}}, "/healthz: expected /app-health/"),
        ({READY: "tcp 8080"}, f"{READY}: expected /app-health/"),
        ({READY: {}}, f"{READY}: needs httpGet or tcpSocket with a port number"),
        ({READY: {"httpGet": {"port": "http"}}}, f"{READY}: needs httpGet or tcpSocket"),
        ({READY: {"tcpSocket": {"port": 0}}}, f"{READY}: needs httpGet or tcpSocket"),
        ({READY: {"tcpSocket": {"port": 70000}}}, f"{READY}: needs httpGet or tcpSocket"),
        ({READY: {"tcpSocket": {"port": True}}}, f"{READY}: needs httpGet or tcpSocket"),
        ({READY: {"httpGet": {"port": 1, "scheme": "FTP"}}}, f"{READY}: httpGet.scheme"),
        (
            {READY: {"httpGet": {"port": 1, "httpHeaders": {"a": "b"}}}},
            f"{READY}: httpGet.httpHeaders",
        ),
        ({LIVE: {"tcpSocket": {"port": 1}, "timeoutSeconds": "soon"}}, f"{LIVE}: timeoutSeconds"),
        ({LIVE: {"tcpSocket": {"port": 1}, "timeoutSeconds": [1]}}, f"{LIVE}: timeoutSeconds"),
        ({LIVE: {"tcpSocket": {"port": 1}, "timeoutSeconds": -1}}, f"{LIVE}: timeoutSeconds"),
        ({LIVE: {"tcpSocket": {"port": 1}, "timeoutSeconds": True}}, f"{LIVE}: timeoutSeconds"),
    ],
)
def test_bad_input_names_the_entry(raw: Any, expected: str) -> None:
    text = raw if isinstance(raw, str) else json.dumps(raw)
    with pytest.raises(ValueError) as info:
        parse_probers(text)
    assert str(info.value).startswith(expected), str(info.value)


# -- the handler against real servers ---------------------------------------------------


class App(http.server.BaseHTTPRequestHandler):
    """/ok answers 200, /fail 500, /redirect 302; records request headers."""

    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        self.server.seen.append(dict(self.headers))  # type: ignore[attr-defined]
        status = {"/ok": 200, "/fail": 500, "/redirect": 302}.get(self.path, 404)
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(server: http.server.HTTPServer) -> Iterator[http.server.HTTPServer]:
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def app() -> Iterator[http.server.HTTPServer]:
    yield from _serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), App))


@pytest.fixture
def tls_app(tmp_path: Path) -> Iterator[http.server.HTTPServer]:
    now = datetime.now(UTC)
    ca, _ = self_signed_root("cluster.local", now)
    key_pem, cert = ca.issue_server_cert(["web.shop"], ["127.0.0.1"], timedelta(hours=1), now)
    (tmp_path / "key.pem").write_bytes(key_pem)
    (tmp_path / "cert.pem").write_text(cert.leaf_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), App)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    yield from _serve(server)


def _port(server: http.server.HTTPServer) -> int:
    return int(server.server_address[1])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ask(probers: dict[str, tuple[AppProbe, float]], path: str) -> tuple[int, str] | None:
    handler = app_probe_handler(probers, "127.0.0.1")
    return asyncio.run(handler("GET", path))


def test_http_probe_outcomes(app: http.server.HTTPServer) -> None:
    port = _port(app)
    probers: dict[str, tuple[AppProbe, float]] = {
        app_health_path("ok", "readyz"): (HttpGetProbe(port, "/ok"), 2.0),
        app_health_path("moved", "readyz"): (HttpGetProbe(port, "/redirect"), 2.0),
        app_health_path("fail", "readyz"): (HttpGetProbe(port, "/fail"), 2.0),
        app_health_path("gone", "readyz"): (HttpGetProbe(port, "/nothing"), 2.0),
        app_health_path("down", "readyz"): (HttpGetProbe(closed_port(), "/ok"), 2.0),
    }
    assert ask(probers, "/app-health/ok/readyz") == (200, "ok\n")
    assert ask(probers, "/app-health/ok/readyz?probe=1") == (200, "ok\n")
    assert ask(probers, "/app-health/moved/readyz") == (200, "ok\n")  # 3xx is healthy
    assert ask(probers, "/app-health/fail/readyz") == (503, "the application is not healthy\n")
    assert ask(probers, "/app-health/gone/readyz") == (503, "the application is not healthy\n")
    assert ask(probers, "/app-health/down/readyz") == (503, "the application is not healthy\n")


def test_unknown_paths_are_not_ours(app: http.server.HTTPServer) -> None:
    probers: dict[str, tuple[AppProbe, float]] = {READY: (HttpGetProbe(_port(app), "/ok"), 1.0)}
    for path in ("/app-health/web/livez", "/healthz/ready", "/", "/app-health/other/readyz"):
        assert ask(probers, path) is None
    assert app.seen == []  # type: ignore[attr-defined]


def test_http_probe_sends_its_headers(app: http.server.HTTPServer) -> None:
    probe = HttpGetProbe(_port(app), "/ok", "HTTP", {"X-Probe": "yes"})
    assert ask({READY: (probe, 2.0)}, READY) == (200, "ok\n")
    (headers,) = app.seen  # type: ignore[attr-defined]
    assert headers["X-Probe"] == "yes"


def test_https_probe_does_not_verify_the_certificate(tls_app: http.server.HTTPServer) -> None:
    # As kubelet: a self-signed application certificate is fine.
    probers: dict[str, tuple[AppProbe, float]] = {
        READY: (HttpGetProbe(_port(tls_app), "/ok", "HTTPS"), 3.0),
        LIVE: (HttpGetProbe(_port(tls_app), "/fail", "HTTPS"), 3.0),
    }
    assert ask(probers, READY) == (200, "ok\n")
    assert ask(probers, LIVE) == (503, "the application is not healthy\n")


def test_tcp_probe(app: http.server.HTTPServer) -> None:
    probers: dict[str, tuple[AppProbe, float]] = {
        READY: (TcpSocketProbe(_port(app)), 1.0),
        LIVE: (TcpSocketProbe(closed_port()), 1.0),
    }
    assert ask(probers, READY) == (200, "ok\n")
    assert ask(probers, LIVE) == (503, "the application is not healthy\n")


def test_a_hanging_app_fails_within_the_timeout() -> None:
    # Accepts connections (the kernel's backlog) but never answers.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = int(listener.getsockname()[1])
        probers: dict[str, tuple[AppProbe, float]] = {READY: (HttpGetProbe(port, "/"), 0.3)}

        async def timed() -> tuple[tuple[int, str] | None, float]:
            loop = asyncio.get_running_loop()
            start = loop.time()
            result = await app_probe_handler(probers, "127.0.0.1")("GET", READY)
            return result, loop.time() - start

        result, took = asyncio.run(timed())
    assert result == (503, "the application is not healthy\n")
    assert took < 5


def test_parsed_probers_drive_the_handler(app: http.server.HTTPServer) -> None:
    text = json.dumps(
        {READY: {"httpGet": {"path": "/ok", "port": _port(app)}, "timeoutSeconds": 2}}
    )
    assert ask(parse_probers(text), READY) == (200, "ok\n")
