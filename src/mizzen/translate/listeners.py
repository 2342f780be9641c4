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
from envoy.extensions.filters.listener.http_inspector.v3 import http_inspector_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.type.v3 import range_pb2
from google.protobuf import wrappers_pb2

from mizzen.api.resources import RouteDestination, VirtualService
from mizzen.model.snapshot import MeshService, MeshSnapshot, Proxy
from mizzen.translate import names, tls
from mizzen.translate.actions import destination_cluster, split_weights
from mizzen.translate.authn import Mode, WorkloadMtls, workload_mtls
from mizzen.translate.authz import NO_SECURITY, SecurityFilters, workload_security
from mizzen.translate.clusters import socket_address
from mizzen.translate.filters import (
    DRY_RUN_HTTP_LOG_FORMAT,
    DRY_RUN_TCP_LOG_FORMAT,
    HTTP_LOG_FORMAT,
    ORIGINAL_DST_FILTER,
    TCP_LOG_FORMAT,
    duration,
    http_connection_manager,
    pack,
    tcp_proxy,
)
from mizzen.translate.gateways import GatewayServer, selected_servers
from mizzen.translate.lookup import (
    MESH_GATEWAY,
    InboundPort,
    inbound_ports,
    mesh_virtual_service,
    visible_services,
)
from mizzen.translate.matches import MatchContext, applies
from mizzen.translate.routes import inbound_route_config

OUTBOUND = base_pb2.OUTBOUND
INBOUND = base_pb2.INBOUND

TLS_INSPECTOR_FILTER = "envoy.filters.listener.tls_inspector"
HTTP_INSPECTOR_FILTER = "envoy.filters.listener.http_inspector"
# What the HTTP inspector reports for HTTP/1.x and for HTTP/2 with prior
# knowledge; anything else on an undeclared port is TCP.
SNIFFED_HTTP = ("http/1.1", "h2c")
# Inbound chain names: the mTLS chain keeps Istio's cluster-like name, the
# others say what they accept.
PLAINTEXT_SUFFIX = "-plaintext"
TLS_SUFFIX = "-tls"
CATCH_ALL_MTLS = "virtualInbound-catchall-mtls"
CATCH_ALL_TCP = "virtualInbound-catchall-tcp"
CATCH_ALL_TLS = "virtualInbound-catchall-tls"


def filter_chain(name: str, network_filter: Any, destination_port: int | None = None) -> Any:
    """A chain of one network filter, or of a list of them."""
    filters = network_filter if isinstance(network_filter, list) else [network_filter]
    chain = listener_components_pb2.FilterChain(name=name, filters=filters)
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
    snapshot: MeshSnapshot,
    proxy: Proxy,
    service: MeshService,
    port: int,
    address: str,
    *,
    sniffed: bool = False,
) -> Any:
    """The listener of a TCP port; with ``sniffed`` (an undeclared port),
    connections the HTTP inspector found to be HTTP take the port's HTTP
    routes instead."""
    ctx = MatchContext(port, MESH_GATEWAY, proxy.namespace, proxy.labels)
    cluster = names.outbound_cluster(port, service.hostname)
    split = tcp_split(snapshot, mesh_virtual_service(snapshot, service.hostname), ctx)
    name = names.listener_name(address, port)
    listener = _listener(name, address, port, OUTBOUND, bind=False)
    if sniffed:
        # The inspector runs when virtualOutbound hands the connection over;
        # it waits for the client's first bytes. A server-first protocol on
        # an undeclared port waits for ever, as in Istio with its default
        # protocolDetectionTimeout of 0s; after a set timeout it is TCP.
        listener.listener_filters.append(_http_inspector())
        timeout = snapshot.protocol_detection_timeout
        listener.listener_filters_timeout.CopyFrom(duration(timeout))
        listener.continue_on_listener_filters_timeout = True
        listener.filter_chains.append(_http_chain(name, port, SNIFFED_HTTP))
    listener.filter_chains.append(filter_chain(name, tcp_proxy_filter(cluster, split, cluster)))
    return listener


