"""Route configurations: per port for sidecars, per gateway port for routers.

A sidecar's route config ``"9080"`` has one virtual host per service exposing
HTTP on 9080 (domains: every name the caller might use) and a final ``*`` host
sending unknown authorities to ``PassthroughCluster``. Rules from the mesh
VirtualService of a host become Envoy routes in order, one per match block,
so Envoy's first-match semantics equal Istio's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from envoy.config.route.v3 import route_components_pb2 as route_pb2
from envoy.config.route.v3 import route_pb2 as route_config_pb2
from google.protobuf import wrappers_pb2

from mizzen.api.resources import HTTPMatchRequest, HTTPRoute, HTTPRouteDestination, VirtualService
from mizzen.model.snapshot import MeshService, MeshSnapshot, Proxy
from mizzen.translate import names
from mizzen.translate.actions import (
    apply_headers,
    apply_rewrite,
    destination_cluster,
    direct_response_action,
    fault_config,
    fractional_percent,
    redirect_action,
    retry_policy,
    set_clusters,
)
from mizzen.translate.clusters import hash_policies
from mizzen.translate.filters import FAULT_FILTER, duration, pack
from mizzen.translate.gateways import GatewayServer, intersect_hosts, selected_servers, server_host
from mizzen.translate.lookup import (
    MESH_GATEWAY,
    mesh_virtual_service,
    resolve_host,
    visible_services,
)
from mizzen.translate.matches import MatchContext, applies, route_match

ALLOW_ANY_VIRTUAL_HOST = "allow_any"
DEFAULT_ROUTE_NAME = "default"


def _route_name(rule: HTTPRoute, match: HTTPMatchRequest | None, index: int) -> str:
    parts = [p for p in (rule.name, match.name if match else "") if p]
    return ".".join(parts) or str(index)


def _route_action(
    snapshot: MeshSnapshot, vs: VirtualService, rule: HTTPRoute, route: Any, ctx: MatchContext
) -> tuple[Any, str]:
    """The RouteAction of a forwarding rule and the host it is decorated with."""
    action = route_pb2.RouteAction(timeout=duration(rule.timeout or 0.0))
    targets: list[tuple[str, HTTPRouteDestination]] = []
    operation = ""
    for dest in rule.route:
        cluster, host, port = destination_cluster(
            snapshot, dest.destination, vs.meta.namespace, ctx.port
        )
        targets.append((cluster, dest))
        operation = operation or names.decorator_operation(host, port)
    set_clusters(action, route, targets)
    if action.cluster:
        action.hash_policy.extend(hash_policies(snapshot, action.cluster))
    policy = retry_policy(rule.retries)
    if policy is not None:
        action.retry_policy.CopyFrom(policy)
    if rule.mirror is not None and rule.mirror_percentage != 0:
        mirror, _, _ = destination_cluster(snapshot, rule.mirror, vs.meta.namespace, ctx.port)
        percent = 100.0 if rule.mirror_percentage is None else rule.mirror_percentage
        action.request_mirror_policies.add(
            cluster=mirror, runtime_fraction={"default_value": fractional_percent(percent)}
        )
    return action, operation


def http_route(
    snapshot: MeshSnapshot,
    vs: VirtualService,
    rule: HTTPRoute,
    match: HTTPMatchRequest | None,
    index: int,
    ctx: MatchContext,
    vhost_host: str,
) -> Any:
    """One Envoy route for one match block of one Istio HTTPRoute."""
    route = route_pb2.Route(name=_route_name(rule, match, index), match=route_match(match))
    operation = names.decorator_operation(vhost_host, ctx.port)
    if rule.redirect is not None:
        route.redirect.CopyFrom(redirect_action(rule.redirect))
    elif rule.direct_response is not None:
        route.direct_response.CopyFrom(direct_response_action(rule.direct_response))
    else:
        action, dest_operation = _route_action(snapshot, vs, rule, route, ctx)
        if rule.rewrite is not None:
            uri = match.uri if match is not None else None
            whole_path = uri is not None and uri.kind in ("exact", "regex")
            apply_rewrite(action, rule.rewrite, whole_path)
        route.route.CopyFrom(action)
        operation = dest_operation or operation
    route.decorator.operation = operation
    apply_headers(route, rule.headers)
    if rule.fault is not None:
        route.typed_per_filter_config[FAULT_FILTER].CopyFrom(pack(fault_config(rule.fault)))
    return route


def virtual_service_routes(
    snapshot: MeshSnapshot, vs: VirtualService, ctx: MatchContext, vhost_host: str
) -> list[Any]:
    """Envoy routes of a VS for one listener: ORed match blocks in rule order."""
    routes = []
    for index, rule in enumerate(vs.http):
        if not (rule.route or rule.redirect or rule.direct_response):
            continue  # a delegating rule: delegation is not supported yet
        blocks: tuple[HTTPMatchRequest | None, ...] = rule.match or (None,)
        for match in blocks:
            if match is None or applies(match, vs, ctx):
                routes.append(http_route(snapshot, vs, rule, match, index, ctx, vhost_host))
    return routes


def default_route(hostname: str, port: int) -> Any:
    """Istio's route for a service no VirtualService shapes."""
    action = route_pb2.RouteAction(
        cluster=names.outbound_cluster(port, hostname), timeout=duration(0.0)
    )
    action.retry_policy.CopyFrom(retry_policy(None))
    return route_pb2.Route(
        name=DEFAULT_ROUTE_NAME,
        match=route_pb2.RouteMatch(prefix="/"),
        route=action,
        decorator={"operation": names.decorator_operation(hostname, port)},
    )


