"""Small builders of api resources for in-memory tests (no YAML parser)."""

from __future__ import annotations

from collections.abc import Mapping

from mizzen.api.resources import (
    Container,
    ContainerPort,
    DestinationRule,
    Gateway,
    GatewayPort,
    GroupVersionKind,
    Namespace,
    ObjectMeta,
    Pod,
    PodController,
    PodSpec,
    PodTemplate,
    Resource,
    Server,
    Service,
    ServiceEntry,
    ServiceEntryPort,
    ServicePort,
    Source,
    Spec,
    VirtualService,
    WorkloadEntry,
)

ISTIO = "networking.istio.io"


def res(obj: Spec, group: str = "", version: str = "v1", file: str = "/m/app.yaml") -> Resource:
    return Resource(GroupVersionKind(group, version, type(obj).__name__), Source(file, 0), obj)


def meta(name: str, ns: str = "default", labels: Mapping[str, str] | None = None) -> ObjectMeta:
    return ObjectMeta(name, ns, dict(labels or {}))


def namespace(name: str, **labels: str) -> Resource:
    return res(Namespace(ObjectMeta(name, "", labels)))


def container(*ports: tuple[str, int]) -> Container:
    return Container("app", ports=tuple(ContainerPort(n, name=name) for name, n in ports))


def deployment(
    name: str,
    ns: str = "default",
    replicas: int = 1,
    labels: Mapping[str, str] | None = None,
    ports: tuple[tuple[str, int], ...] = (("http", 9080),),
    sa: str = "default",
) -> Resource:
    tpl_labels = dict(labels or {"app": name})
    spec = PodSpec((container(*ports),), service_account_name=sa)
    return res(
        PodController(meta(name, ns), replicas, tpl_labels, PodTemplate(tpl_labels, {}, spec)),
        group="apps",
    )


def pod(name: str, ns: str = "default", labels: Mapping[str, str] | None = None) -> Resource:
    spec = PodSpec((container(("http", 8080)),))
    return res(Pod(ObjectMeta(name, ns, dict(labels or {"app": name})), spec))


def service(
    name: str,
    ns: str = "default",
    ports: tuple[ServicePort, ...] = (ServicePort(9080, "http"),),
    selector: Mapping[str, str] | None = None,
    cluster_ip: str | None = None,
) -> Resource:
    sel = dict(selector) if selector is not None else {"app": name}
    return res(Service(meta(name, ns), ports, sel, cluster_ip=cluster_ip))


def vs(
    name: str,
    hosts: tuple[str, ...],
    ns: str = "default",
    gateways: tuple[str, ...] = (),
    version: str = "v1",
) -> Resource:
    return res(VirtualService(meta(name, ns), hosts, gateways), ISTIO, version)


def dr(name: str, host: str, ns: str = "default") -> Resource:
    return res(DestinationRule(meta(name, ns), host), ISTIO)


def gateway(name: str, ns: str = "default") -> Resource:
    server = Server(GatewayPort(80, "HTTP", "http"), ("*",))
    return res(Gateway(meta(name, ns), (server,), {"istio": "ingressgateway"}), ISTIO)


def service_entry(
    name: str,
    hosts: tuple[str, ...],
    ns: str = "default",
    ports: tuple[ServiceEntryPort, ...] = (ServiceEntryPort(443, "TLS", "tls"),),
    resolution: str = "DNS",
    addresses: tuple[str, ...] = (),
    endpoints: tuple[WorkloadEntry, ...] = (),
    selector: Mapping[str, str] | None = None,
    location: str = "MESH_EXTERNAL",
) -> Resource:
    se = ServiceEntry(
        meta(name, ns),
        hosts,
        ports,
        addresses,
        location,  # type: ignore[arg-type]
        resolution,  # type: ignore[arg-type]
        endpoints,
        selector,
    )
    return res(se, ISTIO)
