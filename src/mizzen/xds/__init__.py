"""ADS (state of the world) server: a sans-IO stream protocol and its grpc.aio adapter."""

from mizzen.xds.protocol import (
    PUSH_ORDER,
    TYPE_CLUSTER,
    TYPE_ENDPOINT,
    TYPE_LISTENER,
    TYPE_ROUTE,
    TYPE_SECRET,
    NackInfo,
    PreparedConfig,
    ProxyStatus,
    Resources,
    TypeConfig,
    TypeStatus,
)
from mizzen.xds.server import XdsServer

__all__ = [
    "PUSH_ORDER",
    "TYPE_CLUSTER",
    "TYPE_ENDPOINT",
    "TYPE_LISTENER",
    "TYPE_ROUTE",
    "TYPE_SECRET",
    "NackInfo",
    "PreparedConfig",
    "ProxyStatus",
    "Resources",
    "TypeConfig",
    "TypeStatus",
    "XdsServer",
]
