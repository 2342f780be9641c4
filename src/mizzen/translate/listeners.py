"""Listeners (LDS).

Sidecars: ``virtualOutbound`` (15001) takes every captured outbound connection
and hands it, by original destination, to a listener that does not bind:
``<vip>_<port>`` for TCP services (exact address wins) or ``0.0.0.0_<port>``
for HTTP ports; anything else leaves through ``PassthroughCluster``.
``virtualInbound`` (15006) serves the pod's own ports by filter chain.
Routers: one bound listener per Gateway server port.
"""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from google.protobuf import wrappers_pb2

from mizzen.api.resources import RouteDestination, VirtualService
from mizzen.model.snapshot import MeshService, MeshSnapshot, Proxy
from mizzen.translate import names
from mizzen.translate.actions import destination_cluster, split_weights
from mizzen.translate.clusters import socket_address
from mizzen.translate.filters import ORIGINAL_DST_FILTER, http_connection_manager, pack, tcp_proxy
from mizzen.translate.gateways import GatewayServer, selected_servers
from mizzen.translate.lookup import (
    MESH_GATEWAY,
    InboundPort,
    inbound_ports,
    mesh_virtual_service,
    visible_services,
)
from mizzen.translate.matches import MatchContext, applies
from mizzen.translate.routes import inbound_route_config, sidecar_http_ports

OUTBOUND = base_pb2.OUTBOUND
INBOUND = base_pb2.INBOUND


def filter_chain(name: str, network_filter: Any, destination_port: int | None = None) -> Any:
    chain = listener_components_pb2.FilterChain(name=name, filters=[network_filter])
    if destination_port is not None:
        chain.filter_chain_match.destination_port.value = destination_port
    return chain


def _listener(name: str, address: str, port: int, direction: Any, *, bind: bool = True) -> Any:
    listener = listener_pb2.Listener(
        name=name, address=socket_address(address, port), traffic_direction=direction
    )
    if not bind:
        listener.bind_to_port.CopyFrom(wrappers_pb2.BoolValue(value=False))
    return listener


def tcp_split(
    snapshot: MeshSnapshot, vs: VirtualService | None, ctx: MatchContext
) -> tuple[tuple[str, int], ...]:
    """``(cluster, weight)`` pairs of the first TCP rule of ``vs`` that applies."""
    if vs is None:
        return ()
    for rule in vs.tcp:
        if rule.match and not any(applies(m, vs, ctx) for m in rule.match):
            continue
        return _weighted(snapshot, vs, rule.route, ctx.port)
    return ()


def _weighted(
    snapshot: MeshSnapshot, vs: VirtualService, route: tuple[RouteDestination, ...], port: int
) -> tuple[tuple[str, int], ...]:
    clusters = [
        destination_cluster(snapshot, d.destination, vs.meta.namespace, port)[0] for d in route
    ]
    weights = split_weights([d.weight for d in route])
    return tuple((c, w) for c, w in zip(clusters, weights, strict=True) if w > 0)


def tcp_proxy_filter(stat_prefix: str, split: tuple[tuple[str, int], ...], default: str) -> Any:
    if not split:
        return tcp_proxy(stat_prefix, default)
    if len(split) == 1:
        return tcp_proxy(split[0][0], split[0][0])
    return tcp_proxy(stat_prefix, weights=split)


def tcp_service_listener(
    snapshot: MeshSnapshot, proxy: Proxy, service: MeshService, port: int, address: str
) -> Any:
    ctx = MatchContext(port, MESH_GATEWAY, proxy.namespace, proxy.labels)
    cluster = names.outbound_cluster(port, service.hostname)
    split = tcp_split(snapshot, mesh_virtual_service(snapshot, service.hostname), ctx)
    name = names.listener_name(address, port)
    listener = _listener(name, address, port, OUTBOUND, bind=False)
    listener.filter_chains.append(filter_chain(name, tcp_proxy_filter(cluster, split, cluster)))
    return listener


def http_outbound_listener(port: int) -> Any:
    name = names.listener_name(names.WILDCARD_ADDRESS, port)
    listener = _listener(name, names.WILDCARD_ADDRESS, port, OUTBOUND, bind=False)
    manager = http_connection_manager(f"outbound_{name}", rds_name=names.sidecar_route_config(port))
    listener.filter_chains.append(filter_chain(name, manager))
    return listener


def outbound_listeners(snapshot: MeshSnapshot, proxy: Proxy) -> list[Any]:
    services = visible_services(snapshot, proxy)
    http_ports = sidecar_http_ports(snapshot, proxy)
    out = {listener.name: listener for listener in map(http_outbound_listener, http_ports)}
    for service in services:
        for port in service.ports:
            if port.port in names.PROXY_PORTS:
                continue
            address = service.vip or names.WILDCARD_ADDRESS
            name = names.listener_name(address, port.port)
            # Without a VIP a TCP port can only claim 0.0.0.0_<port> if free.
            if not port.is_http and name not in out:
                out[name] = tcp_service_listener(snapshot, proxy, service, port.port, address)
    return list(out.values())


