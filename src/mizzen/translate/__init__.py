"""Pure translation of a mesh snapshot into the Envoy resources of one proxy.

``build_resources(snapshot, proxy)`` returns, per xDS type URL, the resources
keyed by name in sorted order: the same input always yields byte-identical
output, so the xDS layer can compare versions by content. Nothing here does
IO or reads globals; builders live in one module per output (``listeners``,
``routes``, ``clusters``, ``endpoints``).
"""

from __future__ import annotations

from typing import Any

from mizzen.model.snapshot import MeshSnapshot, Proxy
from mizzen.translate.clusters import build_clusters
from mizzen.translate.endpoints import build_endpoints
from mizzen.translate.listeners import build_listeners
from mizzen.translate.routes import build_routes

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

# Envoy protobuf messages; xds-protos has no stubs, so mypy sees Any.
Message = Any

__all__ = [
    "CLUSTER",
    "ENDPOINT",
    "LISTENER",
    "ROUTE",
    "Message",
    "build_clusters",
    "build_endpoints",
    "build_listeners",
    "build_resources",
    "build_routes",
]


def build_resources(snapshot: MeshSnapshot, proxy: Proxy) -> dict[str, dict[str, Message]]:
    """Every resource the proxy needs, by type URL, then by resource name."""
    return {
        LISTENER: {r.name: r for r in build_listeners(snapshot, proxy)},
        ROUTE: {r.name: r for r in build_routes(snapshot, proxy)},
        CLUSTER: {r.name: r for r in build_clusters(snapshot, proxy)},
        ENDPOINT: {r.cluster_name: r for r in build_endpoints(snapshot, proxy)},
    }
