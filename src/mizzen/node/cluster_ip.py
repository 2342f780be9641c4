"""Service names and ClusterIP rules for the node's pods (pure).

The node runs no DNS server: every pod's hosts file lists the Services'
names, as cluster DNS would answer them (``svc``, only in the pod's own
namespace, then ``svc.ns``, ``svc.ns.svc`` and the full name). ClusterIPs are
DNATed to ready endpoints inside each pod's namespace (kube-proxy's role),
from the EndpointSlices the controller manager writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mizzen.runtime.kubeproxy import ServiceRule

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DOMAIN = "cluster.local"


def _cluster_ip(svc: Mapping[str, Any]) -> str | None:
    ip = (svc.get("spec") or {}).get("clusterIP")
    return ip if ip and ip != "None" else None


def hosts_for(services: Iterable[Mapping[str, Any]], namespace: str) -> dict[str, str]:
    names: dict[str, str] = {}
    for svc in services:
        ip = _cluster_ip(svc)
        if ip is None:
            continue
        meta = svc["metadata"]
        name, ns = meta["name"], meta["namespace"]
        for alias in (f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.{DOMAIN}"):
            names[alias] = ip
        if ns == namespace:
            names[name] = ip
    return names


def _ready(endpoint: Mapping[str, Any]) -> bool:
    # An absent condition means ready (EndpointSlice API semantics).
    return (endpoint.get("conditions") or {}).get("ready", True) is not False


def service_rules(
    services: Iterable[Mapping[str, Any]],
    slices: Iterable[Mapping[str, Any]],
) -> list[ServiceRule]:
    """One rule per ClusterIP port, with the ready endpoints of its slices."""
    by_service: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for s in slices:
        meta = s.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if owner and s.get("addressType", "IPv4") == "IPv4":
            by_service.setdefault((meta.get("namespace", ""), owner), []).append(s)
    rules: list[ServiceRule] = []
    for svc in sorted(services, key=lambda x: (x["metadata"]["namespace"], x["metadata"]["name"])):
        ip = _cluster_ip(svc)
        if ip is None:
            continue
        key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
        for port in (svc.get("spec") or {}).get("ports") or []:
            targets = sorted(
                {
                    (address, int(p["port"]))
                    for s in by_service.get(key, [])
                    for p in s.get("ports") or []
                    if p.get("name", "") == port.get("name", "") and p.get("port")
                    for e in s.get("endpoints") or []
                    if _ready(e)
                    for address in e.get("addresses") or []
                }
            )
            rules.append(
                ServiceRule(
                    vip=ip,
                    port=int(port["port"]),
                    protocol=str(port.get("protocol", "TCP")),
                    endpoints=tuple(targets),
                )
            )
    return rules
