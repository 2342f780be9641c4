"""Headers as Istio's sidecars handle them, seen by the receiving app after
two sidecars: a request id kept when the caller sent one and made when it
did not, the forwarded protocol, and the attempt count."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import command_deployment, injected_namespace, mizzen, running_mesh, service

APPS = Path(__file__).resolve().parent / "apps"
STATS = Path(__file__).resolve().parent / "akka" / "pod_client.py"
NS = "headers"

FETCH = """
import json, sys, urllib.error, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
request = urllib.request.Request(sys.argv[1], headers=json.loads(sys.argv[2]))
try:
    print(json.dumps({"status": 200, **json.load(opener.open(request, timeout=5))}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "flags": e.headers.get("x-envoy-response-flags")}))
"""
KIB = 1024


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    docs = [
        injected_namespace(NS),
        command_deployment(NS, "echo", ["python3", str(APPS / "echo.py"), "8080"]),
        command_deployment(NS, "client", ["python3", "-c", "import time; time.sleep(86400)"]),
        service(NS, "echo", {"name": "http", "port": 80, "targetPort": 8080}),
        # The same app again, upgraded to HTTP/2 between the sidecars.
        service(NS, "echo-h2", {"name": "http", "port": 81, "targetPort": 8080}, app="echo"),
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "echo-h2", "namespace": NS},
            "spec": {
                "host": "echo-h2",
                "trafficPolicy": {"connectionPool": {"http": {"h2UpgradePolicy": "UPGRADE"}}},
            },
        },
    ]
    with running_mesh(docs, "hdr", tmp_path_factory.mktemp("headers")) as name:
        yield name


def _fetch(mesh: str, headers: dict[str, str], url: str = "http://echo/") -> dict[str, Any]:
    """The echo app's answer to one request from the client pod, with its status."""
    fetch = (sys.executable, "-c", FETCH, url, json.dumps(headers))
    out = mizzen("exec", f"{NS}/client-0", "--name", mesh, "--", *fetch, timeout=30)
    assert out.returncode == 0, out.stderr
    answer: dict[str, Any] = json.loads(out.stdout)
    return answer


def _seen(mesh: str, headers: dict[str, str]) -> dict[str, str]:
    """The headers the echo app received for one request from the client pod."""
    answer = _fetch(mesh, headers)
    assert answer["status"] == 200, answer
    seen: dict[str, str] = answer["headers"]
    return seen


def test_a_request_id_is_kept_when_sent(mesh: str) -> None:
    mine = str(uuid.uuid4())
    assert _seen(mesh, {"x-request-id": mine})["x-request-id"] == mine


def test_a_request_id_is_made_when_absent(mesh: str) -> None:
    made = {_seen(mesh, {})["x-request-id"] for _ in range(3)}
    assert len(made) == 3
    assert all(uuid.UUID(value) for value in made)


def test_forwarded_protocol_and_attempt_count(mesh: str) -> None:
    seen = _seen(mesh, {})
    assert seen["x-forwarded-proto"] == "http", seen
    assert seen["x-envoy-attempt-count"] == "1", seen


def test_hop_by_hop_headers_stop_at_the_sidecar(mesh: str) -> None:
    seen = _seen(mesh, {"Keep-Alive": "timeout=5", "Proxy-Connection": "keep-alive", "X-End": "1"})
    assert "keep-alive" not in seen and "proxy-connection" not in seen, seen
    assert seen["x-end"] == "1", seen


def test_headers_up_to_envoys_limit_pass(mesh: str) -> None:
    """Envoy's (and so Istio's) limit is 60 KiB of request headers: 50 KiB
    reach the app; 70 KiB are refused by the caller's sidecar with 431."""
    big = "b" * (50 * KIB)
    assert _seen(mesh, {"x-big": big})["x-big"] == big
    refused = _fetch(mesh, {"x-big": "b" * (70 * KIB)})
    assert refused["status"] == 431, refused


def _client_stats(mesh: str) -> dict[str, int]:
    out = mizzen(
        "exec", f"{NS}/client-0", "--name", mesh, "--", sys.executable, str(STATS), "stats"
    )
    assert out.returncode == 0, out.stderr
    (found,) = json.loads(out.stdout)
    return dict(found)


def test_h2_upgrade_policy_speaks_http2_between_the_sidecars(mesh: str) -> None:
    """An HTTP/1.1 app behind a DestinationRule with h2UpgradePolicy UPGRADE:
    the caller's sidecar talks HTTP/2 to the server's, which talks HTTP/1.1
    to the app; the plain service next to it stays HTTP/1.1 all the way."""
    answer = _fetch(mesh, {"x-end": "2"}, "http://echo-h2:81/up")
    assert answer["status"] == 200 and answer["headers"]["x-end"] == "2", answer
    _seen(mesh, {})
    stats = _client_stats(mesh)
    upgraded = f"cluster.outbound|81||echo-h2.{NS}.svc.cluster.local"
    plain = f"cluster.outbound|80||echo.{NS}.svc.cluster.local"
    assert stats[f"{upgraded}.upstream_cx_http2_total"] >= 1, stats
    assert stats[f"{upgraded}.upstream_cx_http1_total"] == 0, stats
    assert stats[f"{plain}.upstream_cx_http1_total"] >= 1, stats
    assert stats[f"{plain}.upstream_cx_http2_total"] == 0, stats
