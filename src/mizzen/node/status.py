"""Node and pod objects as a kubelet reports them (pure).

The shapes follow what kube-controller-manager and kube-scheduler read:
a Node with Ready, capacity and allocatable (the scheduler refuses a node
without ``pods`` allocatable), a Lease in ``kube-node-lease``, and pod status
with phase, conditions, podIP(s) and containerStatuses (the EndpointSlice
controller takes a pod's readiness from its Ready condition).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

LEASE_SECONDS = 40
"""A kubelet's lease duration; renewed every quarter of it."""

KUBELET_VERSION = "v1.37.2"


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def node_object(name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.mizzen.dev/runtime": "mizzen",
                **(labels or {}),
            },
        },
        "spec": {},
    }


def node_status(address: str, hostname: str, now: datetime) -> dict[str, Any]:
    t = rfc3339(now)
    capacity = {"cpu": "64", "memory": "256Gi", "pods": "250", "ephemeral-storage": "100Gi"}

    def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": t,
            "lastTransitionTime": t,
        }

    return {
        "conditions": [
            condition("Ready", "True", "KubeletReady", "mizzen node is posting ready status"),
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "no pressure"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "no pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "no pressure"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": address},
            {"type": "Hostname", "address": hostname},
        ],
        "capacity": capacity,
        "allocatable": capacity,
        "nodeInfo": {
            "architecture": "amd64",
            "operatingSystem": "linux",
            "osImage": "Mizzen local node",
            "kernelVersion": "",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "containerRuntimeVersion": "mizzen://netns",
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
        },
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
    }


def lease_object(node: str, node_uid: str, now: datetime) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node,
            "namespace": "kube-node-lease",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}
            ],
        },
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": micro_time(now),
        },
    }


@dataclass(frozen=True)
class ContainerState:
    """What the node knows of one container."""

    name: str
    image: str
    running: bool = False
    ready: bool = False
    exit_code: int | None = None  # set once it ended
    restarts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str = ""  # why it is waiting (a bad image, say)


def _container_status(c: ContainerState) -> dict[str, Any]:
    state: dict[str, Any]
    if c.running and c.started_at is not None:
        state = {"running": {"startedAt": rfc3339(c.started_at)}}
    elif c.exit_code is not None:
        state = {
            "terminated": {
                "exitCode": c.exit_code,
                "reason": "Completed" if c.exit_code == 0 else "Error",
                **({"finishedAt": rfc3339(c.finished_at)} if c.finished_at else {}),
                **({"startedAt": rfc3339(c.started_at)} if c.started_at else {}),
            }
        }
    elif c.message:
        state = {"waiting": {"reason": "CreateContainerError", "message": c.message}}
    else:
        state = {"waiting": {"reason": "PodInitializing"}}
    return {
        "name": c.name,
        "image": c.image,
        "imageID": "",
        "ready": c.ready,
        "started": c.running,
        "restartCount": c.restarts,
        "state": state,
    }


def pod_status(
    *,
    host_ip: str,
    pod_ip: str,
    started: datetime,
    init: Sequence[ContainerState],
    containers: Sequence[ContainerState],
    transitions: Mapping[str, datetime],
    phase: str | None = None,
) -> dict[str, Any]:
    """Status of a pod; ``transitions`` holds when each condition last changed."""
    initialized = all(c.exit_code == 0 for c in init)
    ready = initialized and bool(containers) and all(c.ready for c in containers)
    if phase is None:
        phase = "Running" if initialized and any(c.running for c in containers) else "Pending"
    flags = {
        "PodScheduled": True,
        "Initialized": initialized,
        "ContainersReady": ready,
        "Ready": ready,
    }
    conditions = [
        {
            "type": kind,
            "status": "True" if value else "False",
            "lastProbeTime": None,
            "lastTransitionTime": rfc3339(transitions.get(kind, started)),
        }
        for kind, value in flags.items()
    ]
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": rfc3339(started),
        "containerStatuses": [_container_status(c) for c in containers],
    }
    if init:
        status["initContainerStatuses"] = [_container_status(c) for c in init]
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    return status
