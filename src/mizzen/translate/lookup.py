"""Questions translation asks of the snapshot on behalf of one proxy.

Every function here is a pure read of ``MeshSnapshot``; results are sorted so
that the builders that iterate over them emit resources in a stable order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mizzen.api.resources import (
    AuthorizationPolicy,
    DestinationRule,
    RequestAuthentication,
    VirtualService,
)
from mizzen.model.hosts import qualify_host
from mizzen.model.snapshot import (
    HTTP_PROTOCOLS,
    MeshService,
    MeshSnapshot,
    Protocol,
    Proxy,
    Workload,
)
from mizzen.translate.names import PROXY_PORTS

MESH_GATEWAY = "mesh"


@dataclass(frozen=True)
class InboundPort:
    """A port the proxy accepts traffic for, with what we know of it."""

    port: int
    protocol: Protocol
    hostname: str = ""  # the service that exposes it, when one does

    @property
    def is_http(self) -> bool:
        return self.protocol in HTTP_PROTOCOLS

    @property
    def is_auto(self) -> bool:
        """Undeclared by its service: the sidecar sniffs each connection."""
        return self.protocol == "UNKNOWN"


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def registry_host(snapshot: MeshSnapshot, host: str, port: int) -> str | None:
    """The registry hostname a mesh-config or JWT URI host names, as Istio
    finds it: written in full, or as ``<service>.<namespace>``; None when no
    service has that host and port."""
    for candidate in (host, f"{host}.svc.{snapshot.domain_suffix}"):
        service = snapshot.service(candidate)
        if service is not None and service.port(port) is not None:
            return candidate
    return None


def policy_selects(
    policy: AuthorizationPolicy | RequestAuthentication,
    root: str,
    namespace: str,
    labels: Mapping[str, str],
) -> bool:
    """Whether a security policy applies to a workload of ``namespace`` with
    ``labels``: one of the root namespace (mesh-wide, or by selector in any
    namespace) or of the workload's own.

    ``targetRef(s)`` bind Istio's waypoints and Gateway API gateways, which
    the local runtime does not run: such a policy selects no workload."""
    if policy.target_refs or policy.meta.namespace not in (root, namespace):
        return False
    return policy.selector is None or labels_match(policy.selector, labels)


def is_visible(service: MeshService, namespace: str) -> bool:
    """Istio's exportTo: empty or ``*`` is public, ``.`` is the own namespace."""
    if not service.export_to or "*" in service.export_to:
        return True
    if "." in service.export_to and service.namespace == namespace:
        return True
    return namespace in service.export_to


def visible_services(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[MeshService, ...]:
    return tuple(
        snapshot.services[host]
        for host in sorted(snapshot.services)
        if is_visible(snapshot.services[host], proxy.namespace)
    )


def resolve_host(snapshot: MeshSnapshot, host: str, namespace: str) -> str:
    """A VirtualService/DestinationRule host as a registry hostname.

    Same rules as the snapshot's indexes: registry hosts as written, else
    Istio's short-name rule.
    """
    if host in snapshot.services:
        return host
    return qualify_host(host, namespace, snapshot.domain_suffix)


def mesh_virtual_service(snapshot: MeshSnapshot, hostname: str) -> VirtualService | None:
    candidates = snapshot.mesh_vs_by_host.get(hostname, ())
    return candidates[0] if candidates else None


def destination_rule(snapshot: MeshSnapshot, hostname: str) -> DestinationRule | None:
    candidates = snapshot.dr_by_host.get(hostname, ())
    return candidates[0] if candidates else None


def subset_labels(snapshot: MeshSnapshot, hostname: str, subset: str) -> Mapping[str, str] | None:
    rule = destination_rule(snapshot, hostname)
    if rule is None:
        return None
    found = next((s for s in rule.subsets if s.name == subset), None)
    return None if found is None else found.labels


def workload_of(snapshot: MeshSnapshot, proxy: Proxy) -> Workload | None:
    return next(
        (w for w in snapshot.workloads if w.name == proxy.name and w.namespace == proxy.namespace),
        None,
    )


def services_selecting(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[MeshService, ...]:
    return tuple(
        service
        for service in (snapshot.services[h] for h in sorted(snapshot.services))
        if service.origin == "kubernetes"
        and service.namespace == proxy.namespace
        and service.selector  # an empty selector selects nothing, as in Kubernetes
        and labels_match(service.selector, proxy.labels)
    )


def _target_port(target: int | str | None, port: int, names: Mapping[str, int]) -> int | None:
    if target is None:
        return port
    if isinstance(target, int):
        return target
    return names.get(target)


def inbound_ports(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[InboundPort, ...]:
    """containerPorts plus the target ports of the services selecting the pod.

    The first service (by hostname) to claim a port decides its protocol
    (``UNKNOWN`` is sniffed per connection); ports no service names are
    opaque TCP. The proxy's own ports are never served to the app.
    """
    workload = workload_of(snapshot, proxy)
    names = workload.container_ports if workload is not None else {}
    found: dict[int, InboundPort] = {}
    for service in services_selecting(snapshot, proxy):
        for sp in service.ports:
            target = _target_port(sp.target_port, sp.port, names)
            if target is not None and target not in found:
                found[target] = InboundPort(target, sp.protocol, service.hostname)
    for port in proxy.ports:
        found.setdefault(port, InboundPort(port, "TCP"))
    return tuple(found[p] for p in sorted(found) if p not in PROXY_PORTS)


def effective_gateways(vs: VirtualService, match_gateways: tuple[str, ...] = ()) -> frozenset[str]:
    """Gateways a VS (or one of its match blocks) binds to, as ``ns/name``."""
    names = match_gateways or vs.gateways or (MESH_GATEWAY,)
    return frozenset(qualify_gateway(name, vs.meta.namespace) for name in names)


def qualify_gateway(name: str, namespace: str) -> str:
    if name == MESH_GATEWAY or "/" in name:
        return name
    return f"{namespace}/{name}"