def service_domains(service: MeshService, port: int, proxy_namespace: str) -> list[str]:
    """Every authority a client may use for a service port.

    The bare short name is offered only in the service's own namespace: from
    elsewhere it would mean a different service (and duplicate domains make
    Envoy reject the whole route config). A headless Service's pods are
    reached by name too (``web-1.web``, a StatefulSet's): those names take
    the service's routes, whose cluster connects to the pod the name gave.
    """
    if service.origin == "serviceentry":
        hosts = [service.hostname]
    else:
        base = f"{service.name}.{service.namespace}"
        hosts = [service.hostname, f"{base}.svc", base]
        if service.namespace == proxy_namespace:
            hosts.append(service.name)
        if service.resolution == "NONE":
            hosts += [f"*.{host}" for host in hosts]
    if service.vip:
        hosts.append(service.vip)
    return [d for host in hosts for d in (host, f"{host}:{port}")]


def _unique(domains: Iterable[str], taken: set[str]) -> list[str]:
    fresh = [d for d in dict.fromkeys(domains) if d not in taken]
    taken.update(fresh)
    return fresh


def _service_routes(snapshot: MeshSnapshot, service: MeshService, ctx: MatchContext) -> list[Any]:
    vs = mesh_virtual_service(snapshot, service.hostname)
    routes = virtual_service_routes(snapshot, vs, ctx, service.hostname) if vs else []
    # A VS with no HTTP rule for this port leaves the service its default route.
    if routes:
        return routes
    route = default_route(service.hostname, ctx.port)
    route.route.hash_policy.extend(hash_policies(snapshot, route.route.cluster))
    return [route]


def allow_any_virtual_host() -> Any:
    return route_pb2.VirtualHost(
        name=ALLOW_ANY_VIRTUAL_HOST,
        domains=["*"],
        routes=[
            route_pb2.Route(
                name=ALLOW_ANY_VIRTUAL_HOST,
                match=route_pb2.RouteMatch(prefix="/"),
                route=route_pb2.RouteAction(
                    cluster=names.PASSTHROUGH_CLUSTER, timeout=duration(0.0)
                ),
            )
        ],
    )


def _counting_attempts(virtual_hosts: list[Any]) -> list[Any]:
    """Istio's outbound and gateway routes tell the upstream which attempt a
    request is (``x-envoy-attempt-count``)."""
    for host in virtual_hosts:
        host.include_request_attempt_count = True
    return virtual_hosts


def _route_configuration(name: str, virtual_hosts: list[Any]) -> Any:
    # Clusters may arrive after routes over ADS; never reject a route config
    # because a cluster it names is not known yet.
    return route_config_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=virtual_hosts,
        validate_clusters=wrappers_pb2.BoolValue(value=False),
    )


def sidecar_route_config(snapshot: MeshSnapshot, proxy: Proxy, port: int) -> Any:
    ctx = MatchContext(port, MESH_GATEWAY, proxy.namespace, proxy.labels)
    taken: set[str] = set()
    hosts = []
    for service in visible_services(snapshot, proxy):
        service_port = service.port(port)
        if service_port is None or not service_port.may_be_http:
            continue
        domains = _unique(service_domains(service, port, proxy.namespace), taken)
        if domains:
            hosts.append(
                route_pb2.VirtualHost(
                    name=names.virtual_host(service.hostname, port),
                    domains=domains,
                    routes=_service_routes(snapshot, service, ctx),
                )
            )
    return _route_configuration(
        names.sidecar_route_config(port), _counting_attempts([*hosts, allow_any_virtual_host()])
    )


