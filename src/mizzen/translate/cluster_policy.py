"""DestinationRule traffic policies on outbound clusters (and the route hash
policies consistent hashing needs), as Istio applies them.

Each of ``loadBalancer``, ``connectionPool`` and ``outlierDetection`` is
taken whole from the most specific level that sets it: the subset's port
level, the subset, the top level's port level, the top level (Istio's merge
is per field, not per sub-field).

- Load balancing: Istio's default is LEAST_REQUEST; ``simple`` picks
  Envoy's policy (LEAST_CONN is LEAST_REQUEST); ``consistentHash`` is a
  ring hash (or Maglev) plus a hash policy on every route to the cluster;
  ``warmupDurationSecs`` is Envoy's slow start.
- Connection pool: Envoy's circuit breakers, which Istio opens to the
  maximum unless told otherwise (Envoy's own default of 1024 would cap a
  busy service); connection options on the cluster and its HTTP options.
- Outlier detection: consecutive 5xx and gateway errors, the local-origin
  split, ejection times and percentages; success-rate ejection stays off,
  and ``minHealthPercent`` becomes the panic threshold (0 unless set), as
  Istio does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2
from google.protobuf import wrappers_pb2

from mizzen.api.validate_crd import parse_duration
from mizzen.translate.filters import duration

MAX_U32 = 2**32 - 1
DEFAULT_RING_SIZE = 1024
Settings = Mapping[str, Any]

_SIMPLE = {
    "ROUND_ROBIN": cluster_pb2.Cluster.ROUND_ROBIN,
    "LEAST_REQUEST": cluster_pb2.Cluster.LEAST_REQUEST,
    "LEAST_CONN": cluster_pb2.Cluster.LEAST_REQUEST,
    "RANDOM": cluster_pb2.Cluster.RANDOM,
}


def _seconds(value: Any) -> float | None:
    return parse_duration(value) if isinstance(value, str) else None


def _u32(value: int) -> Any:
    return wrappers_pb2.UInt32Value(value=value)


def _duration(value: Any) -> Any:
    seconds = _seconds(value)
    return None if seconds is None else duration(seconds)


# ---------------------------------------------------------------------------
# Load balancer


def apply_load_balancer(cluster: Any, lb: Settings | None) -> None:
    """Istio's default (LEAST_REQUEST) or the DestinationRule's choice."""
    lb = lb or {}
    hashing = lb.get("consistentHash")
    if hashing:
        _apply_consistent_hash(cluster, hashing)
        return
    simple = lb.get("simple") or "UNSPECIFIED"
    if simple == "PASSTHROUGH":
        cluster.type = cluster_pb2.Cluster.ORIGINAL_DST
        cluster.lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED
        cluster.ClearField("eds_cluster_config")
        cluster.ClearField("load_assignment")
        return
    cluster.lb_policy = _SIMPLE.get(simple, cluster_pb2.Cluster.LEAST_REQUEST)
    warmup = _seconds(lb.get("warmupDurationSecs"))
    if warmup:
        if cluster.lb_policy == cluster_pb2.Cluster.ROUND_ROBIN:
            config = cluster.round_robin_lb_config.slow_start_config
        else:
            config = cluster.least_request_lb_config.slow_start_config
        config.slow_start_window.CopyFrom(duration(warmup))


def _apply_consistent_hash(cluster: Any, hashing: Settings) -> None:
    maglev = hashing.get("maglev")
    if maglev is not None:
        cluster.lb_policy = cluster_pb2.Cluster.MAGLEV
        if maglev.get("tableSize"):
            cluster.maglev_lb_config.table_size.value = int(maglev["tableSize"])
        return
    cluster.lb_policy = cluster_pb2.Cluster.RING_HASH
    ring = hashing.get("ringHash") or {}
    size = ring.get("minimumRingSize") or hashing.get("minimumRingSize") or DEFAULT_RING_SIZE
    cluster.ring_hash_lb_config.minimum_ring_size.value = int(size)


def route_hash_policies(lb: Settings | None) -> list[Any]:
    """The route's hash policy for a consistent-hash destination."""
    hashing = (lb or {}).get("consistentHash")
    if not hashing:
        return []
    policy = route_components_pb2.RouteAction.HashPolicy
    if hashing.get("httpHeaderName"):
        return [policy(header=policy.Header(header_name=hashing["httpHeaderName"]))]
    if hashing.get("httpQueryParameterName"):
        name = hashing["httpQueryParameterName"]
        return [policy(query_parameter=policy.QueryParameter(name=name))]
    if hashing.get("useSourceIp"):
        return [policy(connection_properties=policy.ConnectionProperties(source_ip=True))]
    cookie = hashing.get("httpCookie")
    if cookie:
        out = policy.Cookie(name=cookie["name"], path=cookie.get("path", ""))
        ttl = _duration(cookie.get("ttl"))
        if ttl is not None:
            out.ttl.CopyFrom(ttl)
        for attribute in cookie.get("attributes") or ():
            out.attributes.add(name=attribute["name"], value=attribute.get("value", ""))
        return [policy(cookie=out)]
    return []


