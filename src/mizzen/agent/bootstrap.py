"""Envoy v3 bootstrap for a mesh proxy (pure: no files, sockets or clocks).

The bootstrap only tells Envoy who it is (node id + Istio-style metadata) and
where the control plane is (the static ``xds-grpc`` cluster used by ADS).
Everything else -- listeners, clusters, routes -- arrives over ADS.

The node id and metadata come from ``mizzen.model.proxy`` -- the same module
whose ``proxy_from_node`` parses them on the control plane side -- so both
ends share one definition of Istio's formats:

    sidecar~10.0.0.1~reviews-v1-abc.default~default.svc.cluster.local
    router~10.0.0.9~istio-ingressgateway-xyz.istio-system~istio-system.svc.cluster.local
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from google.protobuf.json_format import MessageToDict

from mizzen.api.resources import ContainerPort
from mizzen.model.proxy import ProxyType, node_id_for, node_metadata_for
from mizzen.translate import tls

# The name the control plane's serving certificate carries (Istio's istiod).
CONTROL_PLANE_NAME = "istiod.istio-system.svc"

# A Kubernetes container port; the agent's name for the model's type.
PodPort = ContainerPort

XDS_CLUSTER = "xds-grpc"
PROMETHEUS_CLUSTER = "prometheus_stats"
DEFAULT_ADMIN_PORT = 15000
DEFAULT_PROMETHEUS_PORT = 15090

# The exact metadata keys Istio's agent sends; the control plane relies on them.
METADATA_KEYS = (
    "NAME",
    "NAMESPACE",
    "INSTANCE_IPS",
    "LABELS",
    "ANNOTATIONS",
    "SERVICE_ACCOUNT",
    "POD_PORTS",
)

_TYPE_PREFIX = "type.googleapis.com/"


class BootstrapError(ValueError):
    """The options cannot produce a valid bootstrap (message names the option)."""


@dataclass(frozen=True)
class BootstrapOptions:
    """Everything the bootstrap depends on.

    ``ips`` holds the pod's addresses; the first is the one in the node id.
    ``admin_port`` may be 0 (ephemeral; Envoy then writes the bound address to
    the file given by ``--admin-address-path``); the Prometheus listener needs
    a known admin port and is left out in that case.
    """

    pod: str
    namespace: str
    ips: tuple[str, ...]
    xds_host: str
    xds_port: int
    proxy_type: ProxyType = "sidecar"
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    service_account: str = "default"
    pod_ports: tuple[PodPort, ...] = ()
    cluster: str | None = None
    domain_suffix: str = "cluster.local"
    admin_address: str = "127.0.0.1"
    admin_port: int = DEFAULT_ADMIN_PORT
    prometheus_address: str = "0.0.0.0"
    prometheus_port: int | None = DEFAULT_PROMETHEUS_PORT
    xds_connect_timeout_s: float = 1.0
    max_downstream_connections: int | None = 2147483647
    # (host, port) of the only DNS server Envoy may ask; None: resolv.conf.
    dns_resolver: tuple[str, int] | None = None
    # The agent's SDS server (the workload certificate and trust bundle): an
    # abstract socket name (no leading "@"), or a file path starting with
    # "/". None: no mesh mTLS at all.
    sds_socket: str | None = None
    # ADS over mutual TLS with the workload certificate (needs sds_socket);
    # the server must present CONTROL_PLANE_NAME.
    xds_tls: bool = False

    def __post_init__(self) -> None:
        # Copy the maps so that a caller mutating its dict later cannot change
        # a "frozen" options object.
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))
        object.__setattr__(self, "annotations", MappingProxyType(dict(self.annotations)))
        object.__setattr__(self, "ips", tuple(self.ips))
        object.__setattr__(self, "pod_ports", tuple(self.pod_ports))


def validate_options(opts: BootstrapOptions) -> None:
    """Raise BootstrapError naming the first bad option."""
    if opts.proxy_type not in ("sidecar", "router"):
        raise BootstrapError(f"type: must be sidecar or router, not {opts.proxy_type!r}")
    if not opts.pod:
        raise BootstrapError("pod: must not be empty")
    if not opts.namespace:
        raise BootstrapError("namespace: must not be empty")
    # '~' separates node id fields; the namespace is the text after the last
    # '.' of "<pod>.<ns>", so only the namespace must be free of dots.
    if "~" in opts.pod:
        raise BootstrapError(f"pod: {opts.pod!r} must not contain '~'")
    if "~" in opts.namespace or "." in opts.namespace:
        raise BootstrapError(f"namespace: {opts.namespace!r} must not contain '~' or '.'")
    if not opts.ips:
        raise BootstrapError("ip: at least one pod IP is required")
    for ip in opts.ips:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise BootstrapError(f"ip: {ip!r} is not an IP address") from None
    if not opts.xds_host:
        raise BootstrapError("xds-address: host must not be empty")
    _check_port("xds-address", opts.xds_port, allow_zero=False)
    _check_port("admin-port", opts.admin_port, allow_zero=True)
    if opts.prometheus_port is not None:
        _check_port("prometheus-port", opts.prometheus_port, allow_zero=False)
    for i, port in enumerate(opts.pod_ports):
        _check_port(f"pod-ports[{i}].containerPort", port.container_port, allow_zero=False)
        if port.protocol not in ("TCP", "UDP", "SCTP"):
            raise BootstrapError(
                f"pod-ports[{i}].protocol: must be TCP, UDP or SCTP, not {port.protocol!r}"
            )
    if opts.xds_connect_timeout_s <= 0:
        raise BootstrapError("xds connect timeout: must be positive")
    if opts.xds_tls and not opts.sds_socket:
        raise BootstrapError("xds over TLS needs the SDS socket that serves the certificate")


def _check_port(name: str, port: int, *, allow_zero: bool) -> None:
    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        raise BootstrapError(f"{name}: port must be {low}..65535, not {port}")


def node_id(opts: BootstrapOptions) -> str:
    """Istio's node id: ``<type>~<ip>~<pod>.<ns>~<ns>.svc.<domain>``."""
    return node_id_for(opts.proxy_type, opts.ips[0], opts.pod, opts.namespace, opts.domain_suffix)


