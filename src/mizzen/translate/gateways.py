"""Which Gateway servers a router proxy serves, and which hosts they accept.

Gateways select proxies by labels in any namespace (Istio's default), and a
VirtualService bound to a Gateway contributes the hosts it shares with the
gateway's servers.
"""

from __future__ import annotations

from dataclasses import dataclass

from mizzen.api.resources import Server
from mizzen.model.snapshot import MeshSnapshot, Proxy
from mizzen.translate.lookup import labels_match

HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})


@dataclass(frozen=True)
class GatewayServer:
    gateway: str  # "ns/name"
    server: Server

    @property
    def namespace(self) -> str:
        return self.gateway.split("/", 1)[0]

    @property
    def listen_port(self) -> int:
        return self.server.port.target_port or self.server.port.number

    @property
    def is_http(self) -> bool:
        return self.server.port.protocol in HTTP_PROTOCOLS


def selected_servers(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[GatewayServer, ...]:
    if proxy.type != "router":
        return ()
    gateways = sorted(snapshot.gateways, key=lambda g: (g.meta.namespace, g.meta.name))
    return tuple(
        GatewayServer(f"{gw.meta.namespace}/{gw.meta.name}", server)
        for gw in gateways
        if gw.selector and labels_match(gw.selector, proxy.labels)
        for server in gw.servers
    )


def intersect_hosts(a: str, b: str) -> str | None:
    """The more specific of two host patterns when they overlap, else None."""
    if a == b or b == "*":
        return a
    if a == "*":
        return b
    if a.startswith("*.") and b.endswith(a[1:]):
        return b
    if b.startswith("*.") and a.endswith(b[1:]):
        return a
    return None


def server_host(entry: str, gateway_namespace: str, vs_namespace: str) -> str | None:
    """A server host (``[ns/]host``) as seen by a VS in ``vs_namespace``."""
    if "/" not in entry:
        return entry
    namespace, host = entry.split("/", 1)
    if namespace == ".":
        namespace = gateway_namespace
    return host if namespace in ("*", vs_namespace) else None