def _http_chain(
    name: str, port: int, application_protocols: tuple[str, ...] = (), *, grpc_web: bool = False
) -> Any:
    """The HTTP chain of an outbound listener; with ``application_protocols``
    (a sniffed port), only for what the HTTP inspector recognised, and
    telling the server's sidecar over mTLS that this is HTTP."""
    manager = http_connection_manager(
        f"outbound_{name}",
        rds_name=names.sidecar_route_config(port),
        alpn=tls.CLIENT_HTTP_ALPN if application_protocols else None,
        grpc_web=grpc_web,
    )
    if not application_protocols:
        return filter_chain(name, manager)
    chain = filter_chain(f"{name}-http", manager)
    chain.filter_chain_match.application_protocols.extend(application_protocols)
    return chain


def http_outbound_listener(port: int, *, grpc_web: bool = False) -> Any:
    name = names.listener_name(names.WILDCARD_ADDRESS, port)
    listener = _listener(name, names.WILDCARD_ADDRESS, port, OUTBOUND, bind=False)
    listener.filter_chains.append(_http_chain(name, port, grpc_web=grpc_web))
    return listener


def outbound_listeners(snapshot: MeshSnapshot, proxy: Proxy) -> list[Any]:
    services = visible_services(snapshot, proxy)
    ports = [p for s in services for p in s.ports if p.port not in names.PROXY_PORTS]
    http_ports = sorted({p.port for p in ports if p.is_http})
    # One HTTP listener per port number: gRPC-Web on it if any service says so.
    grpc_web = {p.port for p in ports if p.protocol == "GRPC_WEB"}
    out = {
        listener.name: listener
        for listener in (http_outbound_listener(p, grpc_web=p in grpc_web) for p in http_ports)
    }
    for service in services:
        for port in service.ports:
            if port.port in names.PROXY_PORTS or port.is_http:
                continue
            address = service.vip or names.WILDCARD_ADDRESS
            name = names.listener_name(address, port.port)
            # Without a VIP a TCP port can only claim 0.0.0.0_<port> if free.
            if name not in out:
                out[name] = tcp_service_listener(
                    snapshot, proxy, service, port.port, address, sniffed=port.is_auto
                )
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


def _log_format(security: SecurityFilters) -> str:
    return DRY_RUN_HTTP_LOG_FORMAT if security.dry_run else HTTP_LOG_FORMAT


def _secured_tcp_proxy(cluster: str, security: SecurityFilters) -> list[Any]:
    """The TCP proxy behind a workload's TCP authorization filters."""
    log_format = DRY_RUN_TCP_LOG_FORMAT if security.dry_run else TCP_LOG_FORMAT
    return [*security.tcp, tcp_proxy(cluster, cluster, log_format=log_format)]


def _inbound_filter(
    inbound: InboundPort, security: SecurityFilters, *, mtls: bool, http: bool
) -> list[Any]:
    cluster = names.inbound_cluster(inbound.port)
    if http:
        manager = http_connection_manager(
            f"inbound_0.0.0.0_{inbound.port}",
            route_config=inbound_route_config(inbound.port, inbound.hostname),
            forward_peer_identity=mtls,
            grpc_web=inbound.protocol == "GRPC_WEB",
            security=security.http,
            log_format=_log_format(security),
        )
        return [manager]
    return _secured_tcp_proxy(cluster, security)


def _mtls_chain(
    name: str,
    network_filter: Any,
    port: int | None,
    alpn: tuple[str, ...],
    accepts: tuple[str, ...],
) -> Any:
    """Terminates the mesh's mTLS for clients offering one of ``accepts``
    (any TLS client when empty)."""
    chain = filter_chain(name, network_filter, port)
    chain.filter_chain_match.transport_protocol = "tls"
    chain.filter_chain_match.application_protocols.extend(accepts)
    chain.transport_socket.CopyFrom(tls.istio_downstream(alpn))
    return chain


def _mesh_alpns(mode: Mode, family: tuple[str, ...] = tls.ISTIO_ALPNS) -> tuple[str, ...]:
    """Istio matches any TLS under STRICT (a client without the ``istio``
    ALPN but with a mesh certificate, such as proxyless gRPC, gets in), and
    only the ``istio`` ALPN family under PERMISSIVE, where other TLS is the
    app's own and passes through."""
    return family if mode == "PERMISSIVE" else ()


def _tls_passthrough_chain(name: str, network_filter: Any, port: int | None) -> Any:
    # PERMISSIVE: TLS that is not the mesh's (the app's own) reaches the app as is.
    chain = filter_chain(name, network_filter, port)
    chain.filter_chain_match.transport_protocol = "tls"
    return chain


