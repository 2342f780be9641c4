"""The CRD-schema layer: what the Kubernetes API server checks before istiod
ever sees a VirtualService, DestinationRule, Gateway, ServiceEntry or
PeerAuthentication.

The upstream CRDs (OpenAPI v3 plus CEL ``x-kubernetes-validations``) are
restated here as a small tree of Python nodes, written by hand from the
published schema, so that Mizzen's verdict equals the API server's without
reading the CRD file at run time. The served versions of a kind (v1alpha3,
v1beta1, v1) share one schema upstream, so there is one tree per kind.

Behaviour copied from the API server:
- unknown fields are pruned silently (the specs do not preserve them);
  ``Obj(closed=True)`` trees report them instead, for the legacy kinds whose
  CRDs never pruned, where a misspelt field would silently change what a
  security policy means;
- ``null`` is treated as absent (non-nullable nulls are pruned);
- CEL rules run only on values that already have the right type.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

# (path, message) pairs; the caller adds file and resource.
Problems = list[tuple[str, str]]

# A translated CEL rule: returns the upstream message when the rule fails.
Rule = Callable[[Any], str | None]

U32 = 4294967295


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def key(path: str, k: str) -> str:
    return f"{path}[{k}]"


def type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# ---------------------------------------------------------------------------
# Go / CEL durations ("1h30m", "1.5s", "100ms"): what both CEL's duration()
# and Istio's YAML accept.

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_NANOS = {unit: round(seconds * 1e9) for unit, seconds in _DURATION_UNITS.items()}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float | None:
    """Seconds for a Go-style duration, or None when it is not one."""
    s = text.strip()
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        return None
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            return None
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def duration_nanos(text: str) -> int | None:
    """Whole nanoseconds of a Go-style duration (Go truncates finer parts),
    or None when it is not one. Exact where ``parse_duration`` is a float."""
    if parse_duration(text) is None:
        return None
    s = text.strip()
    sign = -1 if s.startswith("-") else 1
    total = 0
    for m in _DURATION_PART.finditer(s):
        total += int(Fraction(m.group(1)) * _DURATION_NANOS[m.group(2)])
    return sign * total


def min_duration_rule(value: Any) -> str | None:
    # CEL: duration(self) >= duration('1ms')
    seconds = parse_duration(value)
    if seconds is None:
        return f"invalid duration {value!r}; use a value like 10s, 1.5s, 100ms or 1m"
    if seconds < 0.001:
        return "must be a valid duration greater than 1ms"
    return None


# ---------------------------------------------------------------------------
# Go URLs: what Go's url.Parse accepts (istiod parses jwksUri with it) and
# url.ParseRequestURI (behind CEL's url()). Python's urlsplit accepts nearly
# anything, so the rules that make Go refuse a URL are restated here.


@dataclass(frozen=True)
class GoURL:
    scheme: str  # lower-cased, as Go stores it
    host: str  # without brackets or port; "" for opaque or host-less URLs
    port: str  # the digits after the host's ':', or ""


# Characters Go allows unescaped in a host besides letters and digits.
_GO_HOST_CHARS = frozenset("-_.~!$&'()*+,;=:[]<>\"")
_GO_USERINFO_CHARS = frozenset("-._:~!$&'()*+,;=%@")
_HEX = frozenset("0123456789abcdefABCDEF")


def parse_go_url(raw: str, *, request_uri: bool = False) -> GoURL:
    """Parse like Go's ``url.Parse`` (``url.ParseRequestURI`` when
    ``request_uri``); ValueError says what Go refuses."""
    rest, fragment = (raw, "") if request_uri else raw.partition("#")[::2]
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in rest):
        raise ValueError("invalid control character in URL")
    if rest == "*":
        return GoURL("", "", "")
    if not rest and request_uri:
        raise ValueError("empty url")
    scheme, rest = _go_scheme(rest)
    rest = rest.partition("?")[0]  # the query is not checked
    host = port = ""
    if not rest.startswith("/"):
        if scheme:
            return GoURL(scheme, "", "")  # opaque, as in mailto:x
        if request_uri:
            raise ValueError("invalid URI for request")
        if ":" in rest.partition("/")[0]:
            raise ValueError("first path segment in URL cannot contain colon")
    if rest.startswith("//") and (scheme or not (request_uri or rest.startswith("///"))):
        authority, slash, path = rest[2:].partition("/")
        host, port = _go_authority(authority)
        rest = slash + path
    _go_unescape(rest)
    _go_unescape(fragment)
    return GoURL(scheme, host, port)


def _go_scheme(raw: str) -> tuple[str, str]:
    for i, c in enumerate(raw):
        if c.isascii() and c.isalpha():
            continue
        if c.isascii() and (c.isdigit() or c in "+-."):
            if i == 0:
                return "", raw
            continue
        if c == ":":
            if i == 0:
                raise ValueError("missing protocol scheme")
            return raw[:i].lower(), raw[i + 1 :]
        return "", raw
    return "", raw


def _go_authority(authority: str) -> tuple[str, str]:
    userinfo, at, hostport = authority.rpartition("@")
    host, port = _go_host(hostport)
    if at:
        if any(not (c.isascii() and c.isalnum()) and c not in _GO_USERINFO_CHARS for c in userinfo):
            raise ValueError("invalid userinfo")
        _go_unescape(userinfo)
    return host, port


def _go_host(hostport: str) -> tuple[str, str]:
    zone = ""
    if hostport.startswith("["):
        end = hostport.rfind("]")
        if end < 0:
            raise ValueError("missing ']' in host")
        host, colon_port = hostport[1:end], hostport[end + 1 :]
        # An IPv6 zone ("[fe80::1%25eth0]") may hold escaped bytes.
        host, _, zone = host.partition("%25")
    else:
        colon = hostport.rfind(":")
        host, colon_port = (hostport[:colon], hostport[colon:]) if colon >= 0 else (hostport, "")
    if colon_port and not (colon_port[0] == ":" and _ascii_digits(colon_port[1:], empty=True)):
        raise ValueError(f"invalid port {colon_port!r} after host")
    _go_unescape(host, mode="host")
    _go_unescape(zone, mode="zone")
    return host, colon_port[1:]


def _ascii_digits(text: str, *, empty: bool = False) -> bool:
    return (empty or bool(text)) and all("0" <= c <= "9" for c in text)


def _go_unescape(text: str, *, mode: str = "") -> None:
    """Go's unescape check; ``mode`` is "host", "zone" or "" (path, fragment,
    userinfo: only the %-escapes are checked)."""
    i = 0
    while i < len(text):
        c = text[i]
        if c == "%":
            escape = text[i : i + 3]
            if len(escape) < 3 or escape[1] not in _HEX or escape[2] not in _HEX:
                raise ValueError(f"invalid URL escape {escape!r}")
            byte = chr(int(escape[1:], 16))
            # In a host, %-escapes are only for non-ASCII bytes (RFC 3986),
            # and %25 for the '%' of an IPv6 zone (RFC 6874).
            if mode == "host" and byte < "\x80" and escape != "%25":
                raise ValueError(f"invalid URL escape {escape!r} in host")
            if mode == "zone" and escape != "%25" and byte != " " and not _host_char(byte):
                raise ValueError(f"invalid URL escape {escape!r} in host")
            i += 3
            continue
        if mode and _host_escaped(c):
            raise ValueError(f"invalid character {c!r} in host name")
        i += 1


def _host_escaped(c: str) -> bool:
    # Go checks ASCII only: other bytes of a UTF-8 host pass unescaped.
    return c.isascii() and not _host_char(c)


def _host_char(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c in _GO_HOST_CHARS)


# ---------------------------------------------------------------------------
# Schema nodes


@dataclass(frozen=True)
class Str:
    enum: tuple[str, ...] = ()
    max_length: int | None = None
    byte: bool = False  # format: byte (base64)
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class Int:
    minimum: int | None = None
    maximum: int | None = None
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class Num:
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class Bool:
    pass


@dataclass(frozen=True)
class Arr:
    item: Node
    min_items: int | None = None
    max_items: int | None = None
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class Map:
    value: Node
    max_properties: int | None = None
    rules: tuple[Rule, ...] = ()
    min_properties: int | None = None


@dataclass(frozen=True)
class Obj:
    props: Mapping[str, Node]
    required: tuple[str, ...] = ()
    # each group: at most one of these fields (the CRDs' oneOf of "required")
    exclusive: tuple[tuple[str, ...], ...] = ()
    rules: tuple[Rule, ...] = ()
    closed: bool = False  # unknown fields are errors rather than pruned


Node = Str | Int | Num | Bool | Arr | Map | Obj


def check(node: Node, value: Any, path: str, out: Problems) -> None:
    """Append every schema problem of ``value`` under ``path`` to ``out``."""
    if isinstance(node, Str):
        if not isinstance(value, str):
            out.append((path, f"must be a string, got {type_name(value)}"))
            return
        if node.enum and value not in node.enum:
            out.append((path, f"must be one of {', '.join(node.enum)}; got {value!r}"))
            return
        if node.max_length is not None and len(value) > node.max_length:
            out.append((path, f"must be at most {node.max_length} characters"))
            return
        if node.byte:
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                out.append((path, "must be base64 encoded"))
                return
    elif isinstance(node, Int):
        if isinstance(value, bool) or not isinstance(value, int):
            out.append((path, f"must be an integer, got {type_name(value)}"))
            return
        if (node.minimum is not None and value < node.minimum) or (
            node.maximum is not None and value > node.maximum
        ):
            lo = "" if node.minimum is None else str(node.minimum)
            hi = "" if node.maximum is None else str(node.maximum)
            out.append((path, _range_message(lo, hi, value)))
            return
    elif isinstance(node, Num):
        if isinstance(value, bool) or not isinstance(value, int | float):
            out.append((path, f"must be a number, got {type_name(value)}"))
            return
        if (node.minimum is not None and value < node.minimum) or (
            node.maximum is not None and value > node.maximum
        ):
            lo = "" if node.minimum is None else f"{node.minimum:g}"
            hi = "" if node.maximum is None else f"{node.maximum:g}"
            out.append((path, _range_message(lo, hi, value)))
            return
        return
    elif isinstance(node, Bool):
        if not isinstance(value, bool):
            out.append((path, f"must be true or false, got {type_name(value)}"))
        return
    elif isinstance(node, Arr):
        if not isinstance(value, list):
            out.append((path, f"must be a list, got {type_name(value)}"))
            return
        if node.min_items is not None and len(value) < node.min_items:
            out.append((path, f"must have at least {node.min_items} item(s)"))
            return
        if node.max_items is not None and len(value) > node.max_items:
            out.append((path, f"must have at most {node.max_items} items"))
            return
        before = len(out)
        for i, item in enumerate(value):
            check(node.item, item, index(path, i), out)
        if len(out) > before:
            return
    elif isinstance(node, Map):
        if not isinstance(value, dict):
            out.append((path, f"must be a map, got {type_name(value)}"))
            return
        if node.max_properties is not None and len(value) > node.max_properties:
            out.append((path, f"must have at most {node.max_properties} entries"))
            return
        if node.min_properties is not None and len(value) < node.min_properties:
            noun = "entry" if node.min_properties == 1 else "entries"
            out.append((path, f"must have at least {node.min_properties} {noun}"))
            return
        before = len(out)
        for k, v in value.items():
            if v is not None:
                check(node.value, v, key(path, str(k)), out)
        if len(out) > before:
            return
    else:
        if not isinstance(value, dict):
            out.append((path, f"must be an object, got {type_name(value)}"))
            return
        if node.closed:
            for name in value:
                if name not in node.props:
                    out.append((join(path, name), unknown_field_message(name, node.props)))
        present = {k for k, v in value.items() if v is not None}
        missing = [name for name in node.required if name not in present]
        for name in missing:
            out.append((join(path, name), "required"))
        for group in node.exclusive:
            given = [name for name in group if name in present]
            if len(given) > 1:
                out.append((path, f"only one of {', '.join(group)} may be set"))
        before = len(out)
        for name, sub in node.props.items():
            if name in present:
                check(sub, value[name], join(path, name), out)
        if len(out) > before or missing:
            return
    for rule in node.rules:
        message = rule(value)
        if message is not None:
            out.append((path, message))


def unknown_field_message(name: str, known: Mapping[str, object]) -> str:
    """Name the field the user most likely meant, else list the choices."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    if not close:
        close = [k for k in known if k.lower() == name.lower()]
    if close:
        return f"unknown field; did you mean {close[0]}?"
    return f"unknown field; expected one of {', '.join(known)}"


