from __future__ import annotations

import pytest

from mizzen.api.resources import ServicePort
from mizzen.registry.protocol import parse_protocol, protocol_for

CASES = [
    # (name, port, appProtocol, k8s protocol, expected)
    ("http", 80, None, "TCP", "HTTP"),
    ("http-web", 80, None, "TCP", "HTTP"),
    ("HTTP-Web", 80, None, "TCP", "HTTP"),
    ("http2", 80, None, "TCP", "HTTP2"),
    ("http2-api", 80, None, "TCP", "HTTP2"),
    ("grpc", 9000, None, "TCP", "GRPC"),
    ("grpc-api", 9000, None, "TCP", "GRPC"),
    ("grpc-web", 9000, None, "TCP", "GRPC_WEB"),
    ("grpc-web-ui", 9000, None, "TCP", "GRPC_WEB"),
    ("tcp", 9000, None, "TCP", "TCP"),
    ("tcp-db", 5432, None, "TCP", "TCP"),
    ("tls", 443, None, "TCP", "TLS"),
    ("https", 443, None, "TCP", "TLS"),
    ("https-admin", 8443, None, "TCP", "TLS"),
    ("mongo", 27017, None, "TCP", "MONGO"),
    ("mongo-main", 1234, None, "TCP", "MONGO"),
    ("redis", 6379, None, "TCP", "TCP"),
    ("mysql", 13306, None, "TCP", "TCP"),
    ("udp-dns", 53, None, "TCP", "UDP"),
    ("", 9080, None, "TCP", "UNKNOWN"),
    ("web", 9080, None, "TCP", "UNKNOWN"),
    ("httpx", 9080, None, "TCP", "UNKNOWN"),  # the prefix is the whole word before '-'
    ("web-http", 9080, None, "TCP", "UNKNOWN"),
    # server-first well-known ports are TCP when nothing is declared
    ("", 25, None, "TCP", "TCP"),
    ("dns", 53, None, "TCP", "TCP"),
    ("db", 3306, None, "TCP", "TCP"),
    ("", 27017, None, "TCP", "TCP"),
    # appProtocol wins over the name
    ("tcp-x", 80, "http", "TCP", "HTTP"),
    ("database", 3306, "mysql", "TCP", "TCP"),
    ("web", 80, "HTTP2", "TCP", "HTTP2"),
    ("http", 80, "grpc", "TCP", "GRPC"),
    ("http", 8080, "kubernetes.io/h2c", "TCP", "HTTP2"),
    ("x", 8080, "kubernetes.io/ws", "TCP", "HTTP"),
    ("x", 8443, "kubernetes.io/wss", "TCP", "TLS"),
    ("x", 443, "https", "TCP", "TLS"),
    # an unknown appProtocol does not fall back to the name
    ("http", 8080, "example.com/custom", "TCP", "UNKNOWN"),
    # a UDP port is UDP whatever its name
    ("http", 8080, None, "UDP", "UDP"),
]


@pytest.mark.parametrize(("name", "port", "app", "proto", "expected"), CASES)
def test_protocol_for(name: str, port: int, app: str | None, proto: str, expected: str) -> None:
    assert protocol_for(ServicePort(port, name, None, proto, app)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("HTTP", "HTTP"), ("GRPC-WEB", "GRPC_WEB"), ("HTTPS", "TLS"), ("", "UNKNOWN"), ("TCP", "TCP")],
)
def test_parse_protocol(value: str, expected: str) -> None:
    assert parse_protocol(value) == expected