def inbound_chains(
    inbound: InboundPort, mode: Mode, security: SecurityFilters = NO_SECURITY
) -> list[Any]:
    """The chains of one inbound port: mTLS, plaintext, or both (PERMISSIVE,
    told apart by the TLS inspector).

    An undeclared port gets each of them twice: HTTP for what the client's
    sidecar marked as HTTP (ALPN ``istio-http/*``) or the HTTP inspector
    recognised in plaintext, TCP for everything else.
    """
    name, port = names.inbound_cluster(inbound.port), inbound.port
    # (name suffix, HTTP?, mTLS ALPNs accepted, plaintext ALPNs required)
    kinds: list[tuple[str, bool, tuple[str, ...], tuple[str, ...]]]
    kinds = [("", inbound.is_http, _mesh_alpns(mode), ())]
    if inbound.is_auto:
        kinds = [
            ("-http", True, tls.ISTIO_HTTP_ALPNS, SNIFFED_HTTP),
            ("", False, _mesh_alpns(mode, tls.ISTIO_TCP_ALPNS), ()),
        ]
    chains = []
    for suffix, http, accepts, sniffed in kinds:
        if mode != "DISABLE":
            alpn = tls.SERVER_HTTP_ALPN if http else ()
            secure = _inbound_filter(inbound, security, mtls=True, http=http)
            chains.append(_mtls_chain(name + suffix, secure, port, alpn, accepts))
        if mode != "STRICT":
            plaintext = _inbound_filter(inbound, security, mtls=False, http=http)
            chain = filter_chain(f"{name}{PLAINTEXT_SUFFIX}{suffix}", plaintext, port)
            chain.filter_chain_match.application_protocols.extend(sniffed)
            chains.append(chain)
    if mode == "PERMISSIVE":
        raw = _inbound_filter(inbound, security, mtls=False, http=False)
        chains.append(_tls_passthrough_chain(f"{name}{TLS_SUFFIX}", raw, port))
    return chains


def passthrough_chains(
    mode: Mode, port: int | None = None, security: SecurityFilters = NO_SECURITY
) -> list[Any]:
    """Ports no service or container declares, to the original destination:
    all of them under the workload's own mode (``port`` None), or one port a
    PeerAuthentication names in ``portLevelMtls``, under that port's mode.
    Authorization covers them too: allow-nothing leaves no way in."""
    cluster = names.INBOUND_PASSTHROUGH_CLUSTER
    suffix = "" if port is None else f"-{port}"

    def proxy() -> list[Any]:
        return _secured_tcp_proxy(cluster, security)

    chains = []
    if mode != "DISABLE":
        chains.append(_mtls_chain(CATCH_ALL_MTLS + suffix, proxy(), port, (), _mesh_alpns(mode)))
    if mode != "STRICT":
        chains.append(filter_chain(CATCH_ALL_TCP + suffix, proxy(), port))
    if mode == "PERMISSIVE":
        chains.append(_tls_passthrough_chain(CATCH_ALL_TLS + suffix, proxy(), port))
    return chains


def _port_predicate(ports: list[int]) -> Any:
    """Matches a destination port in ``ports`` (Envoy wants 2+ rules in an or)."""
    predicate = listener_components_pb2.ListenerFilterChainMatchPredicate
    rules = [
        predicate(destination_port_range=range_pb2.Int32Range(start=port, end=port + 1))
        for port in ports
    ]
    if len(rules) == 1:
        return rules[0]
    return predicate(or_match=predicate.MatchSet(rules=rules))


def _http_inspector(only: list[int] | None = None) -> Any:
    """The HTTP inspector, on ``only`` these destination ports when given."""
    inspector = listener_components_pb2.ListenerFilter(
        name=HTTP_INSPECTOR_FILTER, typed_config=pack(http_inspector_pb2.HttpInspector())
    )
    if only:
        inspector.filter_disabled.not_match.CopyFrom(_port_predicate(only))
    return inspector


def _tls_inspector(mtls: WorkloadMtls, ports: list[int]) -> Any | None:
    """The TLS inspector, skipped on ports that only take plaintext (it
    waits for the client's first bytes, which server-first protocols never
    send); None when no port needs it."""
    needs = [p for p in ports if mtls.for_port(p) != "DISABLE"]
    plain = [p for p in ports if mtls.for_port(p) == "DISABLE"]
    inspector = listener_components_pb2.ListenerFilter(
        name=TLS_INSPECTOR_FILTER, typed_config=pack(tls_inspector_pb2.TlsInspector())
    )
    if mtls.mode != "DISABLE":
        if plain:
            inspector.filter_disabled.CopyFrom(_port_predicate(plain))
        return inspector
    if not needs:
        return None
    # Only the listed ports need it: disabled wherever the port is not one of them.
    inspector.filter_disabled.not_match.CopyFrom(_port_predicate(needs))
    return inspector