def _range_message(lo: str, hi: str, value: object) -> str:
    if lo and hi:
        return f"must be between {lo} and {hi}, got {value}"
    if lo:
        return f"must be at least {lo}, got {value}"
    return f"must be at most {hi}, got {value}"


# ---------------------------------------------------------------------------
# Small builders that keep the trees below readable.


def _has(obj: Mapping[str, Any], name: str) -> bool:
    return obj.get(name) is not None


def _str_map() -> Map:
    return Map(Str())


def _strings() -> Arr:
    return Arr(Str())


def _u32() -> Int:
    return Int(0, U32)


def _dur() -> Str:
    return Str(rules=(min_duration_rule,))


def _port_1_65535(value: Any) -> str | None:
    # CEL: 0 < self && self <= 65535
    return None if 0 < value <= 65535 else "port must be between 1-65535"


# ---------------------------------------------------------------------------
# VirtualService

_STRING_MATCH = Obj(
    {"exact": Str(), "prefix": Str(), "regex": Str()},
    exclusive=(("exact", "prefix", "regex"),),
)
_PORT_SELECTOR = Obj({"number": _u32()})
_DESTINATION = Obj(
    {"host": Str(), "subset": Str(), "port": _PORT_SELECTOR},
    required=("host",),
)
_HEADER_OPS = Obj({"set": _str_map(), "add": _str_map(), "remove": _strings()})
_HEADERS = Obj({"request": _HEADER_OPS, "response": _HEADER_OPS})
_PERCENT = Obj({"value": Num()})