def node_cluster(opts: BootstrapOptions) -> str:
    """Envoy's service cluster: ``<canonical service>.<namespace>``.

    Istio derives the canonical service from the same labels, in this order,
    and falls back to the pod name.
    """
    if opts.cluster:
        return opts.cluster
    for key in ("service.istio.io/canonical-name", "app.kubernetes.io/name", "app"):
        value = opts.labels.get(key)
        if value:
            return f"{value}.{opts.namespace}"
    return f"{opts.pod}.{opts.namespace}"


def node_metadata(opts: BootstrapOptions) -> dict[str, Any]:
    """The node metadata with exactly :data:`METADATA_KEYS` (POD_PORTS is a JSON string)."""
    return node_metadata_for(
        name=opts.pod,
        namespace=opts.namespace,
        ips=opts.ips,
        labels=opts.labels,
        annotations=opts.annotations,
        service_account=opts.service_account,
        ports=opts.pod_ports,
    )


def render_bootstrap(opts: BootstrapOptions) -> dict[str, Any]:
    """The Envoy v3 bootstrap as a JSON-ready dict."""
    validate_options(opts)
    clusters: list[dict[str, Any]] = [_xds_cluster(opts)]
    if opts.sds_socket:
        clusters.append(_sds_cluster(opts.sds_socket))
    static: dict[str, Any] = {"clusters": clusters}
    if opts.prometheus_port is not None and opts.admin_port != 0:
        clusters.append(_prometheus_cluster(opts))
        static["listeners"] = [_prometheus_listener(opts)]

    # ADS waits forever for the first CDS/LDS (Istio does the same): a proxy
    # that went LIVE with no config would accept and black-hole traffic.
    ads_source = {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}
    bootstrap: dict[str, Any] = {
        "node": {
            "id": node_id(opts),
            "cluster": node_cluster(opts),
            "metadata": node_metadata(opts),
        },
        "admin": {
            "address": _socket_address(opts.admin_address, opts.admin_port),
            "access_log": [
                {
                    "name": "envoy.access_loggers.file",
                    "typed_config": {
                        "@type": _TYPE_PREFIX
                        + "envoy.extensions.access_loggers.file.v3.FileAccessLog",
                        "path": "/dev/null",
                    },
                }
            ],
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
                "set_node_on_first_message_only": True,
            },
            "cds_config": dict(ads_source),
            "lds_config": dict(ads_source),
        },
        "static_resources": static,
        "layered_runtime": _layered_runtime(),
    }
    if opts.dns_resolver is not None:
        bootstrap["typed_dns_resolver_config"] = _dns_resolver(*opts.dns_resolver)
    if opts.max_downstream_connections is not None:
        bootstrap["overload_manager"] = _overload_manager(opts.max_downstream_connections)
    return bootstrap


