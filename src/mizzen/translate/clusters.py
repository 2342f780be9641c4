"""Clusters (CDS): outbound per service port and subset, inbound per pod port,
and the fixed passthrough/blackhole clusters Istio users know by name.

Upstream TLS follows Istio. A DestinationRule ``tls`` setting wins
(subset over top level, port-level over policy-level); ``DISABLE`` is
plaintext and ``ISTIO_MUTUAL`` is the mesh's mTLS to every endpoint.
Without one, auto mTLS picks per endpoint: mTLS to endpoints labelled
``security.istio.io/tlsMode: istio`` (pods with a sidecar), plaintext to
the rest, unless the service's namespace (or the mesh) disables mTLS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from mizzen.api.resources import TrafficPolicy
from mizzen.model.snapshot import HTTP2_PROTOCOLS, MeshService, MeshSnapshot, Proxy, ServicePort
from mizzen.translate import names, tls
from mizzen.translate.authn import service_mode
from mizzen.translate.cluster_policy import (
    apply_connection_pool,
    apply_load_balancer,
    apply_outlier_detection,
    max_concurrent_streams,
    route_hash_policies,
    uses_client_protocol,
)
from mizzen.translate.filters import ads_config_source, duration, pack
from mizzen.translate.lookup import (
    destination_rule,
    inbound_ports,
    labels_match,
    visible_services,
)

CONNECT_TIMEOUT_SECONDS = 10.0
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

Discovery = Literal["EDS", "STRICT_DNS", "ORIGINAL_DST"]
UpstreamProtocol = Literal["HTTP1", "HTTP2", "DOWNSTREAM"]


@dataclass(frozen=True)
class OutboundCluster:
    """One outbound cluster before it becomes protobuf; EDS reads it too."""

    name: str
    service: MeshService
    port: ServicePort
    subset_labels: Mapping[str, str] = field(default_factory=dict)
    subset: str = ""

    @property
    def discovery(self) -> Discovery:
        return discovery_of(self.service)


def discovery_of(service: MeshService) -> Discovery:
    if service.resolution == "DNS" and not service.hostname.startswith("*"):
        return "STRICT_DNS"
    if service.resolution in ("NONE", "DNS"):
        # No addresses to balance over: connect where the app was going.
        return "ORIGINAL_DST"
    return "EDS"


def outbound_clusters(snapshot: MeshSnapshot, proxy: Proxy) -> list[OutboundCluster]:
    out = []
    for service in visible_services(snapshot, proxy):
        rule = destination_rule(snapshot, service.hostname)
        subsets = rule.subsets if rule is not None else ()
        for port in service.ports:
            out.append(
                OutboundCluster(names.outbound_cluster(port.port, service.hostname), service, port)
            )
            out.extend(
                OutboundCluster(
                    names.outbound_cluster(port.port, service.hostname, subset.name),
                    service,
                    port,
                    subset.labels,
                    subset.name,
                )
                for subset in subsets
            )
    return out


def socket_address(address: str, port: int) -> Any:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=address, port_value=port)
    )


def static_assignment(name: str, targets: list[tuple[str, int]]) -> Any:
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                lb_endpoints=[
                    endpoint_components_pb2.LbEndpoint(endpoint={"address": socket_address(a, p)})
                    for a, p in targets
                ]
            )
        ],
    )


def _base(name: str, kind: Any) -> Any:
    return cluster_pb2.Cluster(
        name=name, type=kind, connect_timeout=duration(CONNECT_TIMEOUT_SECONDS)
    )


def _protocol_options(protocol: UpstreamProtocol, max_streams: int | None = None) -> Any:
    options = http_protocol_options_pb2.HttpProtocolOptions()
    if protocol == "HTTP2":
        http2 = options.explicit_http_config.http2_protocol_options
        http2.SetInParent()
        if max_streams:
            http2.max_concurrent_streams.value = max_streams
    elif protocol == "DOWNSTREAM":
        options.use_downstream_protocol_config.http_protocol_options.SetInParent()
        options.use_downstream_protocol_config.http2_protocol_options.SetInParent()
    return options


def _set_protocol(cluster: Any, protocol: UpstreamProtocol, options: Any = None) -> None:
    """HTTP/2 or the downstream's protocol to the upstream, and connection
    pool settings (``options``); nothing is set for plain HTTP/1.1, Envoy's
    default (and TCP proxies ignore it)."""
    options = options if options is not None else _protocol_options(protocol)
    if not options.ListFields():
        return
    if not options.HasField("upstream_protocol_options"):
        options.explicit_http_config.http_protocol_options.SetInParent()
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(options))


def _original_dst(name: str) -> Any:
    cluster = _base(name, cluster_pb2.Cluster.ORIGINAL_DST)
    cluster.lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED
    return cluster


def _dns_targets(snapshot: MeshSnapshot, spec: OutboundCluster) -> list[tuple[str, int]]:
    endpoints = snapshot.endpoints_of(spec.service.hostname, spec.port.port)
    chosen = [e for e in endpoints if labels_match(spec.subset_labels, e.labels)]
    if not endpoints:
        # A DNS ServiceEntry without endpoints resolves its own host name.
        return [(spec.service.hostname, spec.port.port)]
    return sorted((e.address, e.port) for e in chosen)


def outbound_cluster(snapshot: MeshSnapshot, spec: OutboundCluster) -> Any:
    if spec.discovery == "ORIGINAL_DST":
        cluster = _original_dst(spec.name)
    elif spec.discovery == "STRICT_DNS":
        cluster = _base(spec.name, cluster_pb2.Cluster.STRICT_DNS)
        cluster.dns_lookup_family = cluster_pb2.Cluster.V4_ONLY
        cluster.load_assignment.CopyFrom(static_assignment(spec.name, _dns_targets(snapshot, spec)))
    else:
        cluster = _base(spec.name, cluster_pb2.Cluster.EDS)
        cluster.eds_cluster_config.eds_config.CopyFrom(ads_config_source())
        cluster.eds_cluster_config.service_name = spec.name
    lb, pool, outlier = (
        policy_setting(snapshot, spec, _field(field))
        for field in ("loadBalancer", "connectionPool", "outlierDetection")
    )
    if spec.discovery != "ORIGINAL_DST":
        apply_load_balancer(cluster, lb)
    protocol = upstream_protocol(snapshot, spec)
    if uses_client_protocol(pool) and spec.port.is_http:
        protocol = "DOWNSTREAM"
    options = _protocol_options(protocol, max_concurrent_streams(pool))
    apply_connection_pool(cluster, pool, options)
    apply_outlier_detection(cluster, outlier)
    _set_protocol(cluster, protocol, options)
    _upstream_tls(snapshot, spec, cluster, http2=protocol == "HTTP2")
    return cluster


def _field(name: str) -> Callable[[Mapping[str, Any]], Any]:
    def pick(settings: Mapping[str, Any]) -> Any:
        return settings.get(name)

    return pick


def hash_policies(snapshot: MeshSnapshot, cluster_name: str) -> list[Any]:
    """The route hash policy a consistent-hash DestinationRule asks of the
    routes to ``cluster_name`` (``outbound|<port>|<subset>|<host>``)."""
    _, port, subset, host = cluster_name.split("|", 3)
    service = snapshot.service(host)
    service_port = service.port(int(port)) if service is not None else None
    if service is None or service_port is None:
        return []
    spec = OutboundCluster(cluster_name, service, service_port, subset=subset)
    return route_hash_policies(policy_setting(snapshot, spec, _field("loadBalancer")))


def policy_setting(
    snapshot: MeshSnapshot, spec: OutboundCluster, pick: Callable[[Mapping[str, Any]], Any]
) -> Any:
    """The first value ``pick`` finds (not None) in the DestinationRule
    settings that apply to a cluster: subset port-level, subset, top-level
    port-level, top-level; each given as the raw camelCase mapping."""
    rule = destination_rule(snapshot, spec.service.hostname)
    if rule is None:
        return None
    policies = []
    if spec.subset:
        subset = next((s for s in rule.subsets if s.name == spec.subset), None)
        if subset is not None:
            policies.append(subset.traffic_policy)
    policies.append(rule.traffic_policy)
    for policy in policies:
        if policy is None:
            continue
        for settings in policy.port_level_settings:
            number = (settings.get("port") or {}).get("number")
            if number == spec.port.port and (found := pick(settings)) is not None:
                return found
        if (found := pick(_settings(policy))) is not None:
            return found
    return None


def _settings(policy: TrafficPolicy) -> Mapping[str, Any]:
    # The typed fields are the model's truth; raw keeps what is not typed.
    typed = {
        "loadBalancer": policy.load_balancer,
        "connectionPool": policy.connection_pool,
        "outlierDetection": policy.outlier_detection,
        "tls": policy.tls,
    }
    return {**policy.raw, **typed}


def client_tls(snapshot: MeshSnapshot, spec: OutboundCluster) -> Mapping[str, Any] | None:
    """The DestinationRule ``tls`` settings that apply to a cluster."""
    found: Mapping[str, Any] | None = policy_setting(snapshot, spec, lambda p: p.get("tls"))
    return found


def _h2_upgrade_policy(settings: Mapping[str, Any]) -> str | None:
    policy = ((settings.get("connectionPool") or {}).get("http") or {}).get("h2UpgradePolicy")
    # DEFAULT defers to the next level and finally to the mesh config.
    return None if policy in (None, "DEFAULT") else str(policy)


def upstream_protocol(snapshot: MeshSnapshot, spec: OutboundCluster) -> UpstreamProtocol:
    """HTTP/2 for ports declared HTTP/2 or gRPC, and for HTTP/1.1 ports a
    DestinationRule (or else the mesh config) upgrades; the client's own
    protocol on an undeclared port; HTTP/1.1 otherwise."""
    if spec.port.protocol in HTTP2_PROTOCOLS:
        return "HTTP2"
    if spec.port.is_auto:
        return "DOWNSTREAM"
    if spec.port.protocol == "HTTP":
        policy = policy_setting(snapshot, spec, _h2_upgrade_policy)
        if policy == "UPGRADE" or (policy is None and snapshot.h2_upgrade):
            return "HTTP2"
    return "HTTP1"


def _upstream_tls(
    snapshot: MeshSnapshot, spec: OutboundCluster, cluster: Any, *, http2: bool
) -> None:
    settings = client_tls(snapshot, spec)
    # ClientTLSSettings' mode defaults to DISABLE: `tls: {}` means plaintext.
    mode = settings.get("mode", "DISABLE") if settings is not None else None
    hostname, port = spec.service.hostname, spec.port.port
    if mode == "ISTIO_MUTUAL":
        assert settings is not None
        sni = settings.get("sni") or tls.sni(port, hostname, spec.subset)
        sans = settings.get("subjectAltNames") or snapshot.service_accounts.get(hostname, ())
        cluster.transport_socket.CopyFrom(tls.istio_upstream(sni, sans, http2=http2))
        return
    if mode is None and _headless_in_mesh(snapshot, spec):
        # Connections go where the app dialled (ORIGINAL_DST), so no endpoint
        # metadata can pick the socket: mTLS when every pod behind the
        # headless service has a sidecar.
        sans = snapshot.service_accounts.get(hostname, ())
        sni = tls.sni(port, hostname, spec.subset)
        cluster.transport_socket.CopyFrom(tls.istio_upstream(sni, sans, http2=http2))
        return
    if mode is not None or not _auto_mtls(snapshot, spec):
        # DISABLE, or SIMPLE/MUTUAL (origination to servers outside the
        # mesh: not built yet, refused with a warning at apply), or no mTLS.
        return
    sans = snapshot.service_accounts.get(hostname, ())
    istio = cluster.transport_socket_matches.add(name="tlsMode-istio")
    istio.match.fields[tls.TLS_MODE_KEY].string_value = tls.TLS_MODE_ISTIO
    istio.transport_socket.CopyFrom(
        tls.istio_upstream(tls.sni(port, hostname, spec.subset), sans, http2=http2)
    )
    # Endpoints without the label use the cluster's own transport socket,
    # plaintext. (Istio spells this out as a "tlsMode-disabled" match with
    # an empty selector; leaving it out saves a fifth of every cluster.)


def _headless_in_mesh(snapshot: MeshSnapshot, spec: OutboundCluster) -> bool:
    """A Kubernetes headless service whose ready pods all have a sidecar."""
    service = spec.service
    if not snapshot.auto_mtls or service.origin != "kubernetes" or service.resolution != "NONE":
        return False
    if service_mode(snapshot, service) in (None, "DISABLE"):
        return False
    endpoints = snapshot.endpoints_of(service.hostname, spec.port.port)
    return bool(endpoints) and all(
        e.labels.get(tls.TLS_MODE_LABEL) == tls.TLS_MODE_ISTIO for e in endpoints
    )


def _auto_mtls(snapshot: MeshSnapshot, spec: OutboundCluster) -> bool:
    # Only EDS endpoints carry the tlsMode metadata that selects mTLS.
    if not snapshot.auto_mtls or spec.discovery != "EDS":
        return False
    return service_mode(snapshot, spec.service) not in (None, "DISABLE")


def _bind_from_proxy(cluster: Any) -> None:
    cluster.upstream_bind_config.source_address.address = names.INBOUND_UPSTREAM_BIND_ADDRESS
    cluster.upstream_bind_config.source_address.port_value = 0


def inbound_clusters(snapshot: MeshSnapshot, proxy: Proxy) -> list[Any]:
    out = []
    for inbound in inbound_ports(snapshot, proxy):
        name = names.inbound_cluster(inbound.port)
        cluster = _base(name, cluster_pb2.Cluster.STATIC)
        cluster.load_assignment.CopyFrom(
            static_assignment(name, [(names.INBOUND_APP_ADDRESS, inbound.port)])
        )
        _bind_from_proxy(cluster)
        if inbound.protocol in HTTP2_PROTOCOLS:
            _set_protocol(cluster, "HTTP2")
        elif inbound.is_auto:
            _set_protocol(cluster, "DOWNSTREAM")
        out.append(cluster)
    return out


def fixed_clusters(proxy: Proxy) -> list[Any]:
    out = [
        _original_dst(names.PASSTHROUGH_CLUSTER),
        _base(names.BLACKHOLE_CLUSTER, cluster_pb2.Cluster.STATIC),
    ]
    if proxy.type == "sidecar":
        inbound = _original_dst(names.INBOUND_PASSTHROUGH_CLUSTER)
        _bind_from_proxy(inbound)
        out.append(inbound)
    return out


def build_clusters(snapshot: MeshSnapshot, proxy: Proxy) -> list[Any]:
    """All clusters of a proxy, sorted by name."""
    out = [outbound_cluster(snapshot, spec) for spec in outbound_clusters(snapshot, proxy)]
    if proxy.type == "sidecar":
        out += inbound_clusters(snapshot, proxy)
    out += fixed_clusters(proxy)
    return sorted(out, key=lambda c: c.name)
