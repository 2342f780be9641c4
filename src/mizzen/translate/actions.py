"""What an Istio ``HTTPRoute`` does once matched, as Envoy route fields.

Covers destinations (single or weighted), redirect, direct response, rewrite,
timeout, retries, fault injection, header operations and mirroring, with
Istio's defaults where the VirtualService says nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as route_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.type.v3 import percent_pb2

from mizzen.api.resources import (
    Destination,
    HeaderOperations,
    Headers,
    HTTPDirectResponse,
    HTTPFaultInjection,
    HTTPRedirect,
    HTTPRetry,
    HTTPRewrite,
    HTTPRouteDestination,
)
from mizzen.model.snapshot import MeshService, MeshSnapshot
from mizzen.translate.filters import duration, pack
from mizzen.translate.lookup import resolve_host
from mizzen.translate.names import outbound_cluster

# Istio's retry policy for routes that do not declare one.
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
DEFAULT_RETRY_ATTEMPTS = 2
DEFAULT_RETRIABLE_CODES = (503,)
HOST_SELECTION_RETRY_ATTEMPTS = 5
PREVIOUS_HOSTS_PREDICATE = "envoy.retry_host_predicates.previous_hosts"

REDIRECT_CODES = {
    301: route_pb2.RedirectAction.MOVED_PERMANENTLY,
    302: route_pb2.RedirectAction.FOUND,
    303: route_pb2.RedirectAction.SEE_OTHER,
    307: route_pb2.RedirectAction.TEMPORARY_REDIRECT,
    308: route_pb2.RedirectAction.PERMANENT_REDIRECT,
}

GRPC_STATUS = {
    name: code
    for code, name in enumerate(
        [
            "OK",
            "CANCELLED",
            "UNKNOWN",
            "INVALID_ARGUMENT",
            "DEADLINE_EXCEEDED",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
            "UNAUTHENTICATED",
        ]
    )
}


def destination_port(service: MeshService | None, given: int | None, listener_port: int) -> int:
    """The service port a destination means when it does not say."""
    if given is not None:
        return given
    if service is None:
        return listener_port
    if len(service.ports) == 1 or service.port(listener_port) is None:
        return service.ports[0].port if service.ports else listener_port
    return listener_port


def destination_cluster(
    snapshot: MeshSnapshot, dest: Destination, namespace: str, listener_port: int
) -> tuple[str, str, int]:
    """``(cluster, hostname, port)`` of a destination written in ``namespace``."""
    host = resolve_host(snapshot, dest.host, namespace)
    port = destination_port(snapshot.service(host), dest.port, listener_port)
    return outbound_cluster(port, host, dest.subset), host, port


def split_weights(weights: Sequence[int | None]) -> list[int]:
    """Weights summing to 100: missing ones are 0; none given splits evenly."""
    given = [w or 0 for w in weights]
    if sum(given) == 0:
        given = [1] * len(weights)
    total = sum(given)
    scaled = [w * 100 // total for w in given]
    # Hand the rounding remainder to the first non-zero destinations.
    for index in [i for i, w in enumerate(given) if w][: 100 - sum(scaled)]:
        scaled[index] += 1
    return scaled


def fractional_percent(percentage: float) -> Any:
    return percent_pb2.FractionalPercent(
        numerator=round(percentage * 10_000), denominator=percent_pb2.FractionalPercent.MILLION
    )


def header_values(ops: HeaderOperations) -> list[Any]:
    overwrite = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    append = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
    return [
        base_pb2.HeaderValueOption(header={"key": k, "value": v}, append_action=action)
        for items, action in ((ops.set, overwrite), (ops.add, append))
        for k, v in items.items()
    ]


def apply_headers(target: Any, headers: Headers | None) -> None:
    """Header operations onto a Route or a weighted ClusterWeight."""
    if headers is None:
        return
    if headers.request is not None:
        target.request_headers_to_add.extend(header_values(headers.request))
        target.request_headers_to_remove.extend(headers.request.remove)
    if headers.response is not None:
        target.response_headers_to_add.extend(header_values(headers.response))
        target.response_headers_to_remove.extend(headers.response.remove)


def retry_policy(retries: HTTPRetry | None) -> Any | None:
    if retries is not None and retries.attempts == 0:
        return None
    policy = route_pb2.RetryPolicy(
        retry_on=DEFAULT_RETRY_ON,
        num_retries={"value": DEFAULT_RETRY_ATTEMPTS},
        retriable_status_codes=DEFAULT_RETRIABLE_CODES,
        retry_host_predicate=[
            route_pb2.RetryPolicy.RetryHostPredicate(
                name=PREVIOUS_HOSTS_PREDICATE,
                typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate()),
            )
        ],
        host_selection_retry_max_attempts=HOST_SELECTION_RETRY_ATTEMPTS,
    )
    if retries is None:
        return policy
    policy.num_retries.value = retries.attempts
    if retries.per_try_timeout is not None:
        policy.per_try_timeout.CopyFrom(duration(retries.per_try_timeout))
    if retries.retry_on:
        _set_retry_on(policy, retries.retry_on)
    return policy


def _set_retry_on(policy: Any, retry_on: str) -> None:
    # Istio lets status codes sit among the retry conditions ("5xx,503").
    items = [item.strip() for item in retry_on.split(",") if item.strip()]
    codes = [int(item) for item in items if item.isdigit()]
    conditions = [item for item in items if not item.isdigit()]
    if codes and "retriable-status-codes" not in conditions:
        conditions.append("retriable-status-codes")
    policy.retry_on = ",".join(conditions)
    del policy.retriable_status_codes[:]
    policy.retriable_status_codes.extend(codes)


def fault_config(fault: HTTPFaultInjection) -> Any:
    out = fault_pb2.HTTPFault()
    if fault.delay is not None:
        out.delay.fixed_delay.CopyFrom(duration(fault.delay.fixed_delay))
        out.delay.percentage.CopyFrom(fractional_percent(fault.delay.percentage))
    if fault.abort is not None:
        abort = fault.abort
        if abort.grpc_status is not None:
            out.abort.grpc_status = GRPC_STATUS.get(abort.grpc_status.upper(), 2)
        else:
            out.abort.http_status = abort.http_status or 503
        out.abort.percentage.CopyFrom(fractional_percent(abort.percentage))
    return out


def redirect_action(redirect: HTTPRedirect) -> Any:
    out = route_pb2.RedirectAction(response_code=REDIRECT_CODES.get(redirect.redirect_code, 0))
    if redirect.uri:
        out.path_redirect = redirect.uri
    if redirect.authority:
        out.host_redirect = redirect.authority
    if redirect.port is not None:
        out.port_redirect = redirect.port
    if redirect.scheme:
        out.scheme_redirect = redirect.scheme
    return out


def direct_response_action(direct: HTTPDirectResponse) -> Any:
    out = route_pb2.DirectResponseAction(status=direct.status)
    if direct.body is not None:
        out.body.inline_string = direct.body
    return out


def apply_rewrite(action: Any, rewrite: HTTPRewrite, whole_path: bool) -> None:
    """``whole_path``: the match was not a prefix, so there is no prefix to swap."""
    if rewrite.uri_regex is not None:
        action.regex_rewrite.pattern.regex = rewrite.uri_regex[0]
        action.regex_rewrite.substitution = rewrite.uri_regex[1]
    elif rewrite.uri and whole_path:
        # Envoy refuses prefix_rewrite on regex matches; a whole-path regex
        # rewrite serves exact and regex matches alike (the query is kept).
        action.regex_rewrite.pattern.regex = "^.*$"
        action.regex_rewrite.substitution = rewrite.uri
    elif rewrite.uri:
        action.prefix_rewrite = rewrite.uri
    if rewrite.authority:
        action.host_rewrite_literal = rewrite.authority


def set_clusters(
    action: Any, route: Any, targets: Sequence[tuple[str, HTTPRouteDestination]]
) -> None:
    """One cluster, or weighted clusters carrying per-destination headers."""
    weights = split_weights([t[1].weight for t in targets])
    kept = [(t, w) for t, w in zip(targets, weights, strict=True) if w > 0]
    if len(kept) == 1:
        action.cluster = kept[0][0][0]
        apply_headers(route, kept[0][0][1].headers)
        return
    for (cluster, dest), weight in kept:
        entry = action.weighted_clusters.clusters.add(name=cluster)
        entry.weight.value = weight
        apply_headers(entry, dest.headers)
