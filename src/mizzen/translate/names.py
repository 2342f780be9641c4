"""Names of the Envoy resources Mizzen generates.

They are Istio's names on purpose: users debug a mesh with ``istioctl
proxy-config``-style habits and with Envoy's admin pages, so a cluster called
``outbound|9080|v1|reviews.default.svc.cluster.local`` must mean what it means
in Istio.
"""

from __future__ import annotations

PASSTHROUGH_CLUSTER = "PassthroughCluster"
BLACKHOLE_CLUSTER = "BlackHoleCluster"
INBOUND_PASSTHROUGH_CLUSTER = "InboundPassthroughCluster"

VIRTUAL_OUTBOUND_LISTENER = "virtualOutbound"
VIRTUAL_INBOUND_LISTENER = "virtualInbound"
OUTBOUND_CAPTURE_PORT = 15001
INBOUND_CAPTURE_PORT = 15006

# Source address of connections the sidecar opens to its own app: the app sees
# the proxy as a distinct local peer and the capture rules can exempt it.
INBOUND_UPSTREAM_BIND_ADDRESS = "127.0.0.6"
INBOUND_APP_ADDRESS = "127.0.0.1"

WILDCARD_ADDRESS = "0.0.0.0"

# Ports the proxy itself owns (admin, capture, agent, health, metrics, DNS).
# Envoy refuses two listeners on one address, and bootstrap listeners hold
# some of these, so neither inbound chains nor outbound listeners use them.
PROXY_PORTS = frozenset({15000, 15001, 15004, 15006, 15008, 15020, 15021, 15053, 15090})

# Proxy annotation read on routers: the local runtime runs gateways in the
# host's network namespace and needs them on loopback only.
LISTEN_ADDRESS_ANNOTATION = "mizzen.io/listen-address"
PORT_MAP_ANNOTATION = "mizzen.io/port-map"


def outbound_cluster(port: int, hostname: str, subset: str = "") -> str:
    return f"outbound|{port}|{subset}|{hostname}"


def inbound_cluster(port: int) -> str:
    return f"inbound|{port}||"


def listener_name(address: str, port: int) -> str:
    return f"{address}_{port}"


def sidecar_route_config(port: int) -> str:
    return str(port)


def gateway_route_config(port: int) -> str:
    return f"http.{port}"


def virtual_host(host: str, port: int) -> str:
    return f"{host}:{port}"


def decorator_operation(hostname: str, port: int) -> str:
    return f"{hostname}:{port}/*"