def sidecar_http_ports(snapshot: MeshSnapshot, proxy: Proxy) -> list[int]:
    """Ports that have a route configuration: declared HTTP, or undeclared
    (auto-detected connections that turn out HTTP use it)."""
    ports = {p.port for s in visible_services(snapshot, proxy) for p in s.ports if p.may_be_http}
    return sorted(ports - names.PROXY_PORTS)


def inbound_route_config(port: int, hostname: str) -> Any:
    """The inline route of an inbound HTTP chain: everything to the app."""
    action = route_pb2.RouteAction(cluster=names.inbound_cluster(port), timeout=duration(0.0))
    route = route_pb2.Route(
        name=DEFAULT_ROUTE_NAME, match=route_pb2.RouteMatch(prefix="/"), route=action
    )
    if hostname:
        route.decorator.operation = names.decorator_operation(hostname, port)
    return _route_configuration(
        names.inbound_cluster(port),
        [route_pb2.VirtualHost(name=f"inbound|http|{port}", domains=["*"], routes=[route])],
    )


def _gateway_vhosts(
    snapshot: MeshSnapshot, servers: list[GatewayServer]
) -> dict[str, tuple[VirtualService, GatewayServer]]:
    """Virtual host name -> the VS that serves it, first (by gateway, VS order) wins."""
    chosen: dict[str, tuple[VirtualService, GatewayServer]] = {}
    for entry in servers:
        for vs in snapshot.vs_by_gateway.get(entry.gateway, ()):
            for raw_host in vs.hosts:
                vs_host = resolve_host(snapshot, raw_host, vs.meta.namespace)
                for pattern in entry.server.hosts:
                    host = server_host(pattern, entry.namespace, vs.meta.namespace)
                    common = intersect_hosts(vs_host, host) if host else None
                    if common is not None:
                        chosen.setdefault(common, (vs, entry))
    return chosen


def _blackhole_vhost(port: int) -> Any:
    # Istio's answer on a gateway port no VirtualService serves: 404.
    return route_pb2.VirtualHost(
        name=f"blackhole:{port}",
        domains=["*"],
        routes=[
            route_pb2.Route(
                name=DEFAULT_ROUTE_NAME,
                match=route_pb2.RouteMatch(prefix="/"),
                direct_response=route_pb2.DirectResponseAction(status=404),
            )
        ],
    )


def gateway_route_config(
    snapshot: MeshSnapshot, proxy: Proxy, port: int, servers: list[GatewayServer]
) -> Any:
    taken: set[str] = set()
    hosts = []
    for host, (vs, entry) in sorted(_gateway_vhosts(snapshot, servers).items()):
        ctx = MatchContext(entry.server.port.number, entry.gateway, proxy.namespace, proxy.labels)
        routes = virtual_service_routes(snapshot, vs, ctx, host)
        domains = _unique(["*"] if host == "*" else [host, f"{host}:{port}"], taken)
        if routes and domains:
            hosts.append(
                route_pb2.VirtualHost(
                    name=names.virtual_host(host, port), domains=domains, routes=routes
                )
            )
    return _route_configuration(
        names.gateway_route_config(port), _counting_attempts(hosts or [_blackhole_vhost(port)])
    )


def gateway_http_servers(snapshot: MeshSnapshot, proxy: Proxy) -> dict[int, list[GatewayServer]]:
    by_port: dict[int, list[GatewayServer]] = {}
    for entry in selected_servers(snapshot, proxy):
        if entry.is_http:
            by_port.setdefault(entry.listen_port, []).append(entry)
    return dict(sorted(by_port.items()))


def build_routes(snapshot: MeshSnapshot, proxy: Proxy) -> list[Any]:
    """All RDS route configurations of a proxy, sorted by name."""
    if proxy.type == "router":
        configs = [
            gateway_route_config(snapshot, proxy, port, servers)
            for port, servers in gateway_http_servers(snapshot, proxy).items()
        ]
    else:
        configs = [
            sidecar_route_config(snapshot, proxy, port)
            for port in sidecar_http_ports(snapshot, proxy)
        ]
    return sorted(configs, key=lambda c: c.name)