def _dns_resolver(host: str, port: int) -> dict[str, Any]:
    # Pinned resolver, no fallback to resolv.conf and no search domains: a
    # proxy in the host's network namespace (the local ingress gateway) must
    # never reach the host's real DNS servers.
    return {
        "name": "envoy.network.dns_resolver.cares",
        "typed_config": {
            "@type": _TYPE_PREFIX
            + "envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig",
            "resolvers": [_socket_address(host, port)],
            "use_resolvers_as_fallback": False,
            "dns_resolver_options": {"no_default_search_domain": True},
        },
    }


def render_bootstrap_json(opts: BootstrapOptions) -> str:
    """The bootstrap as the text written to ``bootstrap.json``."""
    return json.dumps(render_bootstrap(opts), indent=2, sort_keys=False) + "\n"


def _socket_address(address: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": address, "port_value": port}}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _xds_cluster(opts: BootstrapOptions) -> dict[str, Any]:
    # STATIC needs an IP; a name (e.g. from /etc/hosts) needs STRICT_DNS.
    static = _is_ip(opts.xds_host)
    cluster: dict[str, Any] = {
        "name": XDS_CLUSTER,
        "type": "STATIC" if static else "STRICT_DNS",
        "connect_timeout": _duration(opts.xds_connect_timeout_s),
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": _socket_address(opts.xds_host, opts.xds_port)}}
                    ]
                }
            ],
        },
        # The ADS stream lives for the pod's lifetime: keepalives notice a dead
        # control plane (or a NAT that forgot us) instead of waiting forever.
        "typed_extension_protocol_options": _http2(
            {"connection_keepalive": {"interval": "30s", "timeout": "10s"}}
        ),
        "upstream_connection_options": {"tcp_keepalive": {"keepalive_time": 300}},
        # Envoy's default circuit breakers (1024) would cap one ADS connection's
        # concurrent streams; the control plane is not a place to shed load.
        "circuit_breakers": {
            "thresholds": [
                {
                    "priority": "DEFAULT",
                    "max_connections": 100000,
                    "max_pending_requests": 100000,
                    "max_requests": 100000,
                },
                {
                    "priority": "HIGH",
                    "max_connections": 100000,
                    "max_pending_requests": 100000,
                    "max_requests": 100000,
                },
            ]
        },
    }
    if not static:
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    if opts.xds_tls:
        cluster["transport_socket"] = _xds_transport_socket()
    return cluster


def _as_dict(message: Any) -> dict[str, Any]:
    out: dict[str, Any] = MessageToDict(message, preserving_proto_field_name=True)
    return out


