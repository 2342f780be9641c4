"""DestinationRule traffic policies in a real local mesh: the client's
sidecar balances, hashes, trips its circuit breaker and ejects a failing
pod as Istio documents (the circuit breaking task, the outlier detection
and consistent hash settings of the DestinationRule reference).

Pods (``manifests/traffic-policy.yaml``, namespace ``tp``): ``backend-0``
.. ``backend-2`` (apps/echo_modes.py: the query string names the pod that
fails or is slow), ``greeter-0`` .. ``greeter-2`` (apps/grpc_echo.py) and
``client-0``, where apps/load_client.py and apps/grpc_spread.py run. Each
test applies its DestinationRule, polls until the client's sidecar acts on
it, measures a bounded load, and deletes the rule again.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import apply_text, delete_path, free_port, mesh_name, poll, steady

from mizzen.mesh import control
from mizzen.mesh.admin import admin_get
from mizzen.mesh.launcher import LaunchError, launch, stop, wait_ready

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifests" / "traffic-policy.yaml"
APPS = HERE / "apps"
NS = "tp"
CLIENT = "client-0"
BACKEND = f"backend.{NS}.svc.cluster.local"
CLUSTER = f"cluster.outbound|80||{BACKEND}"
GREETER_CLUSTER = f"cluster.outbound|50051||greeter.{NS}.svc.cluster.local"
GREETER_LISTENER = "listener.0.0.0.0_50051"
BACKENDS = ("backend-0", "backend-1", "backend-2")
GREETERS = ("greeter-0", "greeter-1", "greeter-2")
# One of the three pods answers 500 to every request / is slow.
FAIL_ONE = "/?fail=backend-0"
SLOW_ONE = "/?slow=backend-0&ms=200"


@pytest.fixture(scope="module")
def mesh() -> Iterator[Any]:
    layout = launch(mesh_name("traffic"), [str(MANIFEST)], free_port())
    try:
        try:
            wait_ready(layout, timeout=240)
        except LaunchError as exc:
            raise AssertionError(str(exc)) from None
        poll(lambda: set(load(layout, requests=30)["pods"]) == set(BACKENDS), 60, "3 backends")
        poll(lambda: grpc_spread(layout, 6)["codes"] == {"OK": 6}, 60, "the greeters answering")
        yield layout
    finally:
        stop(layout)


def _in_client(layout: Any, *command: str, timeout: float) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "mizzen", "exec", f"{NS}/{CLIENT}", "--name", layout.name,
         "--", sys.executable, *command],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, done.stderr
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def load(
    layout: Any,
    path: str = "/",
    *,
    requests: int = 100,
    concurrency: int = 1,
    deadline: float = 30,
    headers: tuple[str, ...] = (),
    key_header: str = "",
    keys: int = 1,
    cookies: bool = False,
) -> dict[str, Any]:
    """apps/load_client.py in the client pod against ``http://backend<path>``."""
    args = [str(APPS / "load_client.py"), f"http://backend{path}"]
    args += ["-n", str(requests), "-c", str(concurrency), "--deadline", str(deadline)]
    for header in headers:
        args += ["-H", header]
    if key_header:
        args += ["--key-header", key_header, "--keys", str(keys)]
    if cookies:
        args.append("--cookies")
    return _in_client(layout, *args, timeout=deadline + 30)


def grpc_spread(layout: Any, calls: int, deadline: float = 30) -> dict[str, Any]:
    """apps/grpc_spread.py in the client pod: ``calls`` unary calls on one channel."""
    command = (str(APPS / "grpc_spread.py"), "greeter:50051", str(calls), "1", str(deadline))
    return _in_client(layout, *command, timeout=deadline + 30)


def ok(result: dict[str, Any]) -> int:
    return int(result["status"].get("200", 0))


def stats(layout: Any, *names: str) -> dict[str, int]:
    """The client sidecar's counters and gauges ``names`` (0 when absent)."""
    row = next(
        p
        for p in control.call(layout.control_socket, {"op": "status"})["pods"]
        if p["namespace"] == NS and p["name"] == CLIENT
    )
    pattern = "|".join(f"^{re.escape(name)}$" for name in names)
    text = admin_get(layout.proxy_dir(NS, CLIENT), f"/stats?filter={pattern}", row["netns"])
    found = {
        key: int(value)
        for key, _, value in (line.partition(": ") for line in text.decode().splitlines())
        if value.strip().isdigit()
    }
    return {name: found.get(name, 0) for name in names}


def access_log(layout: Any) -> str:
    return (layout.proxy_dir(NS, CLIENT) / "envoy.log").read_text(errors="replace")


def destination_rule(name: str, traffic_policy: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        f"metadata:\n  name: {name}\n  namespace: {NS}\n"
        f"spec:\n  host: {BACKEND}\n  trafficPolicy:\n{traffic_policy}"
    )


def failed_share(result: dict[str, Any]) -> float:
    return int(result["status"].get("500", 0)) / max(1, int(result["requests"]))


