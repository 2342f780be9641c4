"""istiod's semantic layer: rules the CRD schema cannot express.

These run only on specs that already passed the schema layer
(``validate_crd``), so shapes and types can be trusted here. The rules follow
Istio's documented behaviour (1.30); messages are ours.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import re2

from mizzen.api.validate_crd import TRAFFIC_POLICY, Problems, index, join, key, parse_duration
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


def _check_traffic_policy(
    policy: Mapping[str, Any], path: str, out: Problems, *, top: bool
) -> None:
    if not any(policy.get(f) is not None for f in TRAFFIC_POLICY.props if f != "port"):
        out.append((path, "must set at least one field"))
        return
    pool = policy.get("connectionPool") or {}
    for group in ("tcp", "http"):
        for name, value in (pool.get(group) or {}).items():
            if isinstance(value, int) and not isinstance(value, bool) and value < 0:
                out.append(
                    (
                        join(join(join(path, "connectionPool"), group), name),
                        f"must not be negative, got {value}",
                    )
                )
    outlier = policy.get("outlierDetection") or {}
    od = join(path, "outlierDetection")
    for name in ("maxEjectionPercent", "minHealthPercent"):
        _check_percent(outlier.get(name), join(od, name), out)
    if (outlier.get("consecutiveErrors") or 0) < 0:
        out.append((join(od, "consecutiveErrors"), "must not be negative"))
    lb = policy.get("loadBalancer") or {}
    locality = lb.get("localityLbSetting") or {}
    if locality.get("distribute") and locality.get("failover"):
        out.append(
            (
                join(join(path, "loadBalancer"), "localityLbSetting"),
                "distribute and failover cannot be used together",
            )
        )
    for i, rule in enumerate(locality.get("distribute") or []):
        weights = (rule.get("to") or {}).values()
        if sum(weights) != 100:
            where = index(
                join(join(join(path, "loadBalancer"), "localityLbSetting"), "distribute"), i
            )
            out.append((join(where, "to"), f"weights must add up to 100, got {sum(weights)}"))
    tls = policy.get("tls")
    if tls:
        where = join(path, "tls")
        mode = tls.get("mode", "DISABLE")
        if mode == "MUTUAL" and not tls.get("credentialName"):
            for name in ("clientCertificate", "privateKey"):
                if not tls.get(name):
                    out.append(
                        (join(where, name), "required for MUTUAL mode unless credentialName is set")
                    )
        if mode == "ISTIO_MUTUAL":
            for name in ("clientCertificate", "privateKey", "caCertificates", "credentialName"):
                if tls.get(name):
                    out.append(
                        (
                            join(where, name),
                            "not allowed with ISTIO_MUTUAL mode (Istio supplies the certificates)",
                        )
                    )
    tunnel = policy.get("tunnel")
    if tunnel:
        _check_port(tunnel.get("targetPort"), join(join(path, "tunnel"), "targetPort"), out)
    if top:
        seen: set[int] = set()
        for i, port_policy in enumerate(policy.get("portLevelSettings") or []):
            where = index(join(path, "portLevelSettings"), i)
            number = (port_policy.get("port") or {}).get("number")
            if number is None:
                out.append((join(join(where, "port"), "number"), "required"))
                continue
            _check_port(number, join(join(where, "port"), "number"), out)
            if number in seen:
                out.append(
                    (join(join(where, "port"), "number"), f"port {number} is already configured")
                )
            seen.add(number)
            rest = {k: v for k, v in port_policy.items() if k != "port"}
            _check_traffic_policy(rest, where, out, top=False)


def check_destination_rule(spec: Spec) -> Problems:
    out: Problems = []
    host = spec.get("host", "")
    problem = "required" if host == "" else wildcard_domain_problem(host)
    if problem:
        out.append(("spec.host", problem))
    if spec.get("trafficPolicy") is not None:
        _check_traffic_policy(spec["trafficPolicy"], "spec.trafficPolicy", out, top=True)
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
            _check_traffic_policy(
                subset["trafficPolicy"], join(where, "trafficPolicy"), out, top=True
            )
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
