"""Services the mesh knows: Kubernetes Services and ServiceEntry hosts.

One ``MeshService`` per hostname. When two definitions claim a hostname the
first one wins and the rest are ignored: Kubernetes Services come before
ServiceEntries (as Istio's Kubernetes registry comes before its
ServiceEntry registry), and within a kind the oldest resource wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from mizzen.api.resources import Resource, Service, ServiceEntry, ServiceEntryPort
from mizzen.model.snapshot import DEFAULT_DOMAIN_SUFFIX, MeshService, ServicePort
from mizzen.registry.protocol import parse_protocol, protocol_for

__all__ = [
    "EXPORT_TO_ANNOTATION",
    "kubernetes_service",
    "mesh_services",
    "service_entry_services",
    "service_hostname",
]

# Istio reads a Service's visibility from this annotation (comma-separated).
EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"

Resolution = Literal["EDS", "STATIC", "DNS", "NONE"]

_SE_RESOLUTION: Mapping[str, Resolution] = {
    "NONE": "NONE",
    "STATIC": "STATIC",
    "DNS": "DNS",
    "DNS_ROUND_ROBIN": "DNS",
    "DYNAMIC_DNS": "DNS",
}


def service_hostname(name: str, namespace: str, suffix: str = DEFAULT_DOMAIN_SUFFIX) -> str:
    return f"{name}.{namespace}.svc.{suffix}"


def mesh_services(
    resources: Sequence[Resource],
    vips: Mapping[str, str],
    domain_suffix: str = DEFAULT_DOMAIN_SUFFIX,
) -> dict[str, MeshService]:
    """All services by hostname, Kubernetes first, each kind in resource order."""
    out: dict[str, MeshService] = {}
    for resource in resources:
        if isinstance(resource.obj, Service):
            service = kubernetes_service(resource.obj, vips, domain_suffix)
            out.setdefault(service.hostname, service)
    for resource in resources:
        if isinstance(resource.obj, ServiceEntry):
            for service in service_entry_services(resource.obj, vips):
                out.setdefault(service.hostname, service)
    return out


def kubernetes_service(
    svc: Service, vips: Mapping[str, str], domain_suffix: str = DEFAULT_DOMAIN_SUFFIX
) -> MeshService:
    meta = svc.meta
    hostname = service_hostname(meta.name, meta.namespace, domain_suffix)
    return MeshService(
        hostname=hostname,
        namespace=meta.namespace,
        name=meta.name,
        ports=tuple(ServicePort(p.name, p.port, protocol_for(p), p.target_port) for p in svc.ports),
        vip=_kubernetes_vip(svc, hostname, vips),
        selector=svc.selector,
        origin="kubernetes",
        location="MESH_INTERNAL",
        resolution=_kubernetes_resolution(svc),
        export_to=_export_to(meta.annotations),
    )


def service_entry_services(se: ServiceEntry, vips: Mapping[str, str]) -> tuple[MeshService, ...]:
    ports = tuple(_se_port(p) for p in se.ports)
    resolution = _SE_RESOLUTION[se.resolution]
    return tuple(
        MeshService(
            hostname=host,
            namespace=se.meta.namespace,
            name=se.meta.name,
            ports=ports,
            vip=_se_vip(se, host, vips),
            selector=se.workload_selector,
            origin="serviceentry",
            location=se.location,
            resolution=resolution,
            export_to=se.export_to,
        )
        for host in se.hosts
    )


def _kubernetes_vip(svc: Service, hostname: str, vips: Mapping[str, str]) -> str | None:
    if _is_headless(svc) or svc.type == "ExternalName":
        return None
    # An allocated VIP wins; a clusterIP written in the manifest is the
    # fallback (on Kubernetes the adapter passes the real ones in ``vips``).
    return vips.get(hostname, svc.cluster_ip or None)


def _kubernetes_resolution(svc: Service) -> Resolution:
    if svc.type == "ExternalName":
        return "DNS"
    # Headless services are passthrough in Istio: the caller's address is kept.
    return "NONE" if _is_headless(svc) else "EDS"


def _is_headless(svc: Service) -> bool:
    return svc.cluster_ip == "None"


def _export_to(annotations: Mapping[str, str]) -> tuple[str, ...]:
    raw = annotations.get(EXPORT_TO_ANNOTATION, "")
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _se_port(port: ServiceEntryPort) -> ServicePort:
    return ServicePort(port.name, port.number, parse_protocol(port.protocol), port.target_port)


def _se_vip(se: ServiceEntry, host: str, vips: Mapping[str, str]) -> str | None:
    if se.addresses:
        # A /32 (or /128) names one address; wider CIDRs are kept as written.
        first = se.addresses[0]
        for single in ("/32", "/128"):
            first = first.removesuffix(single)
        return first
    return vips.get(host)