def one_pod_fails(result: dict[str, Any]) -> None:
    """Only backend-0 fails, and it fails every time (the others never do)."""
    by_pod = result["status_by_pod"]
    assert set(by_pod.get("backend-0", {"500": 0})) <= {"500"}, result
    for pod in BACKENDS[1:]:
        assert set(by_pod.get(pod, {})) <= {"200"}, result


# Istio's circuit breaking task, verbatim.
CIRCUIT_BREAKER = """\
    connectionPool:
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 1
        maxRequestsPerConnection: 1
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
"""


def test_circuit_breaker_trips_with_upstream_overflow(mesh: Any, tmp_path: Path) -> None:
    overflow = f"{CLUSTER}.upstream_rq_pending_overflow"
    path = apply_text(mesh, tmp_path, "backend-cb", destination_rule("backend-cb", CIRCUIT_BREAKER))
    try:
        steady(
            lambda: "503" in load(mesh, requests=40, concurrency=8)["status"],
            30,
            "the circuit breaker tripping",
        )
        before = stats(mesh, overflow)[overflow]
        result = load(mesh, requests=200, concurrency=8)
        grew = stats(mesh, overflow)[overflow] - before
        refused = int(result["status"].get("503", 0))
        assert result["requests"] == 200 and refused >= 0.2 * 200, result
        assert set(result["status"]) <= {"200", "503"}, result
        # Refused by the client's own sidecar: no pod answered, Envoy says why.
        assert result["envoy_headers"] == {"x-envoy-overloaded: true": refused}, result
        assert all("reset reason: overflow" in body for body in result["unnamed_bodies"]), result
        assert grew >= refused, (grew, result)
        # Response flag UO (upstream overflow) in the caller's access log;
        # Envoy flushes the log every few seconds.
        uo = re.compile(rf'" 503 UO .* outbound\|80\|\|{re.escape(BACKEND)} ')
        poll(lambda: bool(uo.search(access_log(mesh))), 30, "503 UO in the client's access log")
    finally:
        delete_path(mesh, path)
    steady(
        lambda: ok(load(mesh, requests=40, concurrency=8)) == 40,
        30,
        "every request answered without the circuit breaker",
    )
    result = load(mesh, requests=200, concurrency=8)
    assert result["status"] == {"200": 200}, result


OUTLIER_DETECTION = """\
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
"""


def test_outlier_detection_ejects_the_failing_pod(mesh: Any, tmp_path: Path) -> None:
    ejected = f"{CLUSTER}.outlier_detection.ejections_active"
    # Without the rule about a third of the requests fail: one pod in three.
    before = load(mesh, FAIL_ONE, requests=300, concurrency=3)
    assert before["requests"] == 300 and 0.20 <= failed_share(before) <= 0.45, before
    one_pod_fails(before)

    rule = destination_rule("backend-od", OUTLIER_DETECTION)
    path = apply_text(mesh, tmp_path, "backend-od", rule)
    try:

        def is_ejected() -> bool:
            load(mesh, FAIL_ONE, requests=10)
            return stats(mesh, ejected)[ejected] >= 1

        poll(is_ejected, 30, "backend-0 ejected by the client's sidecar")
        result = load(mesh, FAIL_ONE, requests=300, concurrency=3)
        assert result["requests"] == 300 and ok(result) >= 0.95 * 300, result
        one_pod_fails(result)
    finally:
        delete_path(mesh, path)
    # Without the rule the failing pod is back in the pool.
    steady(
        lambda: failed_share(load(mesh, FAIL_ONE, requests=30)) > 0,
        30,
        "backend-0 back in the pool without the rule",
    )
    after = load(mesh, FAIL_ONE, requests=300, concurrency=3)
    assert after["requests"] == 300 and 0.20 <= failed_share(after) <= 0.45, after
    one_pod_fails(after)


def test_consistent_hash_on_a_header_keeps_a_user_on_one_pod(mesh: Any, tmp_path: Path) -> None:
    rule = destination_rule(
        "backend-hash", "    loadBalancer:\n      consistentHash:\n        httpHeaderName: x-user\n"
    )
    path = apply_text(mesh, tmp_path, "backend-hash", rule)
    try:

        def sticky() -> bool:
            result = load(mesh, requests=60, concurrency=3, key_header="x-user", keys=20)
            return all(len(pods) == 1 for pods in result["keys"].values())

        steady(sticky, 30, "each x-user on one pod")
        # 20 users, 10 requests each, from 4 connections at once.
        users = load(mesh, requests=200, concurrency=4, key_header="x-user", keys=20)
        assert users["status"] == {"200": 200}, users
        assert len(users["keys"]) == 20, users
        assert all(len(pods) == 1 for pods in users["keys"].values()), users["keys"]
        assert len({pod for pods in users["keys"].values() for pod in pods}) >= 2, users["keys"]
        # One user, many connections: always the same pod.
        alice = load(mesh, requests=50, concurrency=5, headers=("x-user: alice",))
        assert alice["status"] == {"200": 50} and len(alice["pods"]) == 1, alice
    finally:
        delete_path(mesh, path)
    steady(
        lambda: len(load(mesh, requests=30, headers=("x-user: alice",))["pods"]) >= 2,
        30,
        "one user spread over the pods without the rule",
    )


