"""Quick self-tests of the authorization test servers in tests/e2e/apps
(ext_authz_http.py, ext_authz_grpc.py, jwks_server.py): each runs as a
subprocess on 127.0.0.1 and answers allow / deny / fetch requests. Loopback
only; no mesh, no Envoy."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.core.v3.base_pb2 import HeaderMap, HeaderValue
from envoy.service.auth.v3 import external_auth_pb2 as auth
from envoy.service.auth.v3 import external_auth_pb2_grpc as auth_grpc
from google.rpc import code_pb2

ROOT = Path(__file__).resolve().parents[2]
APPS = ROOT / "tests" / "e2e" / "apps"
JWKS = ROOT / "tests" / "fixtures" / "jwt" / "jwks.json"
HOST = "127.0.0.1"
DEADLINE = 20.0
DENIED = "denied by ext_authz for header x-ext-authz: "


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    port: int
    process: subprocess.Popen[str]
    stdout: list[str] = field(default_factory=list)

    def log(self) -> list[dict[str, Any]]:
        """The JSON lines the server printed (after it stopped)."""
        return [json.loads(line) for line in self.stdout if line.startswith("{")]


def _wait_listening(process: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"server exited with {process.returncode}: {err}")
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nothing listening on {HOST}:{port} after {DEADLINE}s")


@contextmanager
def running(script: str, *args: str, port: int) -> Iterator[Server]:
    # Not PYTHONUNBUFFERED: the log lines must reach stdout by the servers' own flush.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env.update(BIND_ADDRESS=HOST, POD_NAME="authz-0")
    process = subprocess.Popen(
        [sys.executable, str(APPS / script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    server = Server(port, process)
    try:
        _wait_listening(process, port)
        yield server
    finally:
        process.terminate()
        try:
            out, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
        server.stdout = out.splitlines()


def _request(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None = None,
) -> tuple[int, str, bytes]:
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    return response.status, response.getheader("x-ext-authz-check-result", ""), data


def test_http_ext_authz_allows_only_x_ext_authz_allow() -> None:
    port = _free_port()
    with running("ext_authz_http.py", str(port), port=port) as server:
        conn = http.client.HTTPConnection(HOST, port, timeout=10)  # one keep-alive connection
        allow = {"x-ext-authz": "allow"}
        assert _request(conn, "GET", "/check/productpage?u=1", allow) == (200, "allowed", b"")
        assert _request(conn, "POST", "/check/api", allow, b'{"a": 1}') == (200, "allowed", b"")
        assert _request(conn, "PROPFIND", "/check/dav", allow) == (200, "allowed", b"")
        denied = (403, "denied", f"{DENIED}deny".encode())
        assert _request(conn, "GET", "/check/productpage", {"x-ext-authz": "deny"}) == denied
        assert _request(conn, "DELETE", "/check/x", {"x-ext-authz": "Allow"}) == (
            403,
            "denied",
            f"{DENIED}Allow".encode(),
        )
        assert _request(conn, "GET", "/check/none", {}) == (403, "denied", DENIED.encode())
        conn.close()
    decisions = [(line["decision"], line["method"], line["path"]) for line in server.log()]
    assert decisions == [
        ("allowed", "GET", "/check/productpage?u=1"),
        ("allowed", "POST", "/check/api"),
        ("allowed", "PROPFIND", "/check/dav"),
        ("denied", "GET", "/check/productpage"),
        ("denied", "DELETE", "/check/x"),
        ("denied", "GET", "/check/none"),
    ]
    assert {line["pod"] for line in server.log()} == {"authz-0"}


def _check_request(value: str | None, raw: bool = False) -> auth.CheckRequest:
    request = auth.CheckRequest()
    http = request.attributes.request.http
    http.method, http.path, http.host = "GET", "/productpage", "productpage:9080"
    headers = {":path": "/productpage", "user-agent": "test"}
    if value is not None:
        headers["x-ext-authz"] = value
    if raw:
        http.header_map.CopyFrom(
            HeaderMap(
                headers=[HeaderValue(key=k, raw_value=v.encode()) for k, v in headers.items()]
            )
        )
    else:
        http.headers.update(headers)
    return request


def _result_headers(options: Any) -> dict[str, str]:
    return {option.header.key: option.header.value for option in options}


def test_grpc_ext_authz_allows_only_x_ext_authz_allow() -> None:
    port = _free_port()
    with (
        running("ext_authz_grpc.py", str(port), port=port) as server,
        grpc.insecure_channel(f"{HOST}:{port}") as channel,
    ):
        stub = auth_grpc.AuthorizationStub(channel)
        for raw in (False, True):
            allowed = stub.Check(_check_request("allow", raw=raw), timeout=10)
            assert allowed.status.code == code_pb2.OK, allowed
            assert allowed.WhichOneof("http_response") == "ok_response", allowed
            assert _result_headers(allowed.ok_response.headers) == {
                "x-ext-authz-check-result": "allowed"
            }
        for value in ("deny", None):
            denied = stub.Check(_check_request(value), timeout=10)
            assert denied.status.code == code_pb2.PERMISSION_DENIED, denied
            assert denied.WhichOneof("http_response") == "denied_response", denied
            assert denied.denied_response.status.code == 403
            assert denied.denied_response.body == DENIED + (value or "")
            assert _result_headers(denied.denied_response.headers) == {
                "x-ext-authz-check-result": "denied"
            }
    decisions = [(line["decision"], line["x-ext-authz"]) for line in server.log()]
    assert decisions == [
        ("allowed", "allow"),
        ("allowed", "allow"),
        ("denied", "deny"),
        ("denied", ""),
    ]


def _get(port: int, path: str) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        conn.close()


def test_jwks_server_serves_the_file_and_counts_fetches(tmp_path: Path) -> None:
    keys = tmp_path / "jwks.json"
    keys.write_bytes(JWKS.read_bytes())
    port = _free_port()
    with running("jwks_server.py", HOST, str(port), str(keys), port=port) as server:
        assert json.loads(_get(port, "/stats")[2]) == {"requests": 0, "paths": {}}
        for path in ("/keys/jwks.json", "/keys/jwks.json", "/other"):
            assert _get(port, path) == (200, "application/json", JWKS.read_bytes())
        # The file is read on every fetch: rewriting it rotates the keys.
        keys.write_text('{"keys": []}')
        assert _get(port, "/keys/jwks.json")[2] == b'{"keys": []}'
        assert json.loads(_get(port, "/stats")[2]) == {
            "requests": 4,
            "paths": {"/keys/jwks.json": 3, "/other": 1},
        }
    assert [line["requests"] for line in server.log()] == [1, 2, 3, 4]
