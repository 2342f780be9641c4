"""The Akka and Pekko seeds' capture annotations, exactly, through a real mesh.

Both seeds (Akka's and Pekko's "Istio" pages) give a Deployment whose pod
template says `includeInboundPorts: "8080"` and `excludeOutboundPorts:
"<remoting>,<management>"`. The promise is that the REST port goes through
both sidecars while cluster traffic (remoting, management) bypasses them in
both directions, and that the readiness probe on the management port works.

The Deployment is read from the seed text at test time and kept as it is
(annotations, ports, probes, replicas); only what the local runtime needs is
added: a `command` running `akka/cluster_node.py`, a Namespace with injection
and a Service. Proof comes from Envoy's own counters and access logs, read
from inside the pods (admin on 127.0.0.1:15000 in each pod's namespace) and
from what the app saw as its peer, never from the iptables rules.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_helpers import free_port, mesh_name

HERE = Path(__file__).resolve().parent
NODE = HERE / "akka" / "cluster_node.py"
CLIENT = HERE / "akka" / "pod_client.py"
SEEDS = {"akka": "000_*.txt", "pekko": "001_*.txt"}
# The address Envoy's inbound passthrough delivers from (Istio's convention).
INBOUND_SOURCE = "127.0.0.6"


def shared_dir() -> Path:
    env = os.environ.get("MIZZEN_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared"


def seed_deployment(text: str) -> dict[str, Any]:
    """The seed's Deployment YAML: from a ```yaml fence when there is one,
    else (a seed rendered to plain text) from `apiVersion:` to the end of the
    YAML block."""
    candidates = re.findall(r"```ya?ml\n(.*?)```", text, flags=re.S)
    start = re.search(r"^apiVersion:.*$", text, flags=re.M)
    if start is not None:
        block = []
        for line in text[start.start() :].splitlines():
            if line and not line[0].isspace() and not re.match(r"[A-Za-z]\w*:", line):
                break
            block.append(line)
        candidates.append("\n".join(block))
    for candidate in candidates:
        doc = yaml.safe_load(candidate)
        if isinstance(doc, dict) and doc.get("kind") == "Deployment":
            return doc
    raise AssertionError("the seed holds no Deployment YAML")


@dataclass(frozen=True)
class Ports:
    http: int
    remoting: int
    management: int


def compose(deployment: dict[str, Any], namespace: str) -> tuple[list[dict[str, Any]], Ports]:
    """The seed's Deployment in `namespace`, plus what the local runtime needs."""
    deployment = json.loads(json.dumps(deployment))  # a deep copy
    deployment["metadata"]["namespace"] = namespace
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    ports = Ports(named["http"], named["remoting"], named["management"])
    container["command"] = ["python3", str(NODE)]
    container["args"] = [
        *("--http", str(ports.http)),
        *("--remoting", str(ports.remoting)),
        *("--management", str(ports.management)),
    ]
    app = deployment["spec"]["selector"]["matchLabels"]
    namespace_doc = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": namespace, "labels": {"istio-injection": "enabled"}},
    }
    # The cluster ports are on the Service too, so each sidecar has listeners
    # for them: had capture taken that traffic, those listeners would count it.
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": deployment["metadata"]["name"], "namespace": namespace},
        "spec": {
            "selector": app,
            "ports": [
                {"name": "http", "port": ports.http, "targetPort": ports.http},
                {"name": "tcp-remoting", "port": ports.remoting, "targetPort": ports.remoting},
                {
                    "name": "http-management",
                    "port": ports.management,
                    "targetPort": ports.management,
                },
            ],
        },
    }
    return [namespace_doc, service, deployment], ports