_HTTP_MATCH = Obj(
    {
        "name": Str(),
        "uri": _STRING_MATCH,
        "scheme": _STRING_MATCH,
        "method": _STRING_MATCH,
        "authority": _STRING_MATCH,
        "headers": Map(_STRING_MATCH),
        "port": _u32(),
        "sourceLabels": _str_map(),
        "gateways": _strings(),
        "queryParams": Map(_STRING_MATCH),
        "ignoreUriCase": Bool(),
        "withoutHeaders": Map(_STRING_MATCH),
        "sourceNamespace": Str(),
        "statPrefix": Str(),
    }
)

_HTTP_ROUTE = Obj(
    {
        "name": Str(),
        "match": Arr(_HTTP_MATCH),
        "route": Arr(
            Obj(
                {"destination": _DESTINATION, "weight": Int(), "headers": _HEADERS},
                required=("destination",),
            )
        ),
        "redirect": Obj(
            {
                "uri": Str(),
                "authority": Str(),
                "port": _u32(),
                "derivePort": Str(enum=("FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT")),
                "scheme": Str(),
                "redirectCode": _u32(),
                "prefixRewrite": Str(),
            },
            exclusive=(("port", "derivePort"),),
        ),
        "directResponse": Obj(
            {
                "status": _u32(),
                "body": Obj(
                    {"string": Str(), "bytes": Str(byte=True)},
                    exclusive=(("string", "bytes"),),
                ),
            },
            required=("status",),
        ),
        "delegate": Obj({"name": Str(), "namespace": Str()}),
        "rewrite": Obj(
            {
                "uri": Str(),
                "authority": Str(),
                "uriRegexRewrite": Obj({"match": Str(), "rewrite": Str()}),
            }
        ),
        "timeout": _dur(),
        "retries": Obj(
            {
                "attempts": Int(),
                "perTryTimeout": _dur(),
                "retryOn": Str(),
                "retryRemoteLocalities": Bool(),
                "retryIgnorePreviousHosts": Bool(),
                "backoff": _dur(),
            }
        ),
        "fault": Obj(
            {
                "delay": Obj(
                    {
                        "fixedDelay": _dur(),
                        "exponentialDelay": _dur(),
                        "percentage": _PERCENT,
                        "percent": Int(),
                    },
                    exclusive=(("fixedDelay", "exponentialDelay"),),
                ),
                "abort": Obj(
                    {
                        "httpStatus": Int(),
                        "grpcStatus": Str(),
                        "http2Error": Str(),
                        "percentage": _PERCENT,
                    },
                    exclusive=(("httpStatus", "grpcStatus", "http2Error"),),
                ),
            }
        ),
        "mirror": _DESTINATION,
        "mirrors": Arr(
            Obj({"destination": _DESTINATION, "percentage": _PERCENT}, required=("destination",))
        ),
        "mirrorPercent": _u32(),
        "mirror_percent": _u32(),
        "mirrorPercentage": _PERCENT,
        "corsPolicy": Obj(
            {
                "allowOrigin": _strings(),
                "allowOrigins": Arr(_STRING_MATCH),
                "allowMethods": _strings(),
                "allowHeaders": _strings(),
                "exposeHeaders": _strings(),
                "maxAge": _dur(),
                "allowCredentials": Bool(),
                "unmatchedPreflights": Str(enum=("UNSPECIFIED", "FORWARD", "IGNORE")),
            }
        ),
        "headers": _HEADERS,
    }
)

