"""Workloads (pods that have an address) and the endpoints behind each
service port."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from mizzen.api.resources import Resource, Service, ServiceEntry, ServiceEntryPort, WorkloadEntry
from mizzen.model.snapshot import Endpoint, MeshService, ServicePort, Workload
from mizzen.registry.labels import selector_matches
from mizzen.registry.pods import PodPlan

__all__ = ["EndpointKey", "service_endpoints", "workloads"]

EndpointKey = tuple[str, int]  # (hostname, service port)


def workloads(
    plans: Sequence[PodPlan], pod_ips: Mapping[tuple[str, str], str]
) -> tuple[Workload, ...]:
    """Planned pods that have an IP (``pod_ips`` keyed by (namespace, name))."""
    return tuple(
        _workload(plan, pod_ips[(plan.namespace, plan.name)])
        for plan in plans
        if (plan.namespace, plan.name) in pod_ips
    )


def service_endpoints(
    resources: Sequence[Resource],
    services: Mapping[str, MeshService],
    pods: Sequence[Workload],
) -> dict[EndpointKey, tuple[Endpoint, ...]]:
    """Endpoints of every port of every service; ports without any endpoint
    map to an empty tuple, so every (hostname, port) of ``services`` is a key."""
    k8s = {(r.meta.namespace, r.meta.name): r.obj for r in resources if isinstance(r.obj, Service)}
    entries = {
        (r.meta.namespace, r.meta.name): r.obj for r in resources if isinstance(r.obj, ServiceEntry)
    }
    out: dict[EndpointKey, tuple[Endpoint, ...]] = {}
    for service in services.values():
        for port in service.ports:
            key = (service.hostname, port.port)
            if service.origin == "kubernetes":
                svc = k8s.get((service.namespace, service.name))
                out[key] = tuple(_kubernetes_endpoints(service, svc, port, pods))
            else:
                se = entries[(service.namespace, service.name)]
                out[key] = tuple(_service_entry_endpoints(service, se, port, pods))
    return out


def _workload(plan: PodPlan, ip: str) -> Workload:
    ports = plan.container_ports
    return Workload(
        name=plan.name,
        namespace=plan.namespace,
        ip=ip,
        labels=plan.labels,
        annotations=plan.annotations,
        service_account=plan.service_account,
        sidecar=plan.sidecar,
        container_ports={p.name: p.container_port for p in ports if p.name},
        ports=tuple(dict.fromkeys(p.container_port for p in ports)),
    )


def _kubernetes_endpoints(
    service: MeshService, svc: Service | None, port: ServicePort, pods: Sequence[Workload]
) -> Iterator[Endpoint]:
    if svc is not None and svc.type == "ExternalName" and svc.external_name:
        yield Endpoint(address=svc.external_name, port=port.port, namespace=service.namespace)
        return
    for pod in pods:
        if pod.namespace != service.namespace or not selector_matches(service.selector, pod.labels):
            continue
        target = _target_port(port, pod)
        if target is not None:
            yield _pod_endpoint(pod, target)


def _target_port(port: ServicePort, pod: Workload) -> int | None:
    """The pod port behind ``port``; None when a named target port is not
    declared by this pod (Kubernetes leaves such a pod out of the port)."""
    target = port.target_port
    if target is None:
        return port.port
    if isinstance(target, int):
        return target
    if target.isdigit():
        return int(target)
    return pod.container_ports.get(target)


def _service_entry_endpoints(
    service: MeshService, se: ServiceEntry, port: ServicePort, pods: Sequence[Workload]
) -> Iterator[Endpoint]:
    se_port = next(p for p in se.ports if p.number == port.port)
    for entry in se.endpoints:
        yield _workload_entry_endpoint(entry, se_port, service.namespace)
    for pod in pods:
        selected = selector_matches(se.workload_selector, pod.labels)
        if selected and pod.namespace == service.namespace:
            yield _pod_endpoint(pod, se_port.target_port or se_port.number)
    if _resolves_own_name(service, se):
        # A DNS entry without endpoints resolves its own host, as in Istio.
        target = se_port.target_port or se_port.number
        yield Endpoint(address=service.hostname, port=target, namespace=service.namespace)


def _resolves_own_name(service: MeshService, se: ServiceEntry) -> bool:
    return (
        service.resolution == "DNS"
        and not se.endpoints
        and not se.workload_selector
        and not service.hostname.startswith("*")
    )


def _workload_entry_endpoint(
    entry: WorkloadEntry, port: ServiceEntryPort, namespace: str
) -> Endpoint:
    number = entry.ports.get(port.name) if port.name else None
    return Endpoint(
        address=entry.address,
        port=number or port.target_port or port.number,
        labels=entry.labels,
        namespace=namespace,
        service_account=entry.service_account,
        weight=entry.weight or 1,
        locality=entry.locality,
    )


def _pod_endpoint(pod: Workload, port: int) -> Endpoint:
    return Endpoint(
        address=pod.ip,
        port=port,
        labels=pod.labels,
        namespace=pod.namespace,
        workload=pod.name,
        service_account=pod.service_account,
    )
