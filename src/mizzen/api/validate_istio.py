"""istiod's semantic layer: rules the CRD schema cannot express.

These run only on specs that already passed the schema layer
(``validate_crd``), so shapes and types can be trusted here. The rules follow
Istio's documented behaviour (1.30); messages are ours.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import re2

from mizzen.api.validate_crd import (
    Problems,
    duration_nanos,
    index,
    join,
    key,
    parse_duration,
)
from mizzen.api.validate_names import (
    check_labels,
    dns_label_problem,
    dns_subdomain_problem,
    fqdn_problem,
    is_cidr,
    is_ip,
    wildcard_domain_problem,
)

Spec = Mapping[str, Any]

PROTOCOLS = (
    "HTTP",
    "HTTPS",
    "GRPC",
    "GRPC-WEB",
    "HTTP2",
    "HTTP_PROXY",
    "MONGO",
    "MYSQL",
    "REDIS",
    "TCP",
    "TLS",
    "UDP",
    "HBONE",
)
_TLS_PROTOCOLS = ("HTTPS", "TLS")
_RETRY_ON = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "envoy-ratelimited",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)
_REDIRECT_CODES = (301, 302, 303, 307, 308)


def _items(spec: Spec, name: str) -> list[Any]:
    value = spec.get(name)
    return value if isinstance(value, list) else []


def _check_port(number: Any, path: str, out: Problems) -> None:
    if number is not None and not 1 <= number <= 65535:
        out.append((path, f"must be between 1 and 65535, got {number}"))


def _check_percent(value: Any, path: str, out: Problems) -> None:
    if value is not None and not 0 <= value <= 100:
        out.append((path, f"must be between 0 and 100, got {value}"))


def _check_export_to(values: list[Any], path: str, out: Problems) -> None:
    for i, ns in enumerate(values):
        if ns in (".", "*", "~"):
            continue
        problem = dns_label_problem(ns)
        if problem:
            out.append((index(path, i), f"must be '.', '*' or a namespace name: {problem}"))
    if "~" in values and len(values) > 1:
        out.append((path, "'~' (export to nobody) cannot be combined with other entries"))
    if len(set(values)) != len(values):
        out.append((path, "duplicate entries"))


def _check_regex(pattern: str, path: str, out: Problems) -> None:
    if pattern == "":
        out.append((path, "regex must not be empty"))
        return
    try:
        re2.compile(pattern)
    except re2.error as exc:
        out.append((path, f"invalid RE2 regex {pattern!r}: {_re2_reason(exc)}"))


def _re2_reason(exc: Exception) -> str:
    reason = exc.args[0] if exc.args else str(exc)
    return reason.decode() if isinstance(reason, bytes) else str(reason)


def _check_string_match(match: Any, path: str, out: Problems, *, allow_empty: bool) -> None:
    if not match:
        return
    if "prefix" in match and match["prefix"] == "" and not allow_empty:
        out.append((join(path, "prefix"), "prefix must not be empty"))
    if "regex" in match and match["regex"] is not None:
        _check_regex(match["regex"], join(path, "regex"), out)


def _check_duration(value: Any, path: str, out: Problems) -> None:
    if value is None:
        return
    seconds = parse_duration(value)
    if seconds is None or seconds < 0.001:
        out.append((path, "must be a duration of at least 1ms"))


def _check_header_name(name: str, path: str, out: Problems) -> None:
    if name == "":
        out.append((path, "header name must not be empty"))
    elif name != name.lower():
        out.append((path, f"header name {name!r} must be lower-case"))


# ---------------------------------------------------------------------------
# VirtualService


def _check_gateway_ref(ref: str, path: str, out: Problems) -> None:
    if ref == "mesh":
        return
    ns, slash, name = ref.rpartition("/")
    if slash:
        problem = dns_label_problem(ns) if ns else "namespace before '/' is empty"
        if problem:
            out.append((path, f"invalid gateway namespace in {ref!r}: {problem}"))
            return
    # "name" or "name.namespace" (the older short form) or "ns/name"
    # '~' appears in the names istiod generates for Kubernetes Gateways; a
    # reference to one is legal syntax (the analyzer warns about it).
    problem = dns_subdomain_problem(name.replace("~", "-")) if name else "gateway name is empty"
    if problem:
        out.append((path, f"invalid gateway reference {ref!r}: {problem}"))


def _check_destination(dest: Mapping[str, Any], path: str, out: Problems) -> None:
    host = dest.get("host", "")
    if host == "":
        out.append((join(path, "host"), "required"))
    elif host == "*":
        out.append((join(path, "host"), "destination host cannot be '*'"))
    else:
        problem = wildcard_domain_problem(host)
        if problem:
            out.append((join(path, "host"), problem))
    subset = dest.get("subset")
    if subset:
        problem = dns_label_problem(subset)
        if problem:
            out.append((join(path, "subset"), f"invalid subset name: {problem}"))
    port = dest.get("port") or {}
    _check_port(port.get("number"), join(join(path, "port"), "number"), out)


def _check_weights(routes: list[Any], path: str, out: Problems) -> None:
    total = 0
    for i, route in enumerate(routes):
        weight = route.get("weight")
        if weight is None:
            continue
        if weight < 0:
            out.append((join(index(path, i), "weight"), f"must not be negative, got {weight}"))
        total += weight
    # Istio normalises relative weights, but all-zero leaves nothing to send to.
    if len(routes) > 1 and all(r.get("weight") is not None for r in routes) and total == 0:
        out.append((path, "total weight of the destinations must be greater than 0"))


def _check_header_ops(headers: Any, path: str, out: Problems) -> None:
    for side in ("request", "response"):
        ops = (headers or {}).get(side) or {}
        for op in ("set", "add"):
            for name in ops.get(op) or {}:
                if name == "":
                    out.append((join(join(path, side), op), "header name must not be empty"))
        for i, name in enumerate(ops.get("remove") or []):
            if name == "":
                out.append((index(join(join(path, side), "remove"), i), "must not be empty"))


def _check_http_match(match: Mapping[str, Any], path: str, out: Problems) -> None:
    for field in ("uri", "scheme", "method", "authority"):
        _check_string_match(match.get(field), join(path, field), out, allow_empty=False)
    for field in ("headers", "withoutHeaders"):
        for name, value in (match.get(field) or {}).items():
            where = key(join(path, field), name)
            _check_header_name(name, where, out)
            _check_string_match(value, where, out, allow_empty=True)
    for name, value in (match.get("queryParams") or {}).items():
        _check_string_match(value, key(join(path, "queryParams"), name), out, allow_empty=True)
    _check_port(match.get("port"), join(path, "port"), out)
    check_labels(match.get("sourceLabels"), join(path, "sourceLabels"), out)
    for i, ref in enumerate(match.get("gateways") or []):
        _check_gateway_ref(ref, index(join(path, "gateways"), i), out)


def _check_http_route(route: Mapping[str, Any], path: str, out: Problems) -> None:
    has_route = bool(route.get("route"))
    redirect = route.get("redirect")
    direct = route.get("directResponse")
    delegate = route.get("delegate")
    given = [
        n
        for n, v in (
            ("route", has_route),
            ("redirect", redirect),
            ("directResponse", direct),
            ("delegate", delegate),
        )
        if v
    ]
    if not given:
        out.append((path, "needs one of route, redirect, directResponse or delegate"))
    elif len(given) > 1:
        out.append((path, f"{' and '.join(given)} cannot be used together; keep one"))
    for i, match in enumerate(route.get("match") or []):
        _check_http_match(match, index(join(path, "match"), i), out)
    routes = route.get("route") or []
    for i, dest in enumerate(routes):
        where = index(join(path, "route"), i)
        _check_destination(dest["destination"], join(where, "destination"), out)
        _check_header_ops(dest.get("headers"), join(where, "headers"), out)
    _check_weights(routes, join(path, "route"), out)
    _check_header_ops(route.get("headers"), join(path, "headers"), out)
    if redirect:
        where = join(path, "redirect")
        if not any(
            redirect.get(f)
            for f in ("uri", "authority", "scheme", "port", "derivePort", "prefixRewrite")
        ):
            out.append((where, "must set at least one of uri, authority, scheme or port"))
        code = redirect.get("redirectCode")
        if code is not None and code not in _REDIRECT_CODES:
            out.append(
                (join(where, "redirectCode"), f"must be one of 301, 302, 303, 307, 308; got {code}")
            )
        _check_port(redirect.get("port"), join(where, "port"), out)
        if route.get("rewrite"):
            out.append((join(path, "rewrite"), "cannot be combined with redirect"))
    if direct:
        status = direct["status"]
        if not 200 <= status <= 599:
            out.append(
                (
                    join(join(path, "directResponse"), "status"),
                    f"must be between 200 and 599, got {status}",
                )
            )
    rewrite = route.get("rewrite")
    if rewrite:
        where = join(path, "rewrite")
        regex = rewrite.get("uriRegexRewrite")
        if rewrite.get("uri") and regex:
            out.append((where, "only one of uri and uriRegexRewrite may be set"))
        if not (rewrite.get("uri") or rewrite.get("authority") or regex):
            out.append((where, "must set uri, authority or uriRegexRewrite"))
        if regex:
            _check_regex(
                regex.get("match") or "", join(join(where, "uriRegexRewrite"), "match"), out
            )
    retries = route.get("retries")
    if retries:
        where = join(path, "retries")
        attempts = retries.get("attempts")
        if attempts is not None and attempts < 0:
            out.append((join(where, "attempts"), f"must not be negative, got {attempts}"))
        for item in (retries.get("retryOn") or "").split(","):
            policy = item.strip()
            if (
                policy
                and policy not in _RETRY_ON
                and not (policy.isdigit() and 100 <= int(policy) <= 599)
            ):
                out.append((join(where, "retryOn"), f"unknown retry condition {policy!r}"))
        _check_duration(retries.get("perTryTimeout"), join(where, "perTryTimeout"), out)
    _check_duration(route.get("timeout"), join(path, "timeout"), out)
    fault = route.get("fault")
    if fault is not None:
        where = join(path, "fault")
        if not fault.get("delay") and not fault.get("abort"):
            out.append((where, "must set delay or abort"))
        delay = fault.get("delay")
        if delay:
            d = join(where, "delay")
            if not (delay.get("fixedDelay") or delay.get("exponentialDelay")):
                out.append((join(d, "fixedDelay"), "required"))
            _check_percent(
                (delay.get("percentage") or {}).get("value"),
                join(join(d, "percentage"), "value"),
                out,
            )
            _check_percent(delay.get("percent"), join(d, "percent"), out)
        abort = fault.get("abort")
        if abort:
            a = join(where, "abort")
            status = abort.get("httpStatus")
            if status is not None and not 200 <= status <= 599:
                out.append((join(a, "httpStatus"), f"must be between 200 and 599, got {status}"))
            if not any(
                abort.get(f) is not None for f in ("httpStatus", "grpcStatus", "http2Error")
            ):
                out.append((join(a, "httpStatus"), "required (or grpcStatus)"))
            _check_percent(
                (abort.get("percentage") or {}).get("value"),
                join(join(a, "percentage"), "value"),
                out,
            )
    mirror = route.get("mirror")
    if mirror:
        _check_destination(mirror, join(path, "mirror"), out)
    for i, m in enumerate(route.get("mirrors") or []):
        where = index(join(path, "mirrors"), i)
        _check_destination(m["destination"], join(where, "destination"), out)
        _check_percent(
            (m.get("percentage") or {}).get("value"), join(join(where, "percentage"), "value"), out
        )
    if mirror and route.get("mirrors"):
        out.append((join(path, "mirrors"), "cannot be combined with mirror"))
    _check_percent(
        (route.get("mirrorPercentage") or {}).get("value"),
        join(join(path, "mirrorPercentage"), "value"),
        out,
    )
    _check_percent(route.get("mirrorPercent"), join(path, "mirrorPercent"), out)
    cors = route.get("corsPolicy") or {}
    for i, origin in enumerate(cors.get("allowOrigins") or []):
        _check_string_match(
            origin, index(join(join(path, "corsPolicy"), "allowOrigins"), i), out, allow_empty=False
        )


def _check_l4_routes(routes: list[Any], path: str, out: Problems) -> None:
    if not routes:
        out.append((path, "at least one route destination is required"))
    for i, dest in enumerate(routes):
        _check_destination(dest["destination"], join(index(path, i), "destination"), out)
    _check_weights(routes, path, out)


def _check_l4_match(match: Mapping[str, Any], path: str, out: Problems) -> None:
    for i, subnet in enumerate(match.get("destinationSubnets") or []):
        if not is_cidr(subnet):
            out.append(
                (
                    index(join(path, "destinationSubnets"), i),
                    f"{subnet!r} is not an IP address or CIDR",
                )
            )
    _check_port(match.get("port"), join(path, "port"), out)
    check_labels(match.get("sourceLabels"), join(path, "sourceLabels"), out)
    for i, ref in enumerate(match.get("gateways") or []):
        _check_gateway_ref(ref, index(join(path, "gateways"), i), out)


def check_virtual_service(spec: Spec) -> Problems:
    out: Problems = []
    hosts = _items(spec, "hosts")
    gateways = _items(spec, "gateways")
    # A VirtualService without hosts is a delegate, only reachable from a parent.
    if not hosts:
        if gateways:
            out.append(
                (
                    "spec.hosts",
                    "required unless this is a delegate VirtualService (which has no gateways)",
                )
            )
        if spec.get("tcp") or spec.get("tls"):
            out.append(("spec.hosts", "required when tcp or tls routes are given"))
    applies_to_mesh = not gateways or "mesh" in gateways
    for i, host in enumerate(hosts):
        where = index("spec.hosts", i)
        if host == "*" and applies_to_mesh:
            out.append(
                (where, "'*' is not allowed for the mesh gateway; list hosts or bind to a gateway")
            )
            continue
        if "/" in host:
            out.append((where, f"{host!r}: hosts are names, not namespace/name references"))
            continue
        if is_ip(host):
            continue
        problem = wildcard_domain_problem(host)
        if problem:
            out.append((where, problem))
    if len(set(hosts)) != len(hosts):
        out.append(("spec.hosts", "duplicate hosts"))
    for i, ref in enumerate(gateways):
        _check_gateway_ref(ref, index("spec.gateways", i), out)
    if not (spec.get("http") or spec.get("tcp") or spec.get("tls")):
        out.append(("spec", "needs at least one of http, tcp or tls routes"))
    for i, route in enumerate(_items(spec, "http")):
        _check_http_route(route, index("spec.http", i), out)
    for i, route in enumerate(_items(spec, "tcp")):
        where = index("spec.tcp", i)
        for j, match in enumerate(route.get("match") or []):
            _check_l4_match(match, index(join(where, "match"), j), out)
        _check_l4_routes(route.get("route") or [], join(where, "route"), out)
    for i, route in enumerate(_items(spec, "tls")):
        where = index("spec.tls", i)
        matches = route.get("match") or []
        if not matches:
            out.append((join(where, "match"), "at least one match is required"))
        for j, match in enumerate(matches):
            m = index(join(where, "match"), j)
            sni = match.get("sniHosts") or []
            if not sni:
                out.append((join(m, "sniHosts"), "at least one SNI host is required"))
            for k, host in enumerate(sni):
                problem = wildcard_domain_problem(host)
                if problem:
                    out.append((index(join(m, "sniHosts"), k), problem))
            _check_l4_match(match, m, out)
        _check_l4_routes(route.get("route") or [], join(where, "route"), out)
    _check_export_to(_items(spec, "exportTo"), "spec.exportTo", out)
    return out


# ---------------------------------------------------------------------------
# DestinationRule
#
# istiod's validateTrafficPolicy and what it calls (validateOutlierDetection,
# validateConnectionPool, validateLoadBalancer, ValidateLocalityLbSetting,
# ValidateTLS, validatePortTrafficPolicies, validateTunnelSettings). What
# istiod only warns about (consecutiveErrors, minimumRingSize, failover
# without outlierDetection) is accepted here; what it accepts is accepted
# even where a stricter rule would be tempting (duplicate or unset port
# numbers in portLevelSettings, certificates next to ISTIO_MUTUAL, repeated
# cookie attributes, keepalives with only one of their settings).

# The fields of a TrafficPolicy that count as "set" (retryBudget is counted
# too: a policy holding only a retry budget is not empty).
_POLICY_FIELDS = (
    "loadBalancer",
    "connectionPool",
    "outlierDetection",
    "tls",
    "portLevelSettings",
    "tunnel",
    "proxyProtocol",
    "retryBudget",
)
_PORT_POLICY_FIELDS = ("loadBalancer", "connectionPool", "outlierDetection", "tls")
_INT32_MAX = 2**31 - 1
_MS = 1_000_000  # nanoseconds
# Maglev tables must be smaller than this (Envoy's limit, kept by istiod).
_MAGLEV_MAX = 5000011
# Node labels that mean "region", "zone", "subzone" to Istio's locality.
_TOPOLOGY_LABELS = (
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
)


def _given(obj: Mapping[str, Any], name: str) -> bool:
    # An empty message (`{}`) is set; an empty list is not (protobuf does not
    # tell an empty repeated field from an absent one).
    value = obj.get(name)
    return value is not None and value != []


def _nanos(value: str) -> int | None:
    # Go's time.ParseDuration, which refuses what overflows an int64.
    nanos = duration_nanos(value)
    return nanos if nanos is not None and -(2**63) <= nanos < 2**63 else None


def _check_ms_duration(value: Any, path: str, out: Problems, *, zero_ok: bool = False) -> None:
    """istiod's ValidateDuration: at least 1ms, in whole milliseconds.
    ``zero_ok``: anything under a millisecond either way means "none" and
    is not checked (tcp.idleTimeout)."""
    if value is None:
        return
    nanos = _nanos(value)
    if nanos is None:
        out.append((path, f"invalid duration {value!r}; use a value like 10s, 1.5s, 100ms or 1m"))
        return
    if zero_ok and abs(nanos) < _MS:
        return
    if nanos < _MS:
        hint = "; use 0s to turn it off" if zero_ok else ""
        out.append((path, f"duration must be at least 1ms, got {value!r}{hint}"))
    elif nanos % _MS:
        out.append(
            (
                path,
                f"only durations to ms precision are supported, got {value!r};"
                " round it to whole milliseconds",
            )
        )


def _check_parses_as_duration(value: Any, path: str, out: Problems) -> None:
    if value is not None and _nanos(value) is None:
        out.append((path, f"invalid duration {value!r}; use a value like 10s, 1.5s, 100ms or 1m"))


def _check_int32(value: Any, path: str, out: Problems, *, negative_ok: bool) -> None:
    if value is None:
        return
    if not negative_ok and value < 0:
        out.append((path, f"must not be negative, got {value}"))
    elif not -_INT32_MAX - 1 <= value <= _INT32_MAX:
        out.append((path, f"must fit in a 32-bit integer (at most {_INT32_MAX}), got {value}"))


def _check_outlier_detection(od: Mapping[str, Any], path: str, out: Problems) -> None:
    for name in ("interval", "baseEjectionTime"):
        _check_ms_duration(od.get(name), join(path, name), out)
    if (od.get("consecutiveLocalOriginFailures") or 0) > 0 and not od.get(
        "splitExternalLocalOriginErrors"
    ):
        out.append(
            (
                join(path, "consecutiveLocalOriginFailures"),
                "consecutive local origin failures is specified, but split external local"
                " origin errors is false; set splitExternalLocalOriginErrors: true, or remove"
                " consecutiveLocalOriginFailures",
            )
        )
    for name in ("maxEjectionPercent", "minHealthPercent"):
        _check_percent(od.get(name), join(path, name), out)
    # Deprecated, and only a warning to istiod, even when negative.
    _check_int32(
        od.get("consecutiveErrors"), join(path, "consecutiveErrors"), out, negative_ok=True
    )


def _check_connection_pool(pool: Mapping[str, Any], path: str, out: Problems) -> None:
    http, tcp = pool.get("http"), pool.get("tcp")
    if http is None and tcp is None:
        out.append((path, "connection pool must have at least one field: set tcp or http"))
        return
    if http is not None:
        where = join(path, "http")
        for name in (
            "http1MaxPendingRequests",
            "http2MaxRequests",
            "maxRequestsPerConnection",
            "maxRetries",
            "maxConcurrentStreams",
        ):
            _check_int32(http.get(name), join(where, name), out, negative_ok=False)
        _check_ms_duration(http.get("idleTimeout"), join(where, "idleTimeout"), out)
        if http.get("h2UpgradePolicy") == "UPGRADE" and http.get("useClientProtocol"):
            out.append(
                (
                    join(where, "useClientProtocol"),
                    "use client protocol must not be true when h2UpgradePolicy is UPGRADE;"
                    " drop one of the two",
                )
            )
    if tcp is not None:
        where = join(path, "tcp")
        _check_int32(
            tcp.get("maxConnections"), join(where, "maxConnections"), out, negative_ok=False
        )
        for name in ("connectTimeout", "maxConnectionDuration"):
            _check_ms_duration(tcp.get(name), join(where, name), out)
        _check_ms_duration(tcp.get("idleTimeout"), join(where, "idleTimeout"), out, zero_ok=True)
        keepalive = tcp.get("tcpKeepalive") or {}
        for name in ("time", "interval"):
            _check_ms_duration(keepalive.get(name), join(join(where, "tcpKeepalive"), name), out)


def _is_prime(n: int) -> bool:
    # Envoy's test (istiod copies it): 1, 2 and 3 count as prime.
    if 0 < n < 4:
        return True
    if n % 2 == 0:
        return False
    return all(n % factor for factor in range(3, math.isqrt(n) + 1, 2))


def _check_consistent_hash(ch: Mapping[str, Any], path: str, out: Problems) -> None:
    cookie = ch.get("httpCookie")
    if cookie is not None:
        if cookie.get("name", "") == "":
            out.append((join(join(path, "httpCookie"), "name"), "name required for HttpCookie"))
        _check_parses_as_duration(cookie.get("ttl"), join(join(path, "httpCookie"), "ttl"), out)
    if ch.get("minimumRingSize") and (
        ch.get("ringHash") is not None or ch.get("maglev") is not None
    ):
        algorithm = "ringHash" if ch.get("ringHash") is not None else "maglev"
        out.append(
            (
                join(path, "minimumRingSize"),
                f"only one of minimumRingSize or maglev/ringHash can be specified, and {algorithm}"
                " is set; use ringHash.minimumRingSize instead",
            )
        )
    maglev = ch.get("maglev")
    if maglev is not None:
        where = join(join(path, "maglev"), "tableSize")
        size = maglev.get("tableSize") or 0
        if size == 0:
            out.append((where, "tableSize must be set for maglev (a prime number, e.g. 65537)"))
        elif size >= _MAGLEV_MAX:
            out.append((where, f"tableSize must be less than {_MAGLEV_MAX} for maglev, got {size}"))
        elif not _is_prime(size):
            out.append(
                (where, f"tableSize must be a prime number for maglev, got {size} (e.g. 65537)")
            )


def _locality_parts(locality: str) -> list[str]:
    # Go's strings.SplitN(locality, "/", 3): a subzone may itself hold '/'.
    return locality.split("/", 2)


def _locality_problem(localities: list[str]) -> tuple[int, str] | None:
    """istiod's validateLocalities: the first problem, in the given order,
    with the position of the locality it is about."""
    seen: dict[str, dict[str, set[str]]] = {}
    for i, locality in enumerate(localities):
        stars = locality.count("*")
        if stars and (stars > 1 or not locality.endswith("*")):
            return i, (
                f"locality {locality!r}: the wildcard '*' may appear once, as the whole last"
                " part, as in 'us-east/*'"
            )
        if "*" in seen:
            return i, f"locality {locality!r} overlaps with '*' listed before it"
        parts = _locality_parts(locality)
        if "" in parts:
            return i, (
                f"locality {locality!r} must not contain empty region/zone/subzone info;"
                " use region, region/zone or region/zone/subzone"
            )
        overlap = i, f"locality {locality!r} overlaps with a locality listed before it"
        region = parts[0]
        zones = seen.get(region)
        if len(parts) == 1:
            if zones is not None:
                return overlap
            seen[region] = {"*": {"*"}}
        elif len(parts) == 2:
            zone = parts[1]
            if zones is not None and ("*" in zones or zone in zones):
                return overlap
            seen.setdefault(region, {})[zone] = {"*"}
        else:
            zone, subzone = parts[1], parts[2]
            if zones is not None and "*" in zones:
                return overlap
            subzones = (zones or {}).get(zone)
            if subzones is not None and ("*" in subzones or subzone in subzones):
                return overlap
            seen.setdefault(region, {}).setdefault(zone, set()).add(subzone)
    return None


def _most_general_first(locality: str) -> tuple[int, int, str]:
    # A wildcard found before what it covers is an overlap to istiod; found
    # after, it is not. `distribute[].to` is a map, which istiod walks in a
    # random order, so it is checked in the order that finds every overlap.
    return (len(_locality_parts(locality)), 0 if locality.endswith("*") else 1, locality)


def _check_locality_lb(lb: Mapping[str, Any], path: str, out: Problems) -> None:
    distribute = lb.get("distribute") or []
    failover = lb.get("failover") or []
    priority = lb.get("failoverPriority") or []
    if distribute and failover:
        out.append((path, "can not simultaneously specify 'distribute' and 'failover'; use one"))
        return
    if failover:
        for i, label in enumerate(priority):
            if label in _TOPOLOGY_LABELS:
                out.append(
                    (
                        index(join(path, "failoverPriority"), i),
                        f"can not simultaneously set 'failover' and topology label {label!r} in"
                        " 'failoverPriority'; drop the label, or the failover list",
                    )
                )
    sources: list[str] = []
    for i, rule in enumerate(distribute):
        where = index(join(path, "distribute"), i)
        sources.append(rule.get("from", ""))
        targets = rule.get("to") or {}
        bad = [loc for loc, weight in targets.items() if not 1 <= weight <= 100]
        for loc in bad:
            out.append(
                (
                    key(join(where, "to"), loc),
                    f"locality weight must be in range [1, 100], got {targets[loc]}",
                )
            )
        total = sum(targets.values())
        if bad:
            continue
        if total != 100:
            out.append((join(where, "to"), f"total locality weight {total} != 100; make it 100"))
            continue
        ordered = sorted(targets, key=_most_general_first)
        found = _locality_problem(ordered)
        if found:
            out.append((key(join(where, "to"), ordered[found[0]]), found[1]))
    found = _locality_problem(sources)
    if found:
        out.append((join(index(join(path, "distribute"), found[0]), "from"), found[1]))
    for i, rule in enumerate(failover):
        where = index(join(path, "failover"), i)
        src, dst = rule.get("from", ""), rule.get("to", "")
        if src == dst:
            out.append(
                (
                    where,
                    f"locality lb failover settings must specify different regions, got {src!r}",
                )
            )
        for name, region in (("from", src), ("to", dst)):
            if "/" in region:
                out.append(
                    (
                        join(where, name),
                        f"locality lb failover only specify region: {region!r} names a zone;"
                        " use the region alone",
                    )
                )
            if "*" in region:
                out.append(
                    (
                        join(where, name),
                        f"locality lb failover region should not contain '*' wildcard: {region!r}",
                    )
                )


def _check_load_balancer(lb: Mapping[str, Any], path: str, out: Problems) -> None:
    if lb.get("consistentHash") is not None:
        _check_consistent_hash(lb["consistentHash"], join(path, "consistentHash"), out)
    if lb.get("localityLbSetting") is not None:
        _check_locality_lb(lb["localityLbSetting"], join(path, "localityLbSetting"), out)
    warmup = lb.get("warmup")
    if warmup is not None:
        where = join(path, "warmup")
        _check_ms_duration(warmup.get("duration"), join(where, "duration"), out)
        aggression = warmup.get("aggression")
        if aggression is not None and aggression < 1:
            out.append(
                (
                    join(where, "aggression"),
                    f"aggression should be greater than or equal to 1, got {aggression}"
                    " (1 is a linear ramp)",
                )
            )


def _check_client_tls(tls: Mapping[str, Any], path: str, out: Problems) -> None:
    mode = tls.get("mode", "DISABLE")
    credential = tls.get("credentialName", "")
    if tls.get("insecureSkipVerify") and mode in ("SIMPLE", "MUTUAL"):
        # In MUTUAL mode credentialName also carries the client certificate.
        names = ("caCertificates", "credentialName") if mode == "SIMPLE" else ("caCertificates",)
        for name in (*names, "subjectAltNames"):
            if _given(tls, name) and tls[name] != "":
                out.append(
                    (
                        join(path, name),
                        f"cannot specify {name} when insecureSkipVerify is set true:"
                        " the server is not verified; drop one of the two",
                    )
                )
    if mode in ("SIMPLE", "MUTUAL") and credential:
        for name in ("clientCertificate", "privateKey", "caCertificates", "caCrl"):
            if tls.get(name):
                out.append(
                    (
                        join(path, name),
                        f"cannot specify client certificates or CA certificate or CA CRL if"
                        f" credentialName is set (the secret {credential!r} supplies them);"
                        f" drop {name} or credentialName",
                    )
                )
        return
    if mode == "MUTUAL":
        for name in ("clientCertificate", "privateKey"):
            if not tls.get(name):
                out.append(
                    (join(path, name), "required for MUTUAL mode unless credentialName is set")
                )


def _check_tunnel(tunnel: Mapping[str, Any], path: str, out: Problems) -> None:
    protocol = tunnel.get("protocol", "")
    if protocol not in ("", "CONNECT", "POST"):
        out.append(
            (
                join(path, "protocol"),
                f'tunnel protocol must be "CONNECT" or "POST", got {protocol!r}',
            )
        )
    host = tunnel.get("targetHost", "")
    if not is_ip(host):
        problem = fqdn_problem(host)
        tld = host.rpartition(".")[2]
        # Go's strconv.Atoi: a signed decimal that fits in 64 bits.
        if problem is None and re.fullmatch(r"[+-]?[0-9]+", tld) and abs(int(tld)) < 2**63:
            problem = f"top level domain {tld!r} cannot be all-numeric"
        if problem:
            out.append(
                (
                    join(path, "targetHost"),
                    f"tunnel target host must be valid FQDN or IP address: {problem}",
                )
            )
    _check_port(tunnel.get("targetPort"), join(path, "targetPort"), out)


def _check_policy_parts(policy: Mapping[str, Any], path: str, out: Problems) -> None:
    """What a TrafficPolicy shares with a PortTrafficPolicy."""
    if policy.get("outlierDetection") is not None:
        _check_outlier_detection(policy["outlierDetection"], join(path, "outlierDetection"), out)
    if policy.get("connectionPool") is not None:
        _check_connection_pool(policy["connectionPool"], join(path, "connectionPool"), out)
    if policy.get("loadBalancer") is not None:
        _check_load_balancer(policy["loadBalancer"], join(path, "loadBalancer"), out)
    if policy.get("tls") is not None:
        _check_client_tls(policy["tls"], join(path, "tls"), out)


def _check_traffic_policy(policy: Mapping[str, Any], path: str, out: Problems) -> None:
    if not any(_given(policy, name) for name in _POLICY_FIELDS):
        out.append(
            (
                path,
                "traffic policy must have at least one field: set one of"
                f" {', '.join(_POLICY_FIELDS)}",
            )
        )
        return
    if policy.get("tunnel") is not None and policy.get("proxyProtocol") is not None:
        out.append((path, "tunnel and proxyProtocol must not be set together; drop one"))
    _check_policy_parts(policy, path, out)
    if policy.get("tunnel") is not None:
        _check_tunnel(policy["tunnel"], join(path, "tunnel"), out)
    retry_budget = policy.get("retryBudget") or {}
    _check_parses_as_duration(
        retry_budget.get("budgetInterval"), join(join(path, "retryBudget"), "budgetInterval"), out
    )
    for i, port_policy in enumerate(policy.get("portLevelSettings") or []):
        where = index(join(path, "portLevelSettings"), i)
        if port_policy.get("port") is None:
            out.append(
                (
                    join(where, "port"),
                    "portTrafficPolicy must have valid port: set port.number to the service port",
                )
            )
        if not any(_given(port_policy, name) for name in _PORT_POLICY_FIELDS):
            out.append(
                (
                    where,
                    "port traffic policy must have at least one field: set one of"
                    f" {', '.join(_PORT_POLICY_FIELDS)}",
                )
            )
        else:
            _check_policy_parts(port_policy, where, out)


def check_destination_rule(spec: Spec) -> Problems:
    out: Problems = []
    host = spec.get("host", "")
    problem = "required" if host == "" else wildcard_domain_problem(host)
    if problem:
        out.append(("spec.host", problem))
    if spec.get("trafficPolicy") is not None:
        _check_traffic_policy(spec["trafficPolicy"], "spec.trafficPolicy", out)
    names: set[str] = set()
    for i, subset in enumerate(_items(spec, "subsets")):
        where = index("spec.subsets", i)
        name = subset.get("name", "")
        problem = dns_label_problem(name) if name else "required"
        if problem:
            out.append((join(where, "name"), problem if name else "required"))
        elif name in names:
            out.append((join(where, "name"), f"duplicate subset name {name!r}"))
        names.add(name)
        check_labels(subset.get("labels"), join(where, "labels"), out)
        if subset.get("trafficPolicy") is not None:
            _check_traffic_policy(subset["trafficPolicy"], join(where, "trafficPolicy"), out)
    selector = spec.get("workloadSelector") or {}
    check_labels(selector.get("matchLabels"), "spec.workloadSelector.matchLabels", out)
    _check_export_to(_items(spec, "exportTo"), "spec.exportTo", out)
    return out


# ---------------------------------------------------------------------------
# Gateway


def _check_gateway_host(host: str, path: str, out: Problems) -> None:
    ns, slash, name = host.rpartition("/")
    if slash and ns not in ("*", ".", "~"):
        problem = dns_label_problem(ns)
        if problem:
            out.append(
                (path, f"namespace part of {host!r} must be '*', '.' or a namespace: {problem}")
            )
            return
    problem = wildcard_domain_problem(name)
    if problem:
        out.append((path, problem))


def check_gateway(spec: Spec) -> Problems:
    out: Problems = []
    servers = _items(spec, "servers")
    if not servers:
        out.append(("spec.servers", "at least one server is required"))
    check_labels(spec.get("selector"), "spec.selector", out)
    names: set[str] = set()
    for i, server in enumerate(servers):
        where = index("spec.servers", i)
        hosts = server.get("hosts") or []
        if not hosts:
            out.append((join(where, "hosts"), "at least one host is required"))
        for j, host in enumerate(hosts):
            _check_gateway_host(host, index(join(where, "hosts"), j), out)
        port = server["port"]
        bind = server.get("bind") or ""
        # A server bound to a unix socket has no port number.
        if not (bind.startswith("unix://") and port.get("number") == 0):
            _check_port(port.get("number"), join(where, "port.number"), out)
        if not port.get("name"):
            out.append((join(where, "port.name"), "must not be empty"))
        if port.get("targetPort") is not None:
            _check_port(port["targetPort"], join(where, "port.targetPort"), out)
        protocol = str(port.get("protocol", "")).upper()
        if protocol not in PROTOCOLS:
            out.append(
                (
                    join(where, "port.protocol"),
                    f"unknown protocol {port.get('protocol')!r}; use one of {', '.join(PROTOCOLS)}",
                )
            )
        tls = server.get("tls")
        if protocol in _TLS_PROTOCOLS and not tls:
            out.append((join(where, "tls"), f"required for {protocol} servers"))
        if tls:
            _check_server_tls(tls, protocol, join(where, "tls"), out)
        name = server.get("name")
        if name:
            if name in names:
                out.append((join(where, "name"), f"duplicate server name {name!r}"))
            names.add(name)
        if bind and not (is_ip(bind) or bind.startswith("unix://")):
            out.append((join(where, "bind"), f"{bind!r} must be an IP address or unix:// path"))
    return out


def _check_server_tls(tls: Mapping[str, Any], protocol: str, path: str, out: Problems) -> None:
    mode = tls.get("mode", "PASSTHROUGH")
    if protocol not in _TLS_PROTOCOLS:
        # A plain-text server may carry tls only to redirect clients to HTTPS.
        if not tls.get("httpsRedirect"):
            out.append(
                (path, f"only allowed on HTTPS or TLS servers, or with httpsRedirect ({protocol})")
            )
        return
    has_creds = bool(
        tls.get("credentialName") or tls.get("credentialNames") or tls.get("tlsCertificates")
    )
    if mode in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL") and not has_creds:
        for name in ("serverCertificate", "privateKey"):
            if not tls.get(name):
                out.append(
                    (join(path, name), f"required for {mode} mode unless credentialName is set")
                )
        if mode != "SIMPLE" and not tls.get("caCertificates"):
            out.append(
                (
                    join(path, "caCertificates"),
                    f"required for {mode} mode unless credentialName is set",
                )
            )


# ---------------------------------------------------------------------------
# ServiceEntry


def check_service_entry(spec: Spec) -> Problems:
    out: Problems = []
    resolution = spec.get("resolution") or "NONE"
    endpoints = _items(spec, "endpoints")
    for i, host in enumerate(_items(spec, "hosts")):
        where = index("spec.hosts", i)
        problem = wildcard_domain_problem(host)
        if problem:
            out.append((where, problem))
        elif resolution in ("DNS", "DNS_ROUND_ROBIN") and not endpoints and host.startswith("*"):
            out.append(
                (
                    where,
                    f"wildcard host {host!r} needs endpoints with {resolution} resolution",
                )
            )
    for i, address in enumerate(_items(spec, "addresses")):
        if not is_cidr(address):
            out.append((index("spec.addresses", i), f"{address!r} is not an IP address or CIDR"))
    port_names = set()
    for i, port in enumerate(_items(spec, "ports")):
        where = index("spec.ports", i)
        port_names.add(port.get("name"))
        protocol = port.get("protocol")
        if protocol and protocol.upper() not in PROTOCOLS:
            out.append(
                (
                    join(where, "protocol"),
                    f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}",
                )
            )
        if not port.get("name"):
            out.append((join(where, "name"), "required"))
    if resolution == "STATIC" and not endpoints and spec.get("workloadSelector") is None:
        out.append(("spec.endpoints", "STATIC resolution needs endpoints or a workloadSelector"))
    for i, endpoint in enumerate(endpoints):
        where = index("spec.endpoints", i)
        address = endpoint.get("address")
        if address and not address.startswith("unix://"):
            if resolution == "STATIC" and not is_ip(address):
                out.append(
                    (
                        join(where, "address"),
                        f"{address!r} must be an IP address for STATIC resolution",
                    )
                )
            elif resolution != "STATIC" and not is_ip(address) and fqdn_problem(address):
                out.append(
                    (join(where, "address"), f"{address!r} is not an IP address or domain name")
                )
        for name in endpoint.get("ports") or {}:
            if name not in port_names:
                out.append(
                    (
                        key(join(where, "ports"), name),
                        f"port {name!r} is not declared in spec.ports",
                    )
                )
        check_labels(endpoint.get("labels"), join(where, "labels"), out)
    selector = (spec.get("workloadSelector") or {}).get("labels")
    check_labels(selector, "spec.workloadSelector.labels", out)
    _check_export_to(_items(spec, "exportTo"), "spec.exportTo", out)
    return out


CHECKS: Mapping[str, Callable[[Spec], Problems]] = {
    "VirtualService": check_virtual_service,
    "DestinationRule": check_destination_rule,
    "Gateway": check_gateway,
    "ServiceEntry": check_service_entry,
}