def mizzen(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mizzen", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def leftovers(name: str) -> list[str]:
    """What mesh `name` may leave on the machine: namespaces, hosts folders, links."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found = [n.split()[0] for n in netns.splitlines() if n.startswith(f"mz-{name}.")]
    etc = Path("/etc/netns")
    found += [str(p) for p in etc.glob(f"mz-{name}.*")] if etc.exists() else []
    found += [line for line in links.splitlines() if f"mizzen:{name}" in line]
    return found


# Counters that only a new connection or request can move. Gauges and
# counters that move by themselves (an original-dst host expiring, a pooled
# connection closing later) would make "nothing moved" flaky.
TRAFFIC_COUNTER = re.compile(r"\.(downstream|upstream)_(cx|rq)_total$")
# The sidecar's own plumbing, not a path the app's traffic can take.
PLUMBING = re.compile(r"^(listener|http)\.admin\.|0\.0\.0\.0_15090|prometheus_stats|xds-grpc")


def traffic(stats: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in stats.items() if TRAFFIC_COUNTER.search(k) and not PLUMBING.search(k)}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    moved = {k: after[k] - before.get(k, 0) for k in after}
    return {k: v for k, v in moved.items() if v}


@dataclass
class SeedMesh:
    name: str
    namespace: str
    ports: Ports
    ips: dict[str, str]  # pod name -> pod IP
    ready_at: float  # wall clock when `mizzen up` said every pod was ready

    @property
    def service(self) -> str:
        return "my-service"

    @property
    def outbound_cluster(self) -> str:
        return f"outbound|{self.ports.http}||my-service.{self.namespace}.svc.cluster.local"

    def run(self, pod: str, *steps: str) -> list[Any]:
        """`pod_client.py STEP...` inside `pod`'s network namespace."""
        out = mizzen(
            "exec",
            f"{self.namespace}/{pod}",
            "--name",
            self.name,
            "--",
            sys.executable,
            str(CLIENT),
            *steps,
        )
        assert out.returncode == 0, f"exec in {pod} failed: {out.stderr}"
        result: list[Any] = json.loads(out.stdout)
        return result

    def stats(self, pods: list[str]) -> dict[str, dict[str, int]]:
        return {pod: self.run(pod, "stats")[0] for pod in pods}

    def proxy_log(self, pod: str) -> str:
        out = mizzen("logs", f"{self.namespace}/{pod}", "--proxy", "--name", self.name)
        assert out.returncode == 0, out.stderr
        return out.stdout


def eventually(check: Callable[[], str | None], timeout: float = 15) -> None:
    """Poll `check` (None: done, else what is still missing) until a deadline."""
    deadline = time.monotonic() + timeout
    while (missing := check()) is not None:
        assert time.monotonic() < deadline, missing
        time.sleep(0.2)


@pytest.fixture(params=sorted(SEEDS))
def seed_mesh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SeedMesh]:
    flavor: str = request.param
    seeds = shared_dir() / "seeds"
    found = sorted(seeds.glob(SEEDS[flavor])) if seeds.is_dir() else []
    if not found:
        pytest.skip(f"{flavor} seed {SEEDS[flavor]} not found in {seeds} (set MIZZEN_SHARED)")
    deployment = seed_deployment(found[0].read_text())
    docs, ports = compose(deployment, flavor)
    # What is under test, as the seed writes it.
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "traffic.sidecar.istio.io/includeInboundPorts": str(ports.http),
        "traffic.sidecar.istio.io/excludeOutboundPorts": f"{ports.remoting},{ports.management}",
    }, f"{found[0]} no longer has the annotations this test proves"
    manifest = tmp_path / f"{flavor}.yaml"
    manifest.write_text(yaml.safe_dump_all(docs, sort_keys=False))

    name = mesh_name(flavor)
    try:
        up = mizzen(
            *("up", str(manifest), "--detach", "--name", name),
            *("--ingress-port", str(free_port()), "--timeout", "60"),
        )
        ready_at = time.time()
        assert up.returncode == 0, f"mizzen up failed:\n{up.stderr}{up.stdout}"
        pods = json.loads(mizzen("get", "pods", "--name", name, "-o", "json").stdout)
        mine = [p for p in pods if p["namespace"] == flavor]
        yield SeedMesh(name, flavor, ports, {p["name"]: p["ip"] for p in mine}, ready_at)
    finally:
        down = mizzen("down", "--name", name)
    assert down.returncode == 0, down.stderr
    assert leftovers(name) == []