_L4_ROUTE = Obj({"destination": _DESTINATION, "weight": Int()}, required=("destination",))

VIRTUAL_SERVICE = Obj(
    {
        "hosts": _strings(),
        "gateways": _strings(),
        "http": Arr(_HTTP_ROUTE),
        "tls": Arr(
            Obj(
                {
                    "match": Arr(
                        Obj(
                            {
                                "sniHosts": _strings(),
                                "destinationSubnets": _strings(),
                                "port": _u32(),
                                "sourceLabels": _str_map(),
                                "gateways": _strings(),
                                "sourceNamespace": Str(),
                            },
                            required=("sniHosts",),
                        )
                    ),
                    "route": Arr(_L4_ROUTE),
                },
                required=("match",),
            )
        ),
        "tcp": Arr(
            Obj(
                {
                    "match": Arr(
                        Obj(
                            {
                                "destinationSubnets": _strings(),
                                "port": _u32(),
                                "sourceLabels": _str_map(),
                                "gateways": _strings(),
                                "sourceNamespace": Str(),
                                "sourceSubnet": Str(),
                            }
                        )
                    ),
                    "route": Arr(_L4_ROUTE),
                }
            )
        ),
        "exportTo": _strings(),
    }
)

# ---------------------------------------------------------------------------
# DestinationRule


def _no_wildcard_keys(value: Any) -> str | None:
    return "wildcard not allowed in label key match" if any("*" in k for k in value) else None


def _no_empty_keys(value: Any) -> str | None:
    return "key must not be empty" if any(len(k) == 0 for k in value) else None


def _no_wildcard_label_value(value: Any) -> str | None:
    return "wildcard not allowed in label value match" if "*" in value else None


# istio.type.v1beta1.WorkloadSelector, shared by DestinationRule and the
# security kinds.
WORKLOAD_SELECTOR = Obj(
    {
        "matchLabels": Map(
            Str(max_length=63, rules=(_no_wildcard_label_value,)),
            max_properties=4096,
            rules=(_no_wildcard_keys, _no_empty_keys),
        )
    }
)


_LOCALITY_FAILOVER = Arr(Obj({"from": Str(), "to": Str()}))

_LOAD_BALANCER = Obj(
    {
        "simple": Str(
            enum=(
                "UNSPECIFIED",
                "LEAST_CONN",
                "RANDOM",
                "PASSTHROUGH",
                "ROUND_ROBIN",
                "LEAST_REQUEST",
            )
        ),
        "consistentHash": Obj(
            {
                "httpHeaderName": Str(),
                "httpCookie": Obj(
                    {
                        "name": Str(),
                        "path": Str(),
                        "ttl": Str(),
                        "attributes": Arr(Obj({"name": Str(), "value": Str()}, required=("name",))),
                    },
                    required=("name",),
                ),
                "useSourceIp": Bool(),
                "httpQueryParameterName": Str(),
                "ringHash": Obj({"minimumRingSize": Int(0)}),
                "maglev": Obj({"tableSize": Int(0)}),
                "minimumRingSize": Int(0),
            },
            exclusive=(
                ("httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName"),
                ("ringHash", "maglev"),
            ),
        ),
        "localityLbSetting": Obj(
            {
                "distribute": Arr(Obj({"from": Str(), "to": Map(_u32())})),
                "failover": _LOCALITY_FAILOVER,
                "failoverPriority": _strings(),
                "enabled": Bool(),
            }
        ),
        "zoneAwareLbSetting": Obj(
            {
                "enabled": Bool(),
                "failover": _LOCALITY_FAILOVER,
                "failoverPriority": _strings(),
                "minClusterSize": Int(1),
            }
        ),
        "warmupDurationSecs": _dur(),
        "warmup": Obj(
            {"duration": _dur(), "minimumPercent": Num(0, 100), "aggression": Num(0)},
            required=("duration",),
        ),
    },
    exclusive=(("simple", "consistentHash"),),
)

