"""gRPC through two sidecars with grpcio on both ends (apps/grpc_echo.py,
apps/grpc_client.py): metadata both ways, trailers and a non-OK status
reaching the client unchanged, server streaming, and many calls multiplexed
on one HTTP/2 connection between the sidecars."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import (
    command_deployment,
    injected_namespace,
    mizzen,
    poll,
    running_mesh,
    service,
)

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
STATS = HERE / "akka" / "pod_client.py"
NS = "grpc"
CLUSTER = f"cluster.outbound|50051||greeter.{NS}.svc.cluster.local"


def manifest() -> list[dict[str, Any]]:
    return [
        injected_namespace(NS),
        command_deployment(NS, "greeter", ["python3", str(APPS / "grpc_echo.py"), "50051"]),
        command_deployment(NS, "plain", ["python3", str(APPS / "grpc_echo.py"), "50051"]),
        command_deployment(NS, "client", ["python3", "-c", "import time; time.sleep(86400)"]),
        service(NS, "greeter", {"name": "grpc", "port": 50051}),
        # The same server behind a port with no name: HTTP/2 is detected.
        service(NS, "plain", {"port": 50051}),
        # The greeter again, for browsers: gRPC-Web on 8080.
        service(NS, "web", {"name": "grpc-web", "port": 8080, "targetPort": 50051}, app="greeter"),
    ]


def _in_client(mesh: str, *command: str) -> list[Any]:
    out = mizzen("exec", f"{NS}/client-0", "--name", mesh, "--", sys.executable, *command)
    assert out.returncode == 0, out.stderr
    result: list[Any] = json.loads(out.stdout)
    return result


def calls(mesh: str, *steps: str, target: str = "greeter:50051") -> list[dict[str, Any]]:
    return _in_client(mesh, str(APPS / "grpc_client.py"), target, *steps)


def stats(mesh: str) -> dict[str, int]:
    (found,) = _in_client(mesh, str(STATS), "stats")
    return dict(found)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_mesh(manifest(), "grpc", tmp_path_factory.mktemp("grpc")) as name:
        poll(lambda: calls(name, "unary")[0]["code"] == "OK", 60, "a first gRPC call answered")
        yield name


def test_unary_call_carries_metadata_both_ways(mesh: str) -> None:
    (answer,) = calls(mesh, "unary")
    assert answer["code"] == "OK", answer
    reply = answer["reply"]
    assert reply["pod"] == "greeter-0" and reply["request"] == "hello", reply
    assert reply["metadata"]["x-caller"] == "client", reply
    # Between the sidecars it went over mTLS: the server's sidecar names the caller.
    assert (
        f"URI=spiffe://cluster.local/ns/{NS}/sa/default"
        in (reply["metadata"]["x-forwarded-client-cert"])
    )
    assert answer["initial"]["x-echo-initial"] == "greeter-0", answer
    assert answer["trailing"]["x-echo-trailer"] == "done", answer


def test_a_non_ok_status_reaches_the_client_unchanged(mesh: str) -> None:
    (answer,) = calls(mesh, "fail")
    assert answer["code"] == "NOT_FOUND", answer
    assert answer["details"] == "no greeting named fail", answer
    assert answer["trailing"]["x-reason"] == "missing", answer
    assert answer["initial"]["x-echo-initial"] == "greeter-0", answer


def test_server_streaming_keeps_every_message_and_the_trailers(mesh: str) -> None:
    (answer,) = calls(mesh, "count=200")
    assert answer["code"] == "OK", answer
    assert answer["messages"] == [str(i) for i in range(200)]
    assert answer["trailing"]["x-count"] == "200", answer


def test_many_calls_share_one_upstream_connection(mesh: str) -> None:
    before = stats(mesh)
    (answer,) = calls(mesh, "parallel=50")
    after = stats(mesh)
    assert sorted(answer["answers"], key=int) == [str(i) for i in range(50)]
    grew = {
        key: after.get(f"{CLUSTER}.{key}", 0) - before.get(f"{CLUSTER}.{key}", 0)
        for key in ("upstream_rq_total", "upstream_cx_total")
    }
    # 50 calls at once from one channel, yet at most one new connection to
    # the server's sidecar (each Envoy worker keeps its own pool, so the
    # connections open in total can be one per worker).
    assert grew["upstream_rq_total"] == 50, grew
    assert grew["upstream_cx_total"] <= 1, grew
    assert after[f"{CLUSTER}.upstream_cx_http2_total"] >= 1, after


def test_access_log_and_stats_carry_the_grpc_status(mesh: str) -> None:
    before = stats(mesh)
    calls(mesh, "fail", "fail", "unary")
    after = stats(mesh)
    grew = {
        key: after[key] - before.get(key, 0)
        for key in after
        if key.startswith(f"{CLUSTER}.grpc.") and after[key] != before.get(key, 0)
    }
    assert grew.get(f"{CLUSTER}.grpc.5") == 2 and grew.get(f"{CLUSTER}.grpc.0") == 1, grew

    def refused() -> list[str]:
        # Envoy flushes its access log every few seconds, not per line.
        log = mizzen("logs", f"{NS}/client-0", "--name", mesh, "--proxy").stdout
        return [
            line
            for line in log.splitlines()
            if "/mizzen.test.Echo/Unary" in line and re.search(r"\bgrpc=5\b", line)
        ]

    poll(lambda: bool(refused()), 30, "the refused call in the caller's access log")
    assert " 200 " in refused()[-1], refused()[-1]


def test_grpc_on_an_unnamed_port_is_detected_as_http2(mesh: str) -> None:
    """The client's sidecar sniffs the HTTP/2 preface and keeps HTTP/2 up to
    the app; over mTLS it marks the connection as HTTP for the server's
    sidecar, which serves it with its HTTP connection manager."""
    poll(
        lambda: calls(mesh, "unary", target="plain:50051")[0]["code"] == "OK",
        30,
        "a gRPC call on the unnamed port answered",
    )
    before = stats(mesh)
    ok, refused = calls(mesh, "unary", "fail", target="plain:50051")
    after = stats(mesh)
    assert ok["code"] == "OK" and ok["reply"]["pod"] == "plain-0", ok
    assert "x-forwarded-client-cert" in ok["reply"]["metadata"], ok
    assert ok["trailing"]["x-echo-trailer"] == "done", ok
    assert refused["code"] == "NOT_FOUND" and refused["trailing"]["x-reason"] == "missing"
    cluster = f"cluster.outbound|50051||plain.{NS}.svc.cluster.local"
    assert after[f"{cluster}.grpc.5"] - before.get(f"{cluster}.grpc.5", 0) == 1
    assert after[f"{cluster}.upstream_cx_http2_total"] >= 1, after


def test_grpc_web_from_a_browser_reaches_a_grpc_server(mesh: str) -> None:
    """On a grpc-web port the caller's sidecar turns gRPC-Web (HTTP/1.1)
    into gRPC over HTTP/2 and the answer back into gRPC-Web frames, as
    Istio's gRPC-Web filter does; the server only speaks gRPC."""
    ok, refused = calls(mesh, "web=hello", "web=fail", target="web:8080")
    assert ok["status"] == 200, ok
    assert ok["headers"]["content-type"].startswith("application/grpc-web"), ok
    (message,) = ok["messages"]
    reply = json.loads(message)
    assert reply["pod"] == "greeter-0" and reply["metadata"]["x-caller"] == "browser", reply
    assert ok["trailers"]["grpc-status"] == "0" and ok["trailers"]["x-echo-trailer"] == "done"
    # A refused call: the status comes back in the headers (trailers-only).
    assert refused["status"] == 200 and not refused["messages"], refused
    status = refused["headers"].get("grpc-status") or refused["trailers"].get("grpc-status")
    assert status == "5", refused