def test_seed_capture_annotations(seed_mesh: SeedMesh) -> None:
    mesh, ports = seed_mesh, seed_mesh.ports
    pods = sorted(mesh.ips)
    assert pods == ["my-service-0", "my-service-1", "my-service-2"]  # replicas: 3
    a, b = pods[0], pods[1]
    a_ip, b_ip = mesh.ips[a], mesh.ips[b]
    token = f"{mesh.name}-{time.monotonic_ns()}"

    # -- readiness: the probe on the management port decided it -------------
    # Each node refuses its first two /ready probes; `up` returned only after
    # every pod's /ready had said 200. As in Istio, the probes of an injected
    # pod are rewritten through the agent (15020), which runs them against
    # the app from 127.0.0.6; no Envoy sees them (the management port's
    # counters are checked below).
    status = json.loads(mizzen("get", "pods", "--name", mesh.name, "-o", "json").stdout)
    assert all(p["ready"] and p["sidecar"] for p in status), status
    for pod in pods:
        (answer,) = mesh.run(pod, f"http=http://127.0.0.1:{ports.management}/probes")
        probes = answer["body"]["probes"]
        assert probes["refused"] == 2 and probes["accepted"] >= 1, (pod, probes)
        assert probes["first_accepted_at"] <= mesh.ready_at, (pod, probes, mesh.ready_at)
        assert probes["agents"] == ["mizzen-probe"], (pod, probes)
        assert probes["peers"] == [INBOUND_SOURCE], (pod, probes)

    # -- the REST port goes through A's sidecar and the receiver's -----------
    # A -> B by pod IP, then by service name: Envoy balances over all three
    # pods (A included), and each answer says which pod it came from.
    rest = [f"http=http://{b_ip}:{ports.http}/{token}/by-ip"]
    rest += [f"http=http://{mesh.service}:{ports.http}/{token}/by-name/{i}" for i in range(6)]
    before = mesh.stats(others := [p for p in pods if p != a])
    a_before, *answers, a_after = mesh.run(a, "stats", *rest, "stats")
    after = mesh.stats(others)
    before[a], after[a] = a_before, a_after
    by_ip, by_name = answers[0], answers[1:]

    assert by_ip["status"] == 200 and by_ip["body"]["pod"] == b, by_ip
    assert all(r["status"] == 200 for r in by_name), by_name
    assert {r["body"]["pod"] for r in by_name} - {a}, "the service never sent A to another pod"
    # Every answer came from the receiving sidecar's inbound passthrough address.
    assert {r["body"]["peer"] for r in answers} == {INBOUND_SOURCE}, answers
    moved = {pod: delta(before[pod], after[pod]) for pod in pods}
    # A's outbound: the HTTP listener for the port took all 7 requests; the one
    # by pod IP left through PassthroughCluster, the six by name through the
    # service's outbound cluster.
    assert moved[a].get(f"http.outbound_0.0.0.0_{ports.http}.downstream_rq_total") == 7, moved[a]
    assert moved[a].get(f"cluster.{mesh.outbound_cluster}.upstream_rq_total") == 6, moved[a]
    assert moved[a].get("cluster.PassthroughCluster.upstream_rq_total") == 1, moved[a]
    # Each receiver's inbound: exactly the requests it answered, on inbound|8080||.
    for pod in pods:
        answered = sum(r["body"]["pod"] == pod for r in answers)
        inbound = moved[pod].get(f"cluster.inbound|{ports.http}||.upstream_rq_total", 0)
        assert inbound == answered, (pod, answered, moved[pod])
        served = moved[pod].get(f"http.inbound_0.0.0.0_{ports.http}.downstream_rq_total", 0)
        assert served == answered, (pod, answered, moved[pod])

    # The access logs say the same: A logged the request out, B logged it in
    # (from A's address, to its inbound|8080|| cluster).
    def logged() -> str | None:
        out_line = _line(mesh.proxy_log(a), f"/{token}/by-ip ")
        in_line = _line(mesh.proxy_log(b), f"/{token}/by-ip ")
        if out_line is None or in_line is None:
            return f"no access log line for /{token}/by-ip yet: out {out_line!r}, in {in_line!r}"
        assert "PassthroughCluster" in out_line and f"{b_ip}:{ports.http}" in out_line, out_line
        assert f"inbound|{ports.http}||" in in_line and f" {a_ip}:" in in_line, in_line
        return None

    eventually(logged)

    # -- remoting and management bypass both sidecars ------------------------
    # By pod IP (what Akka/Pekko cluster members do) and by service name (the
    # runtime's kube-proxy NAT takes the VIP to some pod, any of the three).
    cluster = [
        f"tcp={b_ip}:{ports.remoting}",
        f"http=http://{b_ip}:{ports.management}/{token}/management-by-ip",
        f"tcp={mesh.service}:{ports.remoting}",
        f"http=http://{mesh.service}:{ports.management}/{token}/management-by-name",
    ]
    before = mesh.stats(others)
    a_before, *answers, a_after = mesh.run(a, "stats", *cluster, "stats")
    after = mesh.stats(others)
    before[a], after[a] = a_before, a_after

    assert [r["body"]["role"] for r in answers] == ["remoting", "management"] * 2, answers
    assert answers[0]["body"]["pod"] == b and answers[1]["body"]["pod"] == b, answers
    assert all(r.get("status", 200) == 200 for r in answers), answers
    # The receiving app saw A's own pod IP, not a sidecar's 127.0.0.6.
    assert [r["body"]["peer"] for r in answers] == [a_ip] * 4, answers
    assert [r["local"] for r in answers if "local" in r] == [a_ip] * 2, answers
    # Not one connection or request on any listener or cluster of any sidecar:
    # not A's outbound ones (virtualOutbound, the service's VIP listener for
    # remoting, the HTTP listener for management, Passthrough), not B's (or
    # whoever answered by name) inbound ones.
    expected = {
        a: [
            "listener.0.0.0.0_15001.downstream_cx_total",
            f"listener.0.0.0.0_{ports.management}.downstream_cx_total",
            f"cluster.outbound|{ports.remoting}||my-service.{mesh.namespace}"
            ".svc.cluster.local.upstream_cx_total",
            "cluster.PassthroughCluster.upstream_cx_total",
        ],
        b: [
            "listener.0.0.0.0_15006.downstream_cx_total",
            f"cluster.inbound|{ports.remoting}||.upstream_cx_total",
            f"cluster.inbound|{ports.management}||.upstream_cx_total",
            "cluster.InboundPassthroughCluster.upstream_cx_total",
        ],
    }
    for pod in pods:
        watched = traffic(before[pod])
        assert set(expected.get(pod, [])) <= set(watched), (pod, sorted(watched))
        assert delta(watched, traffic(after[pod])) == {}, f"{pod}'s sidecar saw cluster traffic"

    # And no sidecar logged the management requests: once a later request
    # through B's sidecar is in both logs, anything before it would be too.
    (marker,) = mesh.run(a, f"http=http://{b_ip}:{ports.http}/{token}/marker")
    assert marker["status"] == 200, marker

    def flushed() -> str | None:
        logs = {pod: mesh.proxy_log(pod) for pod in pods}
        if not all(f"/{token}/marker " in logs[p] for p in (a, b)):
            return "the marker request is not in A's and B's access logs yet"
        for pod, text in logs.items():
            assert "/management-by-" not in text, f"{pod}'s sidecar logged management traffic"
        return None

    eventually(flushed)


def _line(log: str, needle: str) -> str | None:
    return next((line for line in log.splitlines() if needle in line), None)