_CONNECTION_POOL = Obj(
    {
        "tcp": Obj(
            {
                "maxConnections": Int(),
                "connectTimeout": _dur(),
                "tcpKeepalive": Obj({"probes": _u32(), "time": _dur(), "interval": _dur()}),
                "maxConnectionDuration": _dur(),
                "idleTimeout": Str(),
            }
        ),
        "http": Obj(
            {
                "http1MaxPendingRequests": Int(),
                "http2MaxRequests": Int(),
                "maxRequestsPerConnection": Int(),
                "maxRetries": Int(),
                "idleTimeout": _dur(),
                "h2UpgradePolicy": Str(enum=("DEFAULT", "DO_NOT_UPGRADE", "UPGRADE")),
                "useClientProtocol": Bool(),
                "maxConcurrentStreams": Int(),
                "http2KeepAlive": Obj({"interval": _dur(), "timeout": _dur()}),
            }
        ),
    }
)

_OUTLIER_DETECTION = Obj(
    {
        "splitExternalLocalOriginErrors": Bool(),
        "consecutiveLocalOriginFailures": _u32(),
        "consecutiveGatewayErrors": _u32(),
        "consecutive5xxErrors": _u32(),
        "consecutiveErrors": Int(),
        "interval": _dur(),
        "baseEjectionTime": _dur(),
        "maxEjectionPercent": Int(),
        "minHealthPercent": Int(),
        "outlierDetectionHttpErrorCodes": Arr(Int(100, 599)),
    }
)

_CLIENT_TLS = Obj(
    {
        "mode": Str(enum=("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL")),
        "clientCertificate": Str(),
        "privateKey": Str(),
        "caCertificates": Str(),
        "credentialName": Str(),
        "subjectAltNames": _strings(),
        "sni": Str(),
        "insecureSkipVerify": Bool(),
        "caCrl": Str(),
    }
)

_PORT_TRAFFIC_POLICY = Obj(
    {
        "port": _PORT_SELECTOR,
        "loadBalancer": _LOAD_BALANCER,
        "connectionPool": _CONNECTION_POOL,
        "outlierDetection": _OUTLIER_DETECTION,
        "tls": _CLIENT_TLS,
    }
)

TRAFFIC_POLICY = Obj(
    {
        "loadBalancer": _LOAD_BALANCER,
        "connectionPool": _CONNECTION_POOL,
        "outlierDetection": _OUTLIER_DETECTION,
        "tls": _CLIENT_TLS,
        "portLevelSettings": Arr(_PORT_TRAFFIC_POLICY, max_items=4096),
        "tunnel": Obj(
            {"protocol": Str(), "targetHost": Str(), "targetPort": _u32()},
            required=("targetHost", "targetPort"),
        ),
        "proxyProtocol": Obj({"version": Str(enum=("V1", "V2"))}),
        "retryBudget": Obj(
            {"percent": Num(0, 100), "minRetryConcurrency": _u32(), "budgetInterval": Str()}
        ),
    }
)

DESTINATION_RULE = Obj(
    {
        "host": Str(),
        "trafficPolicy": TRAFFIC_POLICY,
        "subsets": Arr(
            Obj(
                {"name": Str(), "labels": _str_map(), "trafficPolicy": TRAFFIC_POLICY},
                required=("name",),
            )
        ),
        "exportTo": _strings(),
        "workloadSelector": WORKLOAD_SELECTOR,
    },
    required=("host",),
)

# ---------------------------------------------------------------------------
# Gateway


def _gateway_tls_rules(value: Any) -> str | None:
    # Three CEL rules on ServerTLSSettings; upstream's third message names the
    # wrong pair, we name the fields actually in conflict.
    has_certs = _has(value, "tlsCertificates")
    has_names = _has(value, "credentialNames")
    has_name = _has(value, "credentialName")
    if has_certs and has_names:
        return "only one of credentialNames or tlsCertificates can be set"
    if has_name and has_names:
        return "only one of credentialName or credentialNames can be set"
    return None


_TLS_VERSION = Str(enum=("TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"))

