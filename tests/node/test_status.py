"""Node, Lease and pod status objects (mizzen.node.status)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from mizzen.node.status import (
    LEASE_SECONDS,
    ContainerState,
    lease_object,
    micro_time,
    node_object,
    node_status,
    pod_status,
    rfc3339,
)

NOW = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
STARTED = NOW - timedelta(minutes=3)
T_INIT = NOW - timedelta(minutes=2)
T_READY = NOW - timedelta(seconds=30)
HOST_IP = "198.18.12.1"
POD_IP = "198.18.12.7"


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def flag(status: dict[str, Any], kind: str) -> str:
    return str(conditions(status)[kind]["status"])


def running(name: str, ready: bool = True) -> ContainerState:
    return ContainerState(
        name, f"docker.io/shop/{name}:1", running=True, ready=ready, started_at=STARTED
    )


def done(name: str, code: int = 0) -> ContainerState:
    return ContainerState(
        name,
        f"docker.io/shop/{name}:1",
        exit_code=code,
        started_at=STARTED,
        finished_at=T_INIT,
    )


def status_of(
    init: list[ContainerState],
    containers: list[ContainerState],
    pod_ip: str = POD_IP,
    transitions: dict[str, datetime] | None = None,
    phase: str | None = None,
) -> dict[str, Any]:
    return pod_status(
        host_ip=HOST_IP,
        pod_ip=pod_ip,
        started=STARTED,
        init=init,
        containers=containers,
        transitions=transitions or {},
        phase=phase,
    )


# -- time formats -----------------------------------------------------------------


def test_rfc3339_is_utc_seconds_and_micro_time_keeps_microseconds() -> None:
    assert rfc3339(NOW) == "2030-05-06T07:08:09Z"
    assert micro_time(NOW) == "2030-05-06T07:08:09.123456Z"
    plus2 = NOW.astimezone(timezone(timedelta(hours=2)))
    assert rfc3339(plus2) == "2030-05-06T07:08:09Z"


# -- Node and Lease ------------------------------------------------------------------


def test_node_object_carries_hostname_and_extra_labels() -> None:
    node = node_object("mizzen-t", {"topology.kubernetes.io/zone": "z1"})
    assert node["kind"] == "Node"
    assert node["metadata"]["name"] == "mizzen-t"
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "mizzen-t"
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["topology.kubernetes.io/zone"] == "z1"


def test_node_status_is_ready_with_allocatable_pods() -> None:
    st = node_status(HOST_IP, "mizzen-t", NOW)
    ready = conditions(st)["Ready"]
    assert ready["status"] == "True"
    assert ready["lastHeartbeatTime"] == ready["lastTransitionTime"] == "2030-05-06T07:08:09Z"
    for pressure in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        assert flag(st, pressure) == "False"
    assert int(st["allocatable"]["pods"]) > 0
    assert st["allocatable"]["pods"] == st["capacity"]["pods"]
    assert {"type": "InternalIP", "address": HOST_IP} in st["addresses"]
    assert {"type": "Hostname", "address": "mizzen-t"} in st["addresses"]
    assert st["nodeInfo"]["kubeletVersion"].startswith("v")


def test_lease_object_is_held_by_the_node_and_owned_by_it() -> None:
    lease = lease_object("mizzen-t", "0b7c-uid", NOW)
    assert lease["apiVersion"] == "coordination.k8s.io/v1"
    assert lease["kind"] == "Lease"
    assert lease["metadata"]["name"] == "mizzen-t"
    assert lease["metadata"]["namespace"] == "kube-node-lease"
    spec = lease["spec"]
    assert spec["holderIdentity"] == "mizzen-t"
    assert spec["leaseDurationSeconds"] == LEASE_SECONDS == 40
    assert spec["renewTime"] == "2030-05-06T07:08:09.123456Z"
    assert lease["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": "mizzen-t", "uid": "0b7c-uid"}
    ]


# -- pod phase and conditions -----------------------------------------------------------


def test_pending_while_an_init_container_still_runs() -> None:
    init = [ContainerState("istio-init", "istio/proxyv2", running=True, started_at=STARTED)]
    st = status_of(init, [ContainerState("app", "shop/app")])
    assert st["phase"] == "Pending"
    assert flag(st, "Initialized") == "False"
    assert flag(st, "Ready") == "False"
    assert flag(st, "ContainersReady") == "False"
    assert flag(st, "PodScheduled") == "True"


def test_pending_when_an_init_container_failed() -> None:
    st = status_of([done("istio-init", 1)], [ContainerState("app", "shop/app")])
    assert st["phase"] == "Pending"
    assert flag(st, "Initialized") == "False"


def test_pending_while_a_later_init_container_has_not_run() -> None:
    st = status_of([done("first"), ContainerState("second", "x")], [running("app")])
    assert st["phase"] == "Pending"
    assert flag(st, "Initialized") == "False"
    # App containers cannot make the pod ready before initialization ends.
    assert flag(st, "Ready") == "False"


def test_running_and_ready_when_init_done_and_every_container_ready() -> None:
    st = status_of([done("istio-init")], [running("app"), running("istio-proxy")])
    assert st["phase"] == "Running"
    assert flag(st, "Initialized") == "True"
    assert flag(st, "ContainersReady") == "True"
    assert flag(st, "Ready") == "True"


def test_running_without_init_containers() -> None:
    st = status_of([], [running("app")])
    assert st["phase"] == "Running"
    assert flag(st, "Ready") == "True"
    assert "initContainerStatuses" not in st


def test_not_ready_when_one_container_is_not_ready() -> None:
    st = status_of([done("istio-init")], [running("app"), running("istio-proxy", ready=False)])
    assert st["phase"] == "Running"
    assert flag(st, "Initialized") == "True"
    assert flag(st, "ContainersReady") == "False"
    assert flag(st, "Ready") == "False"


def test_pod_without_containers_is_never_ready() -> None:
    st = status_of([], [])
    assert flag(st, "Ready") == "False"


def test_explicit_phase_wins() -> None:
    st = status_of([], [done("job")], phase="Succeeded")
    assert st["phase"] == "Succeeded"


def test_conditions_use_the_transition_times_given() -> None:
    st = status_of(
        [done("istio-init")],
        [running("app")],
        transitions={"Initialized": T_INIT, "Ready": T_READY, "ContainersReady": T_READY},
    )
    c = conditions(st)
    assert c["Initialized"]["lastTransitionTime"] == rfc3339(T_INIT)
    assert c["Ready"]["lastTransitionTime"] == rfc3339(T_READY)
    assert c["ContainersReady"]["lastTransitionTime"] == rfc3339(T_READY)
    # A condition that never changed dates from the pod's start.
    assert c["PodScheduled"]["lastTransitionTime"] == rfc3339(STARTED)
    assert all(x["lastProbeTime"] is None for x in c.values())


def test_host_ip_and_start_time() -> None:
    st = status_of([], [running("app")])
    assert st["hostIP"] == HOST_IP
    assert st["hostIPs"] == [{"ip": HOST_IP}]
    assert st["startTime"] == rfc3339(STARTED)


def test_pod_ip_reported_only_when_known() -> None:
    known = status_of([], [running("app")])
    assert known["podIP"] == POD_IP
    assert known["podIPs"] == [{"ip": POD_IP}]
    unknown = status_of([], [ContainerState("app", "shop/app")], pod_ip="")
    assert "podIP" not in unknown
    assert "podIPs" not in unknown


# -- container statuses --------------------------------------------------------------------


def container_status(c: ContainerState, init: bool = False) -> dict[str, Any]:
    s: dict[str, Any]
    if init:
        [s] = status_of([c], [running("app")])["initContainerStatuses"]
    else:
        [s] = status_of([], [c])["containerStatuses"]
    return s


def test_running_container_status() -> None:
    s = container_status(
        ContainerState(
            "app", "shop/app:1", running=True, ready=True, restarts=2, started_at=STARTED
        )
    )
    assert s["name"] == "app"
    assert s["image"] == "shop/app:1"
    assert s["ready"] is True
    assert s["started"] is True
    assert s["restartCount"] == 2
    assert s["state"] == {"running": {"startedAt": rfc3339(STARTED)}}


@pytest.mark.parametrize("code, reason", [(0, "Completed"), (1, "Error"), (137, "Error")])
def test_terminated_container_carries_exit_code_and_reason(code: int, reason: str) -> None:
    s = container_status(done("istio-init", code), init=True)
    term = s["state"]["terminated"]
    assert term["exitCode"] == code
    assert term["reason"] == reason
    assert term["startedAt"] == rfc3339(STARTED)
    assert term["finishedAt"] == rfc3339(T_INIT)
    assert s["started"] is False


def test_terminated_without_times_has_no_time_fields() -> None:
    s = container_status(ContainerState("job", "x", exit_code=2))
    assert s["state"] == {"terminated": {"exitCode": 2, "reason": "Error"}}


def test_waiting_with_a_message_is_a_create_container_error() -> None:
    s = container_status(
        ContainerState("app", "shop/app:1", message="configmap 'app-config' not found")
    )
    assert s["state"] == {
        "waiting": {
            "reason": "CreateContainerError",
            "message": "configmap 'app-config' not found",
        }
    }
    assert s["ready"] is False
    assert s["started"] is False


def test_waiting_without_a_message_is_pod_initializing() -> None:
    s = container_status(ContainerState("app", "shop/app:1"))
    assert s["state"] == {"waiting": {"reason": "PodInitializing"}}


def test_init_statuses_listed_in_order() -> None:
    st = status_of([done("a"), done("b")], [running("app")])
    assert [s["name"] for s in st["initContainerStatuses"]] == ["a", "b"]
    assert [s["name"] for s in st["containerStatuses"]] == ["app"]
