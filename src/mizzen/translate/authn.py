"""Peer authentication: which mTLS mode a workload's inbound ports run in,
and what a client may assume about a service.

Istio's rules, as documented for PeerAuthentication:

* a policy without a selector (or with empty ``matchLabels``) in the root
  namespace is mesh-wide; elsewhere it is namespace-wide; one with a
  selector applies to the matching workloads of its own namespace (a
  selector in the root namespace selects nothing);
* within one scope the oldest policy wins (here: the first applied);
* the narrowest scope that sets a mode wins (workload over namespace over
  mesh), ``UNSET`` inherits, and a port-level setting overrides the
  workload for that port (keyed by the workload's port, the targetPort);
* with no policy at all a workload is ``PERMISSIVE``.

Clients cannot see workload-level policies of a service's pods, so auto
mTLS only learns from the namespace and mesh levels (Istio's "best effort"
inference): a namespace-wide ``DISABLE`` makes clients send plaintext, a
workload-level one needs a DestinationRule, as in Istio.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from mizzen.api.resources import MtlsMode, PeerAuthentication
from mizzen.model.snapshot import MeshService, MeshSnapshot
from mizzen.translate.lookup import labels_match

Mode = Literal["STRICT", "PERMISSIVE", "DISABLE"]

DEFAULT_MODE: Mode = "PERMISSIVE"


@dataclass(frozen=True)
class WorkloadMtls:
    """The effective inbound mTLS modes of one workload."""

    mode: Mode = DEFAULT_MODE
    ports: Mapping[int, Mode] = field(default_factory=dict)

    def for_port(self, port: int) -> Mode:
        return self.ports.get(port, self.mode)

    @property
    def modes(self) -> frozenset[Mode]:
        return frozenset({self.mode, *self.ports.values()})


def _is_scoped_to_namespace(policy: PeerAuthentication) -> bool:
    return not policy.selector


def _inherit(parent: Mode, mode: MtlsMode) -> Mode:
    return parent if mode == "UNSET" else mode


def namespace_mode(snapshot: MeshSnapshot, namespace: str) -> Mode:
    """The mode the mesh and namespace levels give ``namespace``."""
    mode = DEFAULT_MODE
    root = snapshot.root_namespace
    for scope in (root, namespace):
        found = next(
            (
                p
                for p in snapshot.peer_authentications
                if p.meta.namespace == scope and _is_scoped_to_namespace(p)
            ),
            None,
        )
        if found is not None:
            mode = _inherit(mode, found.mode)
    return mode


def workload_mtls(
    snapshot: MeshSnapshot, namespace: str, labels: Mapping[str, str]
) -> WorkloadMtls:
    mode = namespace_mode(snapshot, namespace)
    if namespace == snapshot.root_namespace:
        return WorkloadMtls(mode)
    chosen = next(
        (
            p
            for p in snapshot.peer_authentications
            if p.meta.namespace == namespace and p.selector and labels_match(p.selector, labels)
        ),
        None,
    )
    if chosen is None:
        return WorkloadMtls(mode)
    mode = _inherit(mode, chosen.mode)
    ports = {port: _inherit(mode, value) for port, value in chosen.port_level_mtls.items()}
    return WorkloadMtls(mode, ports)


def service_mode(snapshot: MeshSnapshot, service: MeshService) -> Mode | None:
    """What a client may assume of ``service``: None for services outside
    the mesh, else the namespace/mesh-level mode of its namespace."""
    if service.location == "MESH_EXTERNAL":
        return None
    return namespace_mode(snapshot, service.namespace)