def virtual_inbound_listener(snapshot: MeshSnapshot, proxy: Proxy) -> Any:
    listener = _listener(
        names.VIRTUAL_INBOUND_LISTENER,
        names.WILDCARD_ADDRESS,
        names.INBOUND_CAPTURE_PORT,
        INBOUND,
    )
    mtls = workload_mtls(snapshot, proxy.namespace, proxy.labels)
    ports = inbound_ports(snapshot, proxy)
    declared = {p.port for p in ports}
    # portLevelMtls may name a port nothing declares: it still gets its mode.
    undeclared = sorted(p for p in mtls.ports if p not in declared and p not in names.PROXY_PORTS)
    listener.listener_filters.add(
        name=ORIGINAL_DST_FILTER, typed_config=pack(original_dst_pb2.OriginalDst())
    )
    sniffed = [p.port for p in ports if p.is_auto]
    inspectors = [
        _tls_inspector(mtls, sorted(declared | set(undeclared))),
        _http_inspector(sniffed) if sniffed else None,
    ]
    for inspector in filter(None, inspectors):
        listener.listener_filters.append(inspector)
        # A client that never speaks first is still served after the
        # inspectors give up, as plaintext TCP: after protocolDetectionTimeout
        # when the mesh config sets one, else Envoy's default 15 s (Istio
        # would wait for ever, so server-first protocols could never be
        # PERMISSIVE).
        listener.continue_on_listener_filters_timeout = True
        if snapshot.protocol_detection_timeout:
            timeout = duration(snapshot.protocol_detection_timeout)
            listener.listener_filters_timeout.CopyFrom(timeout)
    listener.filter_chains.append(
        filter_chain(
            "virtualInbound-blackhole",
            tcp_proxy(names.BLACKHOLE_CLUSTER, names.BLACKHOLE_CLUSTER),
            names.INBOUND_CAPTURE_PORT,
        )
    )
    security = workload_security(snapshot, proxy.namespace, proxy.labels)
    for inbound in ports:
        listener.filter_chains.extend(
            inbound_chains(inbound, mtls.for_port(inbound.port), security)
        )
    for port in undeclared:
        listener.filter_chains.extend(passthrough_chains(mtls.for_port(port), port, security))
    listener.filter_chains.extend(passthrough_chains(mtls.mode, None, security))
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


def gateway_listener(
    snapshot: MeshSnapshot, proxy: Proxy, entry: GatewayServer, security: SecurityFilters
) -> Any:
    port = entry.listen_port
    name = names.listener_name(names.WILDCARD_ADDRESS, port)
    address = proxy.annotations.get(names.LISTEN_ADDRESS_ANNOTATION) or names.WILDCARD_ADDRESS
    listener = _listener(name, address, port_map(proxy).get(port, port), OUTBOUND)
    network_filter: Any
    if entry.is_http:
        network_filter = http_connection_manager(
            f"outbound_{name}",
            rds_name=names.gateway_route_config(port),
            use_remote_address=True,  # the gateway is the edge: trust the peer address
            grpc_web=entry.server.port.protocol == "GRPC-WEB",
            security=security.http,
            log_format=_log_format(security),
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
        network_filter = [*security.tcp, tcp_proxy_filter(name, split, names.BLACKHOLE_CLUSTER)]
    listener.filter_chains.append(filter_chain(name, network_filter))
    return listener


def gateway_listeners(snapshot: MeshSnapshot, proxy: Proxy) -> list[Any]:
    # TODO(tls): HTTPS and TLS servers need certificates (SDS); skipped for now.
    out: dict[int, Any] = {}
    # AuthorizationPolicies select gateways by their labels, like any workload.
    security = workload_security(snapshot, proxy.namespace, proxy.labels)
    for entry in selected_servers(snapshot, proxy):
        supported = entry.is_http or entry.server.port.protocol in ("TCP", "MONGO")
        if supported and entry.listen_port not in out:
            out[entry.listen_port] = gateway_listener(snapshot, proxy, entry, security)
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