def _xds_transport_socket() -> dict[str, Any]:
    # The workload's own certificate (from SDS) proves who this proxy is;
    # the control plane must prove it is istiod with a certificate from the
    # same mesh root.
    context = tls.upstream_context(CONTROL_PLANE_NAME, ("h2",), dns_sans=(CONTROL_PLANE_NAME,))
    return {
        "name": tls.TLS_SOCKET,
        "typed_config": {"@type": _TYPE_PREFIX + context.DESCRIPTOR.full_name, **_as_dict(context)},
    }


def _http2(options: dict[str, Any]) -> dict[str, Any]:
    """A static gRPC cluster's protocol options: HTTP/2 with ``options``."""
    kind = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    return {
        kind: {
            "@type": _TYPE_PREFIX + kind,
            "explicit_http_config": {"http2_protocol_options": options},
        }
    }


def _pipe(socket_name: str) -> str:
    # A file path as is; otherwise an abstract socket, which Envoy spells "@name".
    return socket_name if socket_name.startswith("/") else f"@{socket_name}"


def _sds_cluster(socket_name: str) -> dict[str, Any]:
    return {
        "name": tls.SDS_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": tls.SDS_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"pipe": {"path": _pipe(socket_name)}}}}
                    ]
                }
            ],
        },
        "typed_extension_protocol_options": _http2({}),
    }


def _admin_target(opts: BootstrapOptions) -> str:
    # An admin bound to the wildcard is reached through loopback.
    if opts.admin_address in ("0.0.0.0", ""):
        return "127.0.0.1"
    if opts.admin_address == "::":
        return "::1"
    return opts.admin_address


def _prometheus_cluster(opts: BootstrapOptions) -> dict[str, Any]:
    return {
        "name": PROMETHEUS_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "0.250s",
        "load_assignment": {
            "cluster_name": PROMETHEUS_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": _socket_address(_admin_target(opts), opts.admin_port)
                            }
                        }
                    ]
                }
            ],
        },
    }


def _prometheus_listener(opts: BootstrapOptions) -> dict[str, Any]:
    # Istio's shape: expose only /stats/prometheus of the pod-local admin on
    # 15090, so scrapers never reach the rest of the admin API.
    assert opts.prometheus_port is not None
    return {
        "name": "prometheus_stats",
        "address": _socket_address(opts.prometheus_address, opts.prometheus_port),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": _TYPE_PREFIX
                            + "envoy.extensions.filters.network.http_connection_manager.v3"
                            ".HttpConnectionManager",
                            "codec_type": "AUTO",
                            "stat_prefix": "stats",
                            "route_config": {
                                "virtual_hosts": [
                                    {
                                        "name": "backend",
                                        "domains": ["*"],
                                        "routes": [
                                            {
                                                "match": {"prefix": "/stats/prometheus"},
                                                "route": {"cluster": PROMETHEUS_CLUSTER},
                                            }
                                        ],
                                    }
                                ]
                            },
                            "http_filters": [
                                {
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {
                                        "@type": _TYPE_PREFIX
                                        + "envoy.extensions.filters.http.router.v3.Router"
                                    },
                                }
                            ],
                        },
                    }
                ]
            }
        ],
    }


def _layered_runtime() -> dict[str, Any]:
    # The admin layer lets an operator flip runtime keys with /runtime_modify.
    return {"layers": [{"name": "admin", "admin_layer": {}}]}


def _overload_manager(limit: int) -> dict[str, Any]:
    # Without a connection limit Envoy warns at every start; Istio sets the
    # same effectively unlimited value (the runtime key it used is deprecated).
    return {
        "resource_monitors": [
            {
                "name": "envoy.resource_monitors.global_downstream_max_connections",
                "typed_config": {
                    "@type": _TYPE_PREFIX
                    + "envoy.extensions.resource_monitors.downstream_connections.v3"
                    ".DownstreamConnectionsConfig",
                    "max_active_downstream_connections": limit,
                },
            }
        ]
    }


def _duration(seconds: float) -> str:
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"
