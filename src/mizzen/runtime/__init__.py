"""The local runtime: pods as network namespaces on a per-mesh bridge.

Knows nothing about Istio: it is given pods, names -> addresses, VIP rules
and command lines, and makes them real (and removes them again).
"""

from mizzen.runtime.addresses import (
    MAX_SLOTS,
    MeshAddresses,
    addresses_for_slot,
    allocate_pod_ip,
    netns_name,
    pick_slot,
    validate_mesh_name,
)
from mizzen.runtime.errors import (
    CommandError,
    MeshBusyError,
    MeshNameError,
    MeshRuntimeError,
    MeshStaleError,
    NoFreeSlotError,
    PreflightError,
    StateError,
)
from mizzen.runtime.kubeproxy import ServiceRule
from mizzen.runtime.mesh import LocalMesh
from mizzen.runtime.network import forward_warning
from mizzen.runtime.probes import HttpGetProbe, TcpSocketProbe, is_ready, wait_until
from mizzen.runtime.state import MeshState, PodState, ProcRef, load_state, resolve_run_dir
from mizzen.runtime.teardown import TeardownReport, down

__all__ = [
    "MAX_SLOTS",
    "CommandError",
    "HttpGetProbe",
    "LocalMesh",
    "MeshAddresses",
    "MeshBusyError",
    "MeshNameError",
    "MeshRuntimeError",
    "MeshStaleError",
    "MeshState",
    "NoFreeSlotError",
    "PodState",
    "PreflightError",
    "ProcRef",
    "ServiceRule",
    "StateError",
    "TcpSocketProbe",
    "TeardownReport",
    "addresses_for_slot",
    "allocate_pod_ip",
    "down",
    "forward_warning",
    "is_ready",
    "load_state",
    "netns_name",
    "pick_slot",
    "resolve_run_dir",
    "validate_mesh_name",
    "wait_until",
]