def test_consistent_hash_on_a_cookie_the_sidecar_sets(mesh: Any, tmp_path: Path) -> None:
    rule = destination_rule(
        "backend-cookie",
        "    loadBalancer:\n      consistentHash:\n"
        "        httpCookie:\n          name: user\n          ttl: 60s\n",
    )
    path = apply_text(mesh, tmp_path, "backend-cookie", rule)
    try:
        steady(
            lambda: load(mesh, requests=1)["clients"][0]["set_cookie"].startswith("user="),
            30,
            "the sidecar setting the user cookie",
        )
        # 4 clients, each keeping the cookie its first answer set.
        result = load(mesh, requests=100, concurrency=4, cookies=True)
        assert result["status"] == {"200": 100}, result
        for client in result["clients"]:
            assert client["requests"] >= 1, result
            assert client["set_cookie_at"] == [0], client
            assert client["set_cookie"].startswith("user="), client
            assert "max-age=60" in client["set_cookie"].lower(), client
            assert client["cookie"].startswith("user="), client
            assert len(client["pods"]) == 1, client
        # A client that never sends it back gets a new one with every answer.
        forgetful = load(mesh, requests=5)
        assert forgetful["clients"][0]["set_cookie_at"] == [0, 1, 2, 3, 4], forgetful
    finally:
        delete_path(mesh, path)
    steady(
        lambda: load(mesh, requests=3, cookies=True)["clients"][0]["set_cookie_at"] == [],
        30,
        "no cookie set without the rule",
    )


def in_turn(layout: Any) -> bool:
    """Round robin: on one connection (so one Envoy worker) 30 requests in a
    row go to each pod in turn, 10 each."""
    return sorted(load(layout, requests=30)["pods"].values()) == [10, 10, 10]


def test_round_robin_spreads_requests_evenly(mesh: Any, tmp_path: Path) -> None:
    rule = destination_rule("backend-rr", "    loadBalancer:\n      simple: ROUND_ROBIN\n")
    path = apply_text(mesh, tmp_path, "backend-rr", rule)
    try:
        steady(lambda: in_turn(mesh), 30, "round robin in the client's sidecar")
        result = load(mesh, requests=300, concurrency=3)
        assert result["status"] == {"200": 300}, result
        shares = {pod: result["pods"].get(pod, 0) / 300 for pod in BACKENDS}
        assert all(abs(share - 1 / 3) <= 0.05 for share in shares.values()), shares
    finally:
        delete_path(mesh, path)


def test_least_request_favours_the_fast_pods(mesh: Any, tmp_path: Path) -> None:
    """backend-0 takes 200 ms, eight requests at once: round robin still
    gives it a third, least request (Istio's default) far fewer."""

    def favours_fast(result: dict[str, Any]) -> bool:
        slow = result["pods"].get("backend-0", 0)
        fast = min(result["pods"].get(pod, 0) for pod in BACKENDS[1:])
        return fast >= 2 * slow

    def balancer(simple: str) -> str:
        return destination_rule("backend-lb", f"    loadBalancer:\n      simple: {simple}\n")

    path = apply_text(mesh, tmp_path, "backend-lb", balancer("ROUND_ROBIN"))
    try:
        steady(lambda: in_turn(mesh), 30, "round robin in the client's sidecar")
        turns = load(mesh, SLOW_ONE, requests=300, concurrency=8, deadline=60)
        assert turns["status"] == {"200": 300}, turns
        assert abs(turns["pods"].get("backend-0", 0) / 300 - 1 / 3) <= 0.05, turns["pods"]

        apply_text(mesh, tmp_path, "backend-lb", balancer("LEAST_REQUEST"))
        steady(
            lambda: favours_fast(load(mesh, SLOW_ONE, requests=80, concurrency=8)),
            60,
            "least request in the client's sidecar",
        )
        result = load(mesh, SLOW_ONE, requests=300, concurrency=8, deadline=60)
        assert result["status"] == {"200": 300}, result
        assert favours_fast(result), result["pods"]
    finally:
        delete_path(mesh, path)


def test_grpc_calls_on_one_connection_spread_over_the_pods(mesh: Any) -> None:
    """HTTP/2 is balanced per request: the client's one connection to its
    sidecar, the sidecar's calls spread over every greeter."""
    names = (f"{GREETER_LISTENER}.downstream_cx_total", f"{GREETER_CLUSTER}.upstream_rq_total")
    before = stats(mesh, *names)
    result = grpc_spread(mesh, 300)
    after = stats(mesh, *names)
    assert result["codes"] == {"OK": 300}, result
    assert set(result["pods"]) == set(GREETERS), result
    assert all(result["pods"][pod] >= 50 for pod in GREETERS), result
    grew = {name: after[name] - before[name] for name in names}
    assert grew == {names[0]: 1, names[1]: 300}, grew
