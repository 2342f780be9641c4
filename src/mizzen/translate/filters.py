"""Network filters (HTTP connection manager, TCP proxy) and their access logs.

Listeners of every kind share these so that a request looks the same in the
logs whichever path it took: the response flags and the upstream cluster are
always on the line, because they are how a 503 gets explained.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import config_source_pb2, substitution_format_string_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.access_loggers.stream.v3 import stream_pb2
from envoy.extensions.filters.common.set_filter_state.v3 import value_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.grpc_stats.v3 import config_pb2 as grpc_stats_pb2
from envoy.extensions.filters.http.grpc_web.v3 import grpc_web_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.http.set_filter_state.v3 import (
    set_filter_state_pb2,
)
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

HCM_FILTER = "envoy.filters.network.http_connection_manager"
TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"
ROUTER_FILTER = "envoy.filters.http.router"
FAULT_FILTER = "envoy.filters.http.fault"
GRPC_STATS_FILTER = "envoy.filters.http.grpc_stats"
GRPC_WEB_FILTER = "envoy.filters.http.grpc_web"
SET_FILTER_STATE_FILTER = "envoy.filters.http.set_filter_state"
# Envoy's well-known filter state key that replaces the upstream TLS ALPN list.
ALPN_STATE_KEY = "envoy.network.application_protocols"
ORIGINAL_DST_FILTER = "envoy.filters.listener.original_dst"
STDOUT_ACCESS_LOG = "envoy.access_loggers.stdout"

HTTP_LOG_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% grpc=%GRPC_STATUS(NUMBER)% "
    "%BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    '"%REQ(:AUTHORITY)%" "%REQ(X-REQUEST-ID)%" "%REQ(USER-AGENT)%" '
    '%UPSTREAM_CLUSTER% "%UPSTREAM_HOST%" '
    "%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %ROUTE_NAME%\n"
)
# What a dry-run AuthorizationPolicy would have done: the DENY policy it
# would have matched, and whether the ALLOW policies would have denied.


def _dry_run_fields(rbac_filter: str) -> str:
    metadata = f"%DYNAMIC_METADATA({rbac_filter}:istio_dry_run_"
    return (
        f" dry-run-deny={metadata}deny_shadow_effective_policy_id)%"
        f" dry-run-allow={metadata}allow_shadow_engine_result)%"
    )


DRY_RUN_HTTP_LOG_FORMAT = (
    HTTP_LOG_FORMAT.rstrip("\n") + _dry_run_fields("envoy.filters.http.rbac") + "\n"
)
TCP_LOG_FORMAT = (
    "[%START_TIME%] tcp %RESPONSE_FLAGS% %CONNECTION_TERMINATION_DETAILS% "
    "%BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    '%UPSTREAM_CLUSTER% "%UPSTREAM_HOST%" '
    "%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS%\n"
)
DRY_RUN_TCP_LOG_FORMAT = (
    TCP_LOG_FORMAT.rstrip("\n") + _dry_run_fields("envoy.filters.network.rbac") + "\n"
)


def pack(message: Any) -> Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def duration(seconds: float) -> Any:
    value = duration_pb2.Duration()
    value.FromNanoseconds(round(seconds * 1_000_000_000))
    return value


def ads_config_source() -> Any:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def stdout_access_log(text_format: str) -> Any:
    logger = stream_pb2.StdoutAccessLog(
        log_format=substitution_format_string_pb2.SubstitutionFormatString(
            text_format_source={"inline_string": text_format}
        )
    )
    return accesslog_pb2.AccessLog(name=STDOUT_ACCESS_LOG, typed_config=pack(logger))


def alpn_override(alpn: str) -> Any:
    """Offers ``alpn`` instead of the cluster's ALPN on the upstream
    connections of each request (the connection pool keys on it, so these
    connections are never shared with ones made for TCP)."""
    value = value_pb2.FilterStateValue(
        object_key=ALPN_STATE_KEY,
        format_string=substitution_format_string_pb2.SubstitutionFormatString(
            text_format_source={"inline_string": alpn}
        ),
        shared_with_upstream=value_pb2.FilterStateValue.ONCE,
    )
    config = set_filter_state_pb2.Config(on_request_headers=[value])
    return hcm_pb2.HttpFilter(name=SET_FILTER_STATE_FILTER, typed_config=pack(config))


def http_filters(
    *, alpn: str | None = None, grpc_web: bool = False, security: Sequence[Any] = ()
) -> list[Any]:
    # The fault filter is always present (a no-op without per-route config) so
    # that a VirtualService adding a fault never changes the listener. gRPC
    # stats count calls by grpc-status under cluster.<name>.grpc. gRPC-Web
    # (on grpc-web ports, as Istio) becomes gRPC before routing, and back.
    grpc_stats = grpc_stats_pb2.FilterConfig()
    grpc_stats.stats_for_all_methods.value = False
    # Authentication and authorization (``security``) come first, as in
    # Istio: a request they refuse is never routed.
    out = [*security] if alpn is None else [alpn_override(alpn), *security]
    if grpc_web:
        out.append(
            hcm_pb2.HttpFilter(name=GRPC_WEB_FILTER, typed_config=pack(grpc_web_pb2.GrpcWeb()))
        )
    return [
        *out,
        hcm_pb2.HttpFilter(name=GRPC_STATS_FILTER, typed_config=pack(grpc_stats)),
        hcm_pb2.HttpFilter(name=FAULT_FILTER, typed_config=pack(fault_pb2.HTTPFault())),
        hcm_pb2.HttpFilter(name=ROUTER_FILTER, typed_config=pack(router_pb2.Router())),
    ]


def http_connection_manager(
    stat_prefix: str,
    *,
    rds_name: str | None = None,
    route_config: Any = None,
    use_remote_address: bool = False,
    forward_peer_identity: bool = False,
    alpn: str | None = None,
    grpc_web: bool = False,
    security: Sequence[Any] = (),
    log_format: str = HTTP_LOG_FORMAT,
) -> Any:
    """An HCM filter with routes from RDS (``rds_name``) or inline.

    ``forward_peer_identity`` (the server side of mTLS) hands the app the
    caller's identity in ``X-Forwarded-Client-Cert``, appended to what the
    caller forwarded, in Istio's ``By=...;Hash=...;Subject="";URI=...``
    form. Elsewhere the header is stripped, so nobody can forge it.
    ``alpn`` replaces the upstream TLS ALPN offer (see ``alpn_override``).
    """
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=stat_prefix,
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        http_filters=http_filters(alpn=alpn, grpc_web=grpc_web, security=security),
        access_log=[stdout_access_log(log_format)],
        normalize_path=wrappers_pb2.BoolValue(value=True),
        use_remote_address=wrappers_pb2.BoolValue(value=use_remote_address),
        # Istio allows WebSocket upgrades on every HTTP route by default.
        upgrade_configs=[hcm_pb2.HttpConnectionManager.UpgradeConfig(upgrade_type="websocket")],
        # Istio turns Envoy's 5-minute stream idle timeout off: a quiet
        # stream (SSE, a gRPC watch) lives until a route timeout says.
        stream_idle_timeout=duration(0.0),
    )
    if forward_peer_identity:
        manager.forward_client_cert_details = hcm_pb2.HttpConnectionManager.APPEND_FORWARD
        details = manager.set_current_client_cert_details
        details.subject.value = True
        details.dns = True
        details.uri = True
    if rds_name is not None:
        manager.rds.config_source.CopyFrom(ads_config_source())
        manager.rds.route_config_name = rds_name
    else:
        manager.route_config.CopyFrom(route_config)
    return listener_components_pb2.Filter(name=HCM_FILTER, typed_config=pack(manager))


def tcp_proxy(
    stat_prefix: str,
    cluster: str = "",
    weights: tuple[tuple[str, int], ...] = (),
    log_format: str = TCP_LOG_FORMAT,
) -> Any:
    """A TCP proxy filter to one cluster, or split by ``(cluster, weight)``."""
    proxy = tcp_proxy_pb2.TcpProxy(
        stat_prefix=stat_prefix, access_log=[stdout_access_log(log_format)]
    )
    if weights:
        for name, weight in weights:
            proxy.weighted_clusters.clusters.add(name=name, weight=weight)
    else:
        proxy.cluster = cluster
    return listener_components_pb2.Filter(name=TCP_PROXY_FILTER, typed_config=pack(proxy))