SERVER_TLS = Obj(
    {
        "httpsRedirect": Bool(),
        "mode": Str(
            enum=(
                "PASSTHROUGH",
                "SIMPLE",
                "MUTUAL",
                "AUTO_PASSTHROUGH",
                "ISTIO_MUTUAL",
                "OPTIONAL_MUTUAL",
            )
        ),
        "serverCertificate": Str(),
        "privateKey": Str(),
        "caCertificates": Str(),
        "caCrl": Str(),
        "credentialName": Str(),
        "credentialNames": Arr(Str(), min_items=1, max_items=2),
        "tlsCertificates": Arr(
            Obj({"serverCertificate": Str(), "privateKey": Str(), "caCertificates": Str()}),
            min_items=1,
            max_items=2,
        ),
        "subjectAltNames": _strings(),
        "verifyCertificateSpki": _strings(),
        "verifyCertificateHash": _strings(),
        "minProtocolVersion": _TLS_VERSION,
        "maxProtocolVersion": _TLS_VERSION,
        "cipherSuites": _strings(),
        "caCertCredentialName": Str(),
        "insecureSkipVerify": Bool(),
    },
    rules=(_gateway_tls_rules,),
)

GATEWAY = Obj(
    {
        "servers": Arr(
            Obj(
                {
                    "port": Obj(
                        {
                            "number": _u32(),
                            "protocol": Str(),
                            "name": Str(),
                            "targetPort": _u32(),
                        },
                        required=("number", "protocol", "name"),
                    ),
                    "bind": Str(),
                    "hosts": _strings(),
                    "tls": SERVER_TLS,
                    "defaultEndpoint": Str(),
                    "name": Str(),
                },
                required=("port", "hosts"),
            )
        ),
        "selector": _str_map(),
    }
)

# ---------------------------------------------------------------------------
# ServiceEntry

_PORT_NAME = re.compile(r"^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$")


def _unique_port_numbers(value: Any) -> str | None:
    # CEL: self.all(l1, self.exists_one(l2, l1.number == l2.number))
    numbers = [p.get("number") for p in value]
    return "port number cannot be duplicated" if len(numbers) != len(set(numbers)) else None


def _unique_port_names(value: Any) -> str | None:
    # x-kubernetes-list-type: map keyed by name: the API server rejects duplicates
    names = [p.get("name") for p in value]
    return "port name cannot be duplicated" if len(names) != len(set(names)) else None


def _endpoint_port_names(value: Any) -> str | None:
    ok = all(len(k) < 63 and _PORT_NAME.match(k) for k in value)
    return None if ok else "port name must be valid"


def _uds_address(value: Any) -> str | None:
    if value.startswith("unix://"):
        if value[7:8] not in ("/", "@"):
            return "UDS must be an absolute path or abstract socket"
        if value.endswith("/"):
            return "UDS may not be a dir"
    return None


def _endpoint_rules(value: Any) -> str | None:
    if not (_has(value, "address") or _has(value, "network")):
        return "Address is required"
    if str(value.get("address") or "").startswith("unix://") and _has(value, "ports"):
        return "UDS may not include ports"
    return None


def _not_wildcard(value: Any) -> str | None:
    return "hostname cannot be wildcard" if value == "*" else None


def _no_wildcard_selector(value: Any) -> str | None:
    return "wildcard is not supported in selector" if "*" in value else None


def _service_entry_rules(value: Any) -> str | None:
    resolution = value.get("resolution") or "NONE"
    has_endpoints = _has(value, "endpoints")
    if _has(value, "workloadSelector") and has_endpoints:
        return "only one of WorkloadSelector or Endpoints can be set"
    if any("/" in a for a in value.get("addresses") or []) and resolution not in (
        "STATIC",
        "NONE",
    ):
        return "CIDR addresses are allowed only for NONE/STATIC resolution types"
    if resolution == "NONE" and has_endpoints:
        return "NONE mode cannot set endpoints"
    if resolution == "DNS_ROUND_ROBIN" and len(value.get("endpoints") or []) > 1:
        return "DNS_ROUND_ROBIN mode cannot have multiple endpoints"
    return None


_SE_PORT_NUMBER = Int(0, U32, rules=(_port_1_65535,))

SERVICE_ENTRY = Obj(
    {
        "hosts": Arr(Str(rules=(_not_wildcard,)), min_items=1, max_items=256),
        "addresses": Arr(Str(max_length=64), max_items=256),
        "ports": Arr(
            Obj(
                {
                    "number": _SE_PORT_NUMBER,
                    "protocol": Str(max_length=256),
                    "name": Str(max_length=256),
                    "targetPort": _SE_PORT_NUMBER,
                },
                required=("number", "name"),
            ),
            max_items=256,
            rules=(_unique_port_numbers, _unique_port_names),
        ),
        "location": Str(enum=("MESH_EXTERNAL", "MESH_INTERNAL")),
        "resolution": Str(enum=("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS")),
        "endpoints": Arr(
            Obj(
                {
                    "address": Str(max_length=256, rules=(_uds_address,)),
                    "ports": Map(
                        _SE_PORT_NUMBER, max_properties=128, rules=(_endpoint_port_names,)
                    ),
                    "labels": Map(Str(), max_properties=256),
                    "network": Str(max_length=2048),
                    "locality": Str(max_length=2048),
                    "weight": _u32(),
                    "serviceAccount": Str(max_length=253),
                },
                rules=(_endpoint_rules,),
            ),
            max_items=4096,
        ),
        "workloadSelector": Obj(
            {"labels": Map(Str(max_length=63, rules=(_no_wildcard_selector,)), max_properties=256)}
        ),
        "exportTo": _strings(),
        "subjectAltNames": _strings(),
    },
    required=("hosts",),
    rules=(_service_entry_rules,),
)

