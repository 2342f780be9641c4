"""The mesh as translation sees it: one immutable, indexed snapshot per push.

``MeshSnapshot`` is built once from the config store and the registry
(``mizzen.model.build.build_snapshot``) and then only read. Every lookup that
translation needs per proxy is an index here, so building the config of a
thousand proxies never rescans the whole config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from mizzen.api.meshconfig import DEFAULT_ROOT_NAMESPACE, DEFAULT_TRUST_DOMAIN, ExtAuthzProvider
from mizzen.api.resources import (
    AuthorizationPolicy,
    DestinationRule,
    Gateway,
    PeerAuthentication,
    RequestAuthentication,
    VirtualService,
)

# HTTP, HTTP2, GRPC and GRPC_WEB are all proxied by the HTTP connection
# manager (the last three with HTTP/2 upstream); TCP and TLS are proxied as
# opaque streams; UNKNOWN is Istio's auto-detect: each connection is sniffed
# and takes the HTTP path or the TCP one.
Protocol = Literal["HTTP", "HTTP2", "GRPC", "GRPC_WEB", "TCP", "TLS", "MONGO", "UDP", "UNKNOWN"]
HTTP2_PROTOCOLS: frozenset[Protocol] = frozenset({"HTTP2", "GRPC", "GRPC_WEB"})
HTTP_PROTOCOLS: frozenset[Protocol] = HTTP2_PROTOCOLS | {"HTTP"}

DEFAULT_DOMAIN_SUFFIX = "cluster.local"


@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    protocol: Protocol
    target_port: int | str | None = None  # pod port number or container port name

    @property
    def is_http(self) -> bool:
        return self.protocol in HTTP_PROTOCOLS

    @property
    def is_auto(self) -> bool:
        """Undeclared: the sidecar sniffs each connection (Istio's protocol
        detection) and gives HTTP the HTTP routes, anything else TCP."""
        return self.protocol == "UNKNOWN"

    @property
    def may_be_http(self) -> bool:
        return self.is_http or self.is_auto


@dataclass(frozen=True)
class MeshService:
    hostname: str  # FQDN: reviews.default.svc.cluster.local, or a ServiceEntry host
    namespace: str
    name: str  # Kubernetes Service name, or the ServiceEntry name
    ports: tuple[ServicePort, ...]
    vip: str | None = None  # None for headless / resolution NONE without address
    selector: Mapping[str, str] | None = None
    origin: Literal["kubernetes", "serviceentry"] = "kubernetes"
    location: Literal["MESH_INTERNAL", "MESH_EXTERNAL"] = "MESH_INTERNAL"
    resolution: Literal["EDS", "STATIC", "DNS", "NONE"] = "EDS"
    export_to: tuple[str, ...] = ()

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.ports if p.port == number), None)


@dataclass(frozen=True)
class Endpoint:
    """One address behind one service port."""

    address: str
    port: int  # the port on the workload (target port resolved)
    labels: Mapping[str, str] = field(default_factory=dict)
    namespace: str = ""
    workload: str = ""  # pod name
    service_account: str = ""
    weight: int = 1
    locality: str = ""


@dataclass(frozen=True)
class Workload:
    """A pod: what the registry knows of it, with or without a sidecar."""

    name: str
    namespace: str
    ip: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    service_account: str = "default"
    sidecar: bool = False
    container_ports: Mapping[str, int] = field(default_factory=dict)  # name -> number
    ports: tuple[int, ...] = ()  # all declared containerPorts


@dataclass(frozen=True)
class MeshSnapshot:
    version: str
    services: Mapping[str, MeshService]  # by hostname
    endpoints: Mapping[tuple[str, int], tuple[Endpoint, ...]]  # (hostname, service port)
    workloads: tuple[Workload, ...]
    # Indexes, each sorted by (creation order) so that translation is stable.
    virtual_services: tuple[VirtualService, ...] = ()
    destination_rules: tuple[DestinationRule, ...] = ()
    gateways: tuple[Gateway, ...] = ()
    domain_suffix: str = DEFAULT_DOMAIN_SUFFIX
    # hostname -> VirtualServices bound to the "mesh" gateway that name it
    mesh_vs_by_host: Mapping[str, tuple[VirtualService, ...]] = field(default_factory=dict)
    # "ns/name" of a Gateway -> VirtualServices bound to it
    vs_by_gateway: Mapping[str, tuple[VirtualService, ...]] = field(default_factory=dict)
    # hostname -> DestinationRules for it (more specific namespace first)
    dr_by_host: Mapping[str, tuple[DestinationRule, ...]] = field(default_factory=dict)
    # PeerAuthentications in apply order (oldest first), legacy MeshPolicy
    # and Policy already converted.
    peer_authentications: tuple[PeerAuthentication, ...] = ()
    # In apply order, the Mixer-era whitelists and origins already converted.
    authorization_policies: tuple[AuthorizationPolicy, ...] = ()
    request_authentications: tuple[RequestAuthentication, ...] = ()
    # MeshConfig extensionProviders that CUSTOM policies name, by name.
    ext_authz_providers: Mapping[str, ExtAuthzProvider] = field(default_factory=dict)
    root_namespace: str = DEFAULT_ROOT_NAMESPACE
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    auto_mtls: bool = True
    # MeshConfig: how long a sidecar sniffs an undeclared port before it
    # calls the connection TCP (0: for ever), and whether HTTP/1.1 upstream
    # connections are upgraded to HTTP/2 unless a DestinationRule says.
    protocol_detection_timeout: float = 0.0
    h2_upgrade: bool = False
    # hostname -> SPIFFE identities of every workload behind it, ready or
    # not: what a client accepts from the server's certificate.
    service_accounts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def service(self, hostname: str) -> MeshService | None:
        return self.services.get(hostname)

    def endpoints_of(self, hostname: str, port: int) -> tuple[Endpoint, ...]:
        return self.endpoints.get((hostname, port), ())


@dataclass(frozen=True)
class Proxy:
    """A connected Envoy, as described by its node id and metadata.

    Node ids follow Istio: ``sidecar~10.1.1.1~reviews-v1-0.default~default.svc.cluster.local``
    and ``router~127.0.0.1~istio-ingressgateway-0.istio-system~istio-system.svc.cluster.local``.
    """

    id: str
    type: Literal["sidecar", "router"]
    ip: str
    name: str  # pod name
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    service_account: str = "default"
    # containerPorts of the pod: inbound listeners serve these (and the ports of
    # services that select the pod).
    ports: tuple[int, ...] = ()
