"""In-memory MeshSnapshot and Proxy builders for translation tests.

Indexes are built the simple way (exact FQDN hosts only): enough to drive
translation without depending on ``mizzen.model.build``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from mizzen.api.resources import (
    Destination,
    DestinationRule,
    Gateway,
    GatewayPort,
    HTTPRoute,
    HTTPRouteDestination,
    MtlsMode,
    ObjectMeta,
    PeerAuthentication,
    Server,
    Subset,
    TCPRoute,
    VirtualService,
)
from mizzen.model.snapshot import (
    Endpoint,
    MeshService,
    MeshSnapshot,
    Protocol,
    Proxy,
    ServicePort,
    Workload,
)

SUFFIX = "cluster.local"


def fqdn(name: str, ns: str = "default") -> str:
    return f"{name}.{ns}.svc.{SUFFIX}"


def service(
    name: str,
    ns: str = "default",
    ports: Sequence[tuple[str, int, Protocol]] = (("http", 9080, "HTTP"),),
    vip: str | None = None,
    selector: Mapping[str, str] | None = None,
) -> MeshService:
    return MeshService(
        hostname=fqdn(name, ns),
        namespace=ns,
        name=name,
        ports=tuple(ServicePort(n, p, proto) for n, p, proto in ports),
        vip=vip,
        selector=dict(selector) if selector is not None else {"app": name},
    )


def endpoint(ip: str, port: int = 9080, **labels: str) -> Endpoint:
    return Endpoint(address=ip, port=port, labels=labels, namespace="default")


def vs(
    name: str,
    hosts: Sequence[str],
    http: Sequence[HTTPRoute] = (),
    tcp: Sequence[TCPRoute] = (),
    gateways: Sequence[str] = (),
    ns: str = "default",
) -> VirtualService:
    return VirtualService(
        ObjectMeta(name, ns), tuple(hosts), tuple(gateways), tuple(http), tuple(tcp)
    )


def to(
    host: str, subset: str = "", weight: int | None = None, port: int | None = None
) -> HTTPRouteDestination:
    return HTTPRouteDestination(Destination(host, subset, port), weight)


def dr(host: str, *subsets: tuple[str, Mapping[str, str]], ns: str = "default") -> DestinationRule:
    return DestinationRule(
        ObjectMeta(f"{host.split('.')[0]}-dr", ns),
        host,
        subsets=tuple(Subset(name, dict(labels)) for name, labels in subsets),
    )


def gateway(
    name: str,
    servers: Sequence[tuple[int, str, Sequence[str]]],
    ns: str = "default",
    selector: Mapping[str, str] | None = None,
) -> Gateway:
    return Gateway(
        ObjectMeta(name, ns),
        tuple(
            Server(GatewayPort(n, proto, f"{proto.lower()}-{n}"), tuple(h))
            for n, proto, h in servers
        ),
        dict(selector or {"istio": "ingressgateway"}),
    )


def _resolve(host: str, ns: str) -> str:
    return host if "." in host else fqdn(host, ns)


def _index(pairs: Iterable[tuple[str, object]]) -> dict[str, tuple]:  # type: ignore[type-arg]
    out: dict[str, list[object]] = {}
    for key, value in pairs:
        out.setdefault(key, []).append(value)
    return {k: tuple(v) for k, v in out.items()}


def snapshot(
    services: Sequence[MeshService] = (),
    endpoints: Mapping[tuple[str, int], Sequence[Endpoint]] | None = None,
    workloads: Sequence[Workload] = (),
    virtual_services: Sequence[VirtualService] = (),
    destination_rules: Sequence[DestinationRule] = (),
    gateways: Sequence[Gateway] = (),
    peer_authentications: Sequence[PeerAuthentication] = (),
    service_accounts: Mapping[str, tuple[str, ...]] | None = None,
) -> MeshSnapshot:
    mesh_vs = [v for v in virtual_services if not v.gateways or "mesh" in v.gateways]
    return MeshSnapshot(
        version="test",
        services={s.hostname: s for s in services},
        endpoints={k: tuple(v) for k, v in (endpoints or {}).items()},
        workloads=tuple(workloads),
        virtual_services=tuple(virtual_services),
        destination_rules=tuple(destination_rules),
        gateways=tuple(gateways),
        mesh_vs_by_host=_index(
            (_resolve(h, v.meta.namespace), v) for v in mesh_vs for h in v.hosts
        ),
        vs_by_gateway=_index(
            (g if "/" in g else f"{v.meta.namespace}/{g}", v)
            for v in virtual_services
            for g in v.gateways
            if g != "mesh"
        ),
        dr_by_host=_index((_resolve(d.host, d.meta.namespace), d) for d in destination_rules),
        peer_authentications=tuple(peer_authentications),
        service_accounts=dict(service_accounts or {}),
    )


def pa(
    name: str,
    ns: str = "default",
    mode: MtlsMode = "UNSET",
    selector: Mapping[str, str] | None = None,
    ports: Mapping[int, MtlsMode] | None = None,
) -> PeerAuthentication:
    return PeerAuthentication(
        ObjectMeta(name, ns), dict(selector) if selector else None, mode, dict(ports or {})
    )


def sidecar(
    name: str = "productpage-v1-0",
    ns: str = "default",
    labels: Mapping[str, str] | None = None,
    ports: tuple[int, ...] = (9080,),
    ip: str = "10.1.0.1",
) -> Proxy:
    return Proxy(
        id=f"sidecar~{ip}~{name}.{ns}~{ns}.svc.{SUFFIX}",
        type="sidecar",
        ip=ip,
        name=name,
        namespace=ns,
        labels=dict(labels or {"app": "productpage", "version": "v1"}),
        ports=ports,
    )


def router(
    labels: Mapping[str, str] | None = None, annotations: Mapping[str, str] | None = None
) -> Proxy:
    ns, name, ip = "istio-system", "istio-ingressgateway-0", "127.0.0.1"
    return Proxy(
        id=f"router~{ip}~{name}.{ns}~{ns}.svc.{SUFFIX}",
        type="router",
        ip=ip,
        name=name,
        namespace=ns,
        labels=dict(labels or {"istio": "ingressgateway"}),
        annotations=dict(annotations or {}),
    )


REVIEWS = fqdn("reviews")
ISTIO_TLS = {"security.istio.io/tlsMode": "istio"}


def bookinfo(
    virtual_services: Sequence[VirtualService] = (),
    destination_rules: Sequence[DestinationRule] = (),
    gateways: Sequence[Gateway] = (),
    peer_authentications: Sequence[PeerAuthentication] = (),
) -> MeshSnapshot:
    """productpage, details, ratings and three reviews versions, plus a TCP db.
    reviews v1 and v2 have sidecars (``security.istio.io/tlsMode: istio``)."""
    services = [
        service("productpage", vip="10.0.0.10"),
        service("details", vip="10.0.0.11"),
        service("reviews", vip="10.0.0.12"),
        service("ratings", vip="10.0.0.13"),
        service("mongodb", ports=(("tcp-mongo", 27017, "TCP"),), vip="10.0.0.14"),
    ]
    endpoints = {
        (fqdn("productpage"), 9080): [endpoint("10.1.0.1", app="productpage", version="v1")],
        (fqdn("details"), 9080): [endpoint("10.1.0.2", app="details", version="v1")],
        (REVIEWS, 9080): [
            endpoint("10.1.0.5", app="reviews", version="v3"),
            endpoint("10.1.0.3", app="reviews", version="v1", **ISTIO_TLS),
            endpoint("10.1.0.4", app="reviews", version="v2", **ISTIO_TLS),
        ],
        (fqdn("ratings"), 9080): [endpoint("10.1.0.6", app="ratings", version="v1")],
        (fqdn("mongodb"), 27017): [endpoint("10.1.0.7", 27017, app="mongodb")],
    }
    workloads = [
        Workload(
            "productpage-v1-0",
            "default",
            "10.1.0.1",
            {"app": "productpage", "version": "v1"},
            sidecar=True,
            container_ports={"http": 9080},
            ports=(9080,),
        )
    ]
    return snapshot(
        services,
        endpoints,
        workloads,
        virtual_services,
        destination_rules,
        gateways,
        peer_authentications,
        {REVIEWS: ("spiffe://cluster.local/ns/default/sa/bookinfo-reviews",)},
    )


REVIEWS_SUBSETS = dr(
    "reviews",
    ("v1", {"version": "v1"}),
    ("v2", {"version": "v2"}),
    ("v3", {"version": "v3"}),
)