# ---------------------------------------------------------------------------
# PeerAuthentication (security.istio.io v1 and v1beta1 share one schema)

MTLS_MODES = ("UNSET", "DISABLE", "PERMISSIVE", "STRICT")
_PORT_KEY = re.compile(r"^[0-9]+$")


def _port_keys_in_range(value: Any) -> str | None:
    # CEL: self.all(key, 0 < int(key) && int(key) <= 65535). A key that is not
    # a number makes int() fail, which the API server also refuses.
    for k in map(str, value):
        if not _PORT_KEY.match(k):
            return f"keys must be port numbers, got {k!r}"
        if not 0 < int(k) <= 65535:
            return f"port must be between 1-65535, got {k}"
    return None


def _port_level_mtls_needs_selector(value: Any) -> str | None:
    # CEL: has(self.portLevelMtls) ? <selector.matchLabels, or {}>.size() > 0 : true
    if not _has(value, "portLevelMtls"):
        return None
    labels = (value.get("selector") or {}).get("matchLabels") or {}
    if labels:
        return None
    return (
        "portLevelMtls requires selector: port-level modes apply only to the"
        " workloads chosen by selector.matchLabels"
    )


_MTLS = Obj({"mode": Str(enum=MTLS_MODES)})

PEER_AUTHENTICATION = Obj(
    {
        "selector": WORKLOAD_SELECTOR,
        "mtls": _MTLS,
        "portLevelMtls": Map(_MTLS, min_properties=1, rules=(_port_keys_in_range,)),
    },
    rules=(_port_level_mtls_needs_selector,),
)

# ---------------------------------------------------------------------------
# AuthorizationPolicy and RequestAuthentication (security.istio.io v1 and
# v1beta1 share one schema). Only shape and the CEL rules live here; the
# value checks (IPs, ports, paths, condition keys, URLs) are istiod's, in
# validate_security.

_API_GROUP = re.compile(
    r"(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*)?"
)
_KIND_NAME = re.compile(r"[a-zA-Z](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?")
_CLAIM_HEADER = re.compile(r"[-_A-Za-z0-9]+")


def _not_empty(value: Any) -> str | None:
    # OpenAPI minLength: 1
    return "must not be empty" if value == "" else None


def _api_group(value: Any) -> str | None:
    if _API_GROUP.fullmatch(value):
        return None
    return (
        f"{value!r} is not an API group: use lower-case letters, digits, '-' and '.'"
        " (leave it empty for the core group)"
    )


def _kind_name(value: Any) -> str | None:
    if value == "" or _KIND_NAME.fullmatch(value):  # empty: _not_empty says it
        return None
    return f"{value!r} is not a kind: a letter, then letters, digits or '-'"


def _same_namespace(value: Any) -> str | None:
    # CEL: self.size() == 0
    if value == "":
        return None
    return (
        "cross namespace referencing is not currently supported; remove namespace:"
        " a policy targets resources in its own namespace"
    )


def _one_way_to_select(value: Any) -> str | None:
    # CEL: (has(selector) ? 1 : 0) + (has(targetRef) ? 1 : 0) + (has(targetRefs) ? 1 : 0) <= 1
    given = [name for name in ("selector", "targetRef", "targetRefs") if _has(value, name)]
    if len(given) <= 1:
        return None
    return (
        f"only one of targetRefs or selector can be set; this spec sets {' and '.join(given)}:"
        " keep selector for workloads, or targetRef(s) for gateways and services"
    )


_POLICY_TARGET_REF = Obj(
    {
        "group": Str(max_length=253, rules=(_api_group,)),
        "kind": Str(max_length=63, rules=(_not_empty, _kind_name)),
        "name": Str(max_length=253, rules=(_not_empty,)),
        "namespace": Str(rules=(_same_namespace,)),
    },
    required=("kind", "name"),
)

_TARGETING: Mapping[str, Node] = {
    "selector": WORKLOAD_SELECTOR,
    "targetRef": _POLICY_TARGET_REF,
    "targetRefs": Arr(_POLICY_TARGET_REF, max_items=16),
}


def _service_accounts_alone(value: Any) -> str | None:
    # CEL: (has(serviceAccounts) || has(notServiceAccounts)) ? !has(principals)
    # && !has(notPrincipals) && !has(namespaces) && !has(notNamespaces) : true
    if not (_has(value, "serviceAccounts") or _has(value, "notServiceAccounts")):
        return None
    if not any(
        _has(value, f) for f in ("principals", "notPrincipals", "namespaces", "notNamespaces")
    ):
        return None
    return (
        "Cannot set serviceAccounts with namespaces or principals; a service account"
        " ('ns/sa') already names its namespace: use either serviceAccounts or"
        " principals/namespaces in one source (two sources in `from` are ORed)"
    )


_SERVICE_ACCOUNTS = Arr(Str(max_length=320), max_items=16)

