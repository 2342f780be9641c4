"""WebSocket through two sidecars, as Istio allows it on every HTTP route:
1000 messages echoed, a connection quiet for 60 s that still works, and
upgrade requests routed by their headers like any HTTP request."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import command_deployment, injected_namespace, mizzen, running_mesh, service

APPS = Path(__file__).resolve().parent / "apps"
NS = "ws"
QUIET_SECONDS = 60


def _echo(version: str) -> dict[str, Any]:
    deployment = command_deployment(
        NS, f"wsecho-{version}", ["python3", str(APPS / "ws_echo.py"), "8765"]
    )
    labels = {"app": "wsecho", "version": version}
    spec: Any = deployment["spec"]
    spec["selector"]["matchLabels"] = labels
    spec["template"]["metadata"]["labels"] = labels
    return deployment


def manifest() -> list[dict[str, Any]]:
    return [
        injected_namespace(NS),
        _echo("v1"),
        _echo("v2"),
        # The client only needs a pod to run in.
        command_deployment(NS, "client", ["python3", "-c", "import time; time.sleep(86400)"]),
        service(NS, "wsecho", {"name": "http-ws", "port": 8765}),
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "wsecho", "namespace": NS},
            "spec": {
                "host": "wsecho",
                "subsets": [
                    {"name": "v1", "labels": {"version": "v1"}},
                    {"name": "v2", "labels": {"version": "v2"}},
                ],
            },
        },
        # Upgrade requests carrying x-channel: beta go to v2, all others to v1.
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "wsecho", "namespace": NS},
            "spec": {
                "hosts": ["wsecho"],
                "http": [
                    {
                        "match": [{"headers": {"x-channel": {"exact": "beta"}}}],
                        "route": [{"destination": {"host": "wsecho", "subset": "v2"}}],
                    },
                    {"route": [{"destination": {"host": "wsecho", "subset": "v1"}}]},
                ],
            },
        },
    ]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_mesh(manifest(), "ws", tmp_path_factory.mktemp("ws")) as name:
        yield name


def _client(mesh: str, count: int, quiet: float, *headers: str) -> dict[str, Any]:
    command = (sys.executable, str(APPS / "ws_client.py"), "ws://wsecho:8765/", str(count))
    out = mizzen(
        "exec",
        f"{NS}/client-0",
        "--name",
        mesh,
        "--",
        *command,
        str(quiet),
        *headers,
        timeout=quiet + 60,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_a_thousand_messages_through_both_sidecars(mesh: str) -> None:
    result = _client(mesh, 1000, 0)
    assert result["matched"] == 1000, result
    # The server's peer is its own sidecar's inbound address.
    assert result["greeting"] == {"pod": "wsecho-v1-0", "peer": "127.0.0.6"}, result


def test_upgrade_requests_are_routed_by_their_headers(mesh: str) -> None:
    pods = {_client(mesh, 1, 0, "x-channel=beta")["greeting"]["pod"] for _ in range(4)}
    assert pods == {"wsecho-v2-0"}, pods
    pods = {_client(mesh, 1, 0, "x-channel=stable")["greeting"]["pod"] for _ in range(4)}
    assert pods == {"wsecho-v1-0"}, pods


def test_a_quiet_connection_survives_a_minute(mesh: str) -> None:
    result = _client(mesh, 1, QUIET_SECONDS)
    assert result["matched"] == 1 and result["after_quiet"], result