# ---------------------------------------------------------------------------
# Connection pool


def apply_connection_pool(cluster: Any, pool: Settings | None, http_options: Any) -> None:
    """Circuit breakers and connection settings; ``http_options`` is the
    cluster's HttpProtocolOptions (written back by the caller)."""
    pool = pool or {}
    tcp, http = pool.get("tcp") or {}, pool.get("http") or {}
    thresholds = cluster.circuit_breakers.thresholds.add()
    thresholds.max_connections.value = tcp.get("maxConnections") or MAX_U32
    thresholds.max_pending_requests.value = http.get("http1MaxPendingRequests") or MAX_U32
    thresholds.max_requests.value = http.get("http2MaxRequests") or MAX_U32
    thresholds.max_retries.value = http.get("maxRetries") or MAX_U32
    thresholds.track_remaining = True
    connect = _duration(tcp.get("connectTimeout"))
    if connect is not None:
        cluster.connect_timeout.CopyFrom(connect)
    keepalive = tcp.get("tcpKeepalive")
    if keepalive is not None:
        socket = cluster.upstream_connection_options.tcp_keepalive
        if keepalive.get("probes"):
            socket.keepalive_probes.value = keepalive["probes"]
        for field, target in (("time", "keepalive_time"), ("interval", "keepalive_interval")):
            seconds = _seconds(keepalive.get(field))
            if seconds is not None:
                getattr(socket, target).value = max(1, round(seconds))
    common = http_options.common_http_protocol_options
    if http.get("maxRequestsPerConnection"):
        common.max_requests_per_connection.value = http["maxRequestsPerConnection"]
    idle = _duration(http.get("idleTimeout"))
    if idle is not None:
        common.idle_timeout.CopyFrom(idle)
    lifetime = _duration(tcp.get("maxConnectionDuration"))
    if lifetime is not None:
        common.max_connection_duration.CopyFrom(lifetime)


def max_concurrent_streams(pool: Settings | None) -> int | None:
    value = ((pool or {}).get("http") or {}).get("maxConcurrentStreams")
    return int(value) if value else None


def uses_client_protocol(pool: Settings | None) -> bool:
    return ((pool or {}).get("http") or {}).get("useClientProtocol") is True


# ---------------------------------------------------------------------------
# Outlier detection


def apply_outlier_detection(cluster: Any, outlier: Settings | None) -> None:
    if outlier is None:
        return
    out = cluster.outlier_detection
    out.enforcing_success_rate.value = 0
    if outlier.get("consecutiveErrors"):
        # Deprecated: Istio counts only gateway errors (502, 503, 504) for it.
        out.consecutive_gateway_failure.value = outlier["consecutiveErrors"]
        out.enforcing_consecutive_gateway_failure.value = 100
        out.enforcing_consecutive_5xx.value = 0
    for field, count, enforcing in (
        ("consecutive5xxErrors", "consecutive_5xx", "enforcing_consecutive_5xx"),
        (
            "consecutiveGatewayErrors",
            "consecutive_gateway_failure",
            "enforcing_consecutive_gateway_failure",
        ),
    ):
        value = outlier.get(field)
        if value is not None:
            getattr(out, count).value = value
            getattr(out, enforcing).value = 100 if value > 0 else 0
    for field, target in (("interval", "interval"), ("baseEjectionTime", "base_ejection_time")):
        value = _duration(outlier.get(field))
        if value is not None:
            getattr(out, target).CopyFrom(value)
    if outlier.get("maxEjectionPercent"):
        out.max_ejection_percent.value = outlier["maxEjectionPercent"]
    if outlier.get("splitExternalLocalOriginErrors"):
        out.split_external_local_origin_errors = True
        failures = outlier.get("consecutiveLocalOriginFailures") or 0
        if failures > 0:
            out.consecutive_local_origin_failure.value = failures
            out.enforcing_consecutive_local_origin_failure.value = 100
        out.enforcing_local_origin_success_rate.value = 0
    # Istio turns Envoy's panic mode (50 %) off: with few pods, ejecting one
    # would otherwise send traffic back to all of them.
    cluster.common_lb_config.healthy_panic_threshold.value = float(
        outlier.get("minHealthPercent") or 0
    )