_SOURCE = Obj(
    {
        **{
            name: _strings()
            for name in (
                "principals",
                "notPrincipals",
                "requestPrincipals",
                "notRequestPrincipals",
                "namespaces",
                "notNamespaces",
                "ipBlocks",
                "notIpBlocks",
                "remoteIpBlocks",
                "notRemoteIpBlocks",
                "trustDomains",
                "notTrustDomains",
            )
        },
        "serviceAccounts": _SERVICE_ACCOUNTS,
        "notServiceAccounts": _SERVICE_ACCOUNTS,
    },
    rules=(_service_accounts_alone,),
)

_OPERATION = Obj(
    {
        name: _strings()
        for name in (
            "hosts",
            "notHosts",
            "ports",
            "notPorts",
            "methods",
            "notMethods",
            "paths",
            "notPaths",
        )
    }
)

_AUTHZ_RULE = Obj(
    {
        "from": Arr(Obj({"source": _SOURCE}), max_items=512),
        "to": Arr(Obj({"operation": _OPERATION})),
        "when": Arr(
            Obj({"key": Str(), "values": _strings(), "notValues": _strings()}, required=("key",))
        ),
    }
)

AUTHZ_ACTIONS = ("ALLOW", "DENY", "AUDIT", "CUSTOM")

# The CRD's oneOf on `provider` (present or absent) always holds: not restated.
AUTHORIZATION_POLICY = Obj(
    {
        **_TARGETING,
        "rules": Arr(_AUTHZ_RULE, max_items=512),
        "action": Str(enum=AUTHZ_ACTIONS),
        "provider": Obj({"name": Str()}),
    },
    # The proto oneof action_detail, which has one member: Istio's CRD
    # still spells it as an "at most one" group.
    exclusive=(("provider",),),
    rules=(_one_way_to_select,),
)


def _http_url(value: Any) -> str | None:
    # CEL: url(self).getScheme() in ["http", "https"]. url() itself fails on
    # what Go's ParseRequestURI or Parse refuses. Empty: _not_empty says it.
    if value == "":
        return None
    try:
        parse_go_url(value, request_uri=True)
        scheme = parse_go_url(value).scheme
    except ValueError as e:
        return f"{value!r} is not a valid URL ({e}); url must have scheme http:// or https://"
    if scheme in ("http", "https"):
        return None
    return f"url must have scheme http:// or https://, got {value!r}"


def _one_key_source(value: Any) -> str | None:
    # CEL: (has(jwksUri) ? 1 : 0) + (has(jwks_uri) ? 1 : 0) + (has(jwks) ? 1 : 0) <= 1
    given = [name for name in ("jwksUri", "jwks_uri", "jwks") if _has(value, name)]
    if len(given) <= 1:
        return None
    return (
        f"only one of jwks or jwksUri can be set; this rule sets {' and '.join(given)}:"
        " keep the inline key set (jwks) or the URL to fetch it from (jwksUri)"
    )


def _claim_header(value: Any) -> str | None:
    if value == "" or _CLAIM_HEADER.fullmatch(value):  # empty: _not_empty says it
        return None
    return f"{value!r} is not a header name: use letters, digits, '-' and '_' only"


_NON_EMPTY = Str(rules=(_not_empty,))
_JWKS_URI = Str(max_length=2048, rules=(_not_empty, _http_url))

_JWT_RULE = Obj(
    {
        "issuer": _NON_EMPTY,
        "audiences": Arr(_NON_EMPTY),
        "jwksUri": _JWKS_URI,
        "jwks_uri": _JWKS_URI,
        "jwks": Str(),
        "fromHeaders": Arr(Obj({"name": _NON_EMPTY, "prefix": Str()}, required=("name",))),
        "fromParams": Arr(_NON_EMPTY),
        "fromCookies": Arr(_NON_EMPTY),
        "outputPayloadToHeader": Str(),
        "outputClaimToHeaders": Arr(
            Obj(
                {"header": Str(rules=(_not_empty, _claim_header)), "claim": _NON_EMPTY},
                required=("header", "claim"),
            )
        ),
        "forwardOriginalToken": Bool(),
        "spaceDelimitedClaims": Arr(_NON_EMPTY, max_items=64),
        "timeout": _dur(),
    },
    rules=(_one_key_source,),
)

REQUEST_AUTHENTICATION = Obj(
    {**_TARGETING, "jwtRules": Arr(_JWT_RULE, max_items=4096)},
    rules=(_one_way_to_select,),
)

SPEC_SCHEMAS: Mapping[str, Obj] = {
    "VirtualService": VIRTUAL_SERVICE,
    "DestinationRule": DESTINATION_RULE,
    "Gateway": GATEWAY,
    "ServiceEntry": SERVICE_ENTRY,
    "PeerAuthentication": PEER_AUTHENTICATION,
    "AuthorizationPolicy": AUTHORIZATION_POLICY,
    "RequestAuthentication": REQUEST_AUTHENTICATION,
}


# Kinds whose CRD makes ``spec`` itself required.
SPEC_REQUIRED = frozenset({"ServiceEntry"})


def check_spec(kind: str, spec: Any, out: Problems) -> None:
    """Schema problems of an Istio ``spec`` (paths start at ``spec``); ``None``
    means the document has no spec."""
    if spec is None:
        if kind in SPEC_REQUIRED:
            out.append(("spec", "required"))
        return
    check(SPEC_SCHEMAS[kind], spec, "spec", out)