def virtual_outbound_listener() -> Any:
    listener = _listener(
        names.VIRTUAL_OUTBOUND_LISTENER,
        names.WILDCARD_ADDRESS,
        names.OUTBOUND_CAPTURE_PORT,
        OUTBOUND,
    )
    listener.use_original_dst.CopyFrom(wrappers_pb2.BoolValue(value=True))
    listener.filter_chains.extend(
        [
            # A connection addressed to 15001 itself would loop through capture.
            filter_chain(
                "virtualOutbound-blackhole",
                tcp_proxy(names.BLACKHOLE_CLUSTER, names.BLACKHOLE_CLUSTER),
                names.OUTBOUND_CAPTURE_PORT,
            ),
            filter_chain(
                "virtualOutbound-catchall-tcp",
                tcp_proxy(names.PASSTHROUGH_CLUSTER, names.PASSTHROUGH_CLUSTER),
            ),
        ]
    )
    return listener


def inbound_chain(inbound: InboundPort) -> Any:
    cluster = names.inbound_cluster(inbound.port)
    if inbound.is_http:
        network_filter = http_connection_manager(
            f"inbound_0.0.0.0_{inbound.port}",
            route_config=inbound_route_config(inbound.port, inbound.hostname),
        )
    else:
        network_filter = tcp_proxy(cluster, cluster)
    return filter_chain(cluster, network_filter, inbound.port)


def virtual_inbound_listener(snapshot: MeshSnapshot, proxy: Proxy) -> Any:
    listener = _listener(
        names.VIRTUAL_INBOUND_LISTENER,
        names.WILDCARD_ADDRESS,
        names.INBOUND_CAPTURE_PORT,
        INBOUND,
    )
    listener.listener_filters.add(
        name=ORIGINAL_DST_FILTER, typed_config=pack(original_dst_pb2.OriginalDst())
    )
    listener.filter_chains.append(
        filter_chain(
            "virtualInbound-blackhole",
            tcp_proxy(names.BLACKHOLE_CLUSTER, names.BLACKHOLE_CLUSTER),
            names.INBOUND_CAPTURE_PORT,
        )
    )
    listener.filter_chains.extend(inbound_chain(p) for p in inbound_ports(snapshot, proxy))
    listener.filter_chains.append(
        filter_chain(
            "virtualInbound-catchall-tcp",
            tcp_proxy(names.INBOUND_PASSTHROUGH_CLUSTER, names.INBOUND_PASSTHROUGH_CLUSTER),
        )
    )
    return listener


def port_map(proxy: Proxy) -> dict[int, int]:
    """The local runtime's host-port mapping for a gateway (`8080=18080,...`):
    the Gateway keeps saying 8080 while the Envoy binds where it was told,
    like a Kubernetes Service port in front of the gateway pod."""
    mapping: dict[int, int] = {}
    for item in proxy.annotations.get(names.PORT_MAP_ANNOTATION, "").split(","):
        container, sep, host = item.strip().partition("=")
        if sep and container.isdigit() and host.isdigit():
            mapping[int(container)] = int(host)
    return mapping


def gateway_listener(snapshot: MeshSnapshot, proxy: Proxy, entry: GatewayServer) -> Any:
    port = entry.listen_port
    name = names.listener_name(names.WILDCARD_ADDRESS, port)
    address = proxy.annotations.get(names.LISTEN_ADDRESS_ANNOTATION) or names.WILDCARD_ADDRESS
    listener = _listener(name, address, port_map(proxy).get(port, port), OUTBOUND)
    if entry.is_http:
        network_filter = http_connection_manager(
            f"outbound_{name}",
            rds_name=names.gateway_route_config(port),
            use_remote_address=True,  # the gateway is the edge: trust the peer address
        )
    else:
        ctx = MatchContext(entry.server.port.number, entry.gateway, proxy.namespace, proxy.labels)
        split = next(
            (
                found
                for vs in snapshot.vs_by_gateway.get(entry.gateway, ())
                if (found := tcp_split(snapshot, vs, ctx))
            ),
            (),
        )
        network_filter = tcp_proxy_filter(name, split, names.BLACKHOLE_CLUSTER)
    listener.filter_chains.append(filter_chain(name, network_filter))
    return listener


def gateway_listeners(snapshot: MeshSnapshot, proxy: Proxy) -> list[Any]:
    # TODO(tls): HTTPS and TLS servers need certificates (SDS); skipped for now.
    out: dict[int, Any] = {}
    for entry in selected_servers(snapshot, proxy):
        supported = entry.server.port.protocol in ("HTTP", "HTTP2", "GRPC", "TCP", "MONGO")
        if supported and entry.listen_port not in out:
            out[entry.listen_port] = gateway_listener(snapshot, proxy, entry)
    return list(out.values())


def build_listeners(snapshot: MeshSnapshot, proxy: Proxy) -> list[Any]:
    """All listeners of a proxy, sorted by name."""
    if proxy.type == "router":
        out = gateway_listeners(snapshot, proxy)
    else:
        out = [
            virtual_outbound_listener(),
            virtual_inbound_listener(snapshot, proxy),
            *outbound_listeners(snapshot, proxy),
        ]
    return sorted(out, key=lambda listener: listener.name)
