"""Ports without a declared protocol, as most Services in the wild have:
the sidecar detects HTTP per connection, so VirtualService HTTP routes apply,
and anything else still goes through as TCP.

One pod image (akka/cluster_node.py) answers HTTP on 8000 and echoes lines
on 9000; two Services expose those ports with no name and no appProtocol.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import injected_namespace, mizzen, poll, running_mesh, service

HERE = Path(__file__).resolve().parent
NODE = HERE / "akka" / "cluster_node.py"
CLIENT = HERE / "akka" / "pod_client.py"
NS = "detect"


def _node(version: str) -> dict[str, Any]:
    labels = {"app": "echo", "version": version}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"echo-{version}", "namespace": NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "node",
                            "image": "python:3.11",
                            "command": ["python3", str(NODE)],
                            "args": [
                                "--http",
                                "8000",
                                "--remoting",
                                "9000",
                                "--management",
                                "8558",
                            ],
                            "ports": [{"containerPort": 8000}, {"containerPort": 9000}],
                        }
                    ]
                },
            },
        },
    }


def manifest() -> list[dict[str, Any]]:
    return [
        injected_namespace(NS),
        _node("v1"),
        _node("v2"),
        {**_node("client"), "metadata": {"name": "client", "namespace": NS}},
        # No name, no appProtocol: Istio would detect the protocol.
        service(NS, "echo", {"port": 8000}),
        service(NS, "line", {"port": 9000}, app="echo"),
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "echo", "namespace": NS},
            "spec": {
                "host": "echo",
                "subsets": [
                    {"name": "v1", "labels": {"version": "v1"}},
                    {"name": "v2", "labels": {"version": "v2"}},
                ],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "echo", "namespace": NS},
            "spec": {
                "hosts": ["echo"],
                "http": [
                    {
                        "match": [{"uri": {"prefix": "/fault"}}],
                        "fault": {"abort": {"httpStatus": 418, "percentage": {"value": 100}}},
                        "route": [{"destination": {"host": "echo", "subset": "v2"}}],
                    },
                    {"route": [{"destination": {"host": "echo", "subset": "v2"}}]},
                ],
            },
        },
    ]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    docs = manifest()
    # The client runs the same program; it is not behind either Service.
    docs[3]["spec"]["selector"]["matchLabels"] = {"app": "client"}
    docs[3]["spec"]["template"]["metadata"]["labels"] = {"app": "client"}
    with running_mesh(docs, "detect", tmp_path_factory.mktemp("detect")) as name:
        yield name


def _run(mesh: str, *steps: str, pod: str = "client-0") -> list[Any]:
    out = mizzen("exec", f"{NS}/{pod}", "--name", mesh, "--", sys.executable, str(CLIENT), *steps)
    assert out.returncode == 0, out.stderr
    answers: list[Any] = json.loads(out.stdout)
    return answers


def test_services_show_auto_for_undeclared_ports(mesh: str) -> None:
    services = json.loads(mizzen("get", "services", "--name", mesh, "-o", "json").stdout)
    ports = {s["name"]: s["ports"] for s in services if s["namespace"] == NS}
    assert ports == {"echo": ["8000/auto"], "line": ["9000/auto"]}, services


def test_http_on_an_unnamed_port_follows_the_virtual_service(mesh: str) -> None:
    steps = [f"http=http://echo:8000/req-{i}" for i in range(20)]

    def all_v2() -> bool:
        answers = _run(mesh, *steps)
        return all(a["status"] == 200 for a in answers) and {a["body"]["pod"] for a in answers} == {
            "echo-v2-0"
        }

    poll(all_v2, 30, "20 of 20 requests on the unnamed port answered by v2")
    before, answer, after = _run(mesh, "stats", "http=http://echo:8000/counted", "stats")
    # The HTTP chain of the detected port took it (the route picked v2).
    key = next(k for k in after if k.endswith("_8000.downstream_rq_total") and "outbound" in k)
    assert after[key] - before.get(key, 0) == 1, key
    assert answer["body"]["pod"] == "echo-v2-0", answer
    # Through the receiving sidecar: the app saw Envoy's inbound address.
    (answer,) = _run(mesh, "http=http://echo:8000/peer")
    assert answer["body"]["peer"] == "127.0.0.6", answer


def test_faults_apply_on_an_unnamed_port(mesh: str) -> None:
    (answer,) = _run(mesh, "http=http://echo:8000/fault/x")
    assert answer["status"] == 418, answer


def test_plain_tcp_on_an_unnamed_port_still_works(mesh: str) -> None:
    before, *answers, after = _run(mesh, "stats", *(["tcp=line:9000"] * 6), "stats")
    assert {a["body"]["pod"] for a in answers} <= {"echo-v1-0", "echo-v2-0"}
    assert all(a["body"]["echo"] == "hello" for a in answers), answers
    # The detected-TCP chain took them: the service's outbound cluster counted
    # six connections, none went through an HTTP connection manager.
    cluster = f"cluster.outbound|9000||line.{NS}.svc.cluster.local.upstream_cx_total"
    assert after.get(cluster, 0) - before.get(cluster, 0) == 6, (before, after)
    http_requests = {
        k: after[k] - before.get(k, 0)
        for k in after
        if k.startswith("http.outbound_") and "_9000." in k and k.endswith("downstream_rq_total")
    }
    assert not any(http_requests.values()), http_requests


def _grown(before: dict[str, int], after: dict[str, int], key: str) -> int:
    return after.get(key, 0) - before.get(key, 0)


def test_the_receiving_sidecar_detects_http_and_tcp_inside_mtls(mesh: str) -> None:
    """The server side sniffs too: the caller's sidecar says over mTLS (by
    ALPN) that a connection carries HTTP, so the receiving sidecar serves it
    with its HTTP connection manager; the echo lines stay TCP."""
    poll(
        lambda: _run(mesh, "http=http://echo:8000/warm")[0]["body"]["pod"] == "echo-v2-0",
        30,
        "the route to v2 in place",
    )
    (before,) = _run(mesh, "stats", pod="echo-v2-0")
    answers = _run(mesh, *(["http=http://echo:8000/in"] * 3), *(["tcp=line:9000"] * 4))
    (after,) = _run(mesh, "stats", pod="echo-v2-0")
    assert all(a.get("status", 200) == 200 for a in answers), answers
    assert _grown(before, after, "http.inbound_0.0.0.0_8000.downstream_rq_total") == 3
    # Over mTLS: every connection the inbound HTTP manager served was TLS.
    prefix = "http.inbound_0.0.0.0_8000.downstream_cx_"
    assert after[prefix + "ssl_total"] == after[prefix + "total"] >= 1, after
    tcp_to_v2 = sum(a["body"]["pod"] == "echo-v2-0" for a in answers[3:])
    assert _grown(before, after, "cluster.inbound|9000||.upstream_cx_total") == tcp_to_v2
    assert after.get("http.inbound_0.0.0.0_9000.downstream_rq_total", 0) == 0
