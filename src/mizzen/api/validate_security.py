"""Security kinds: istiod's checks for PeerAuthentication, AuthorizationPolicy
and RequestAuthentication, the ``istio.io/dry-run`` annotation, and the whole
of the legacy ``authentication.istio.io/v1alpha1`` MeshPolicy and Policy.

Every check returns ``(errors, warnings)``: a warning keeps the resource, an
error refuses it. Paths start at the document root (``spec.mtls.mode``).

PeerAuthentication
    The CRD layer (``validate_crd.PEER_AUTHENTICATION``) has already checked
    the shape, the mode enum and the CEL rules; istiod adds little on top:
    a ``selector`` without labels is legal but only a warning, because it
    silently turns a workload policy into a namespace-wide one.

AuthorizationPolicy and RequestAuthentication
    The CRD layer (``validate_crd``) checks shape and CEL rules; these are
    istiod's webhook rules on top: action and provider, selector or
    targetRef(s), empty sources and operations, IPs and CIDRs (v4 and v6),
    ports, path templates, the condition keys istiod knows, jwksUri, inline
    JWKS, token locations, claim headers, timeouts. Messages begin with
    istiod's own text. Values are read as istiod's Go decoder reads them: an
    empty list is an absent one (``from: []`` matches any source, which earns
    a warning), a null message an empty one. A DENY rule made only of HTTP
    fields is a warning: on a TCP port it denies everything.

MeshPolicy and Policy (Istio 1.0 to 1.5; removed in 1.6)
    Their CRDs never pruned unknown fields, so the shape is checked here, and
    strictly: a misspelt field (the classic ``target:`` for ``targets:``) is
    an error naming the field meant, never a silently wider policy.
    The rules Istio 1.x enforced (messages are ours):

    - a MeshPolicy is named ``default`` and has no targets;
    - a Policy without targets covers its namespace and must be named
      ``default``; the Policy named ``default`` has no targets;
    - a target names a Service by short name (a DNS label); a port selector
      is a Service port number (1..65535) or port name;
    - JWT issuers are set and unique within one policy, ``jwksUri`` is an
      http(s) URL, audiences, header and parameter names are not empty;
    - refused because nothing modern means the same (Mizzen's own rule):
      ``peers[].jwt`` (never implemented by Istio) and
      ``origins[].jwt.triggerRules`` (RequestAuthentication checks tokens on
      every path).

    What ``peers`` means (``legacy_peer_mode``): the first ``mtls`` entry
    decides, with its ``mode``, STRICT when it has none (``mtls: {}`` or a bare
    ``mtls:``); ``peerIsOptional: true`` relaxes that to PERMISSIVE; no
    ``mtls`` entry at all means DISABLE (Istio 1.4: plaintext accepted, mTLS
    not required). Origins (end-user JWT) are enforced through their modern
    form, a RequestAuthentication plus an AuthorizationPolicy.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from mizzen.api.resources import MtlsMode
from mizzen.api.validate_crd import (
    U32,
    Arr,
    Bool,
    Int,
    Map,
    Obj,
    Problems,
    Str,
    check,
    duration_nanos,
    index,
    join,
    key,
    parse_go_url,
)
from mizzen.api.validate_names import check_labels, dns_label_problem

Spec = Mapping[str, Any]
# (errors, warnings), each a list of (path, message)
Findings = tuple[Problems, Problems]

LEGACY_API_VERSION = "authentication.istio.io/v1alpha1"
REPLACEMENT = "PeerAuthentication (security.istio.io/v1)"

# ---------------------------------------------------------------------------
# PeerAuthentication


def check_peer_authentication(spec: Spec) -> Findings:
    errors: Problems = []
    warnings: Problems = []
    selector = spec.get("selector")
    labels = (selector or {}).get("matchLabels") or {}
    if selector is not None and not labels:
        # istiod: "workload selector specified without labels" (a warning).
        warnings.append(("spec.selector", EMPTY_SELECTOR_WARNING))
    check_labels(labels, "spec.selector.matchLabels", errors)
    port_level = spec.get("portLevelMtls")
    if port_level is not None:
        # The CRD's CEL rules refuse these first; istiod keeps them for
        # configurations that bypass the API server (files, tests).
        if not port_level:
            errors.append(("spec.portLevelMtls", "must list at least one port when given"))
        elif not labels:
            errors.append(
                (
                    "spec.portLevelMtls",
                    "a namespace- or mesh-wide policy cannot set port-level mTLS;"
                    " add selector.matchLabels",
                )
            )
        for port in port_level:
            if not str(port).isdigit() or not 1 <= int(port) <= 65535:
                errors.append(
                    (key("spec.portLevelMtls", str(port)), "port must be between 1 and 65535")
                )
    return errors, warnings


# ---------------------------------------------------------------------------
# How AuthorizationPolicy and RequestAuthentication choose their workloads
# (istiod: validateOneOfSelectorType, validateWorkloadSelector,
# validatePolicyTargetReference).
#
# istiod reads specs through Go's jsonpb, which decodes an empty list as an
# absent one and a null message as an empty one; the checks below read the
# YAML the same way.

EMPTY_SELECTOR_WARNING = (
    "has no matchLabels, so it selects every workload: this policy applies to the"
    " whole namespace (the whole mesh in the root namespace); add matchLabels or"
    " remove the selector"
)

# (group, kind) a targetRef may name; istiod compares group and kind only, and
# reads an empty group as "core".
TARGET_REF_KINDS = frozenset(
    {
        ("core", "Service"),
        ("networking.istio.io", "ServiceEntry"),
        ("gateway.networking.k8s.io", "Gateway"),
        ("gateway.networking.k8s.io", "GatewayClass"),
    }
)
_TARGET_REF_CHOICES = (
    "Service (group empty or core), ServiceEntry (group networking.istio.io),"
    " Gateway or GatewayClass (group gateway.networking.k8s.io)"
)


def _check_targeting(spec: Spec, errors: Problems, warnings: Problems) -> None:
    selector = spec.get("selector")
    target_ref = spec.get("targetRef")
    target_refs = spec.get("targetRefs") or []
    # A selector counts even when empty; targetRefs only when it lists one.
    if int(selector is not None) + int(target_ref is not None) + int(bool(target_refs)) > 1:
        errors.append(
            (
                "spec",
                "only one of targetRefs or workloadSelector can be set: use selector for"
                " workloads, or targetRef/targetRefs for gateways and services",
            )
        )
    if selector is not None:
        _check_selector(selector, errors, warnings)
    if target_ref is not None:
        _check_target_ref(target_ref, "spec.targetRef", errors)
    for i, ref in enumerate(target_refs):
        _check_target_ref(ref or {}, index("spec.targetRefs", i), errors)


def _check_selector(selector: Spec, errors: Problems, warnings: Problems) -> None:
    labels = selector.get("matchLabels") or {}
    for name, value in labels.items():
        where = key("spec.selector.matchLabels", str(name))
        pair = f"{name}={value}"
        if name == "":
            errors.append((where, f'empty key is not supported in selector: "{pair}"'))
        if "*" in str(name) or "*" in str(value):
            errors.append(
                (
                    where,
                    f'wildcard is not supported in selector: "{pair}"; labels match exactly'
                    " (drop the label to match any value)",
                )
            )
    if not labels:
        # istiod: "workload selector specified without labels" (a warning).
        warnings.append(("spec.selector", EMPTY_SELECTOR_WARNING))


def _check_target_ref(ref: Spec, path: str, errors: Problems) -> None:
    if not ref.get("name"):
        errors.append((join(path, "name"), "targetRef name must be set"))
    if ref.get("namespace"):
        errors.append(
            (
                join(path, "namespace"),
                "targetRef namespace must not be set; cross namespace referencing is not"
                " supported (a policy targets resources in its own namespace)",
            )
        )
    group, kind = ref.get("group") or "", ref.get("kind") or ""
    if (group or "core", kind) not in TARGET_REF_KINDS:
        errors.append(
            (path, f"targetRef must be to one of {_TARGET_REF_CHOICES} but was {group}/{kind}")
        )


# ---------------------------------------------------------------------------
# AuthorizationPolicy (istiod: ValidateAuthorizationPolicy and pkg/config/
# security). Messages start with istiod's text; paths name the value.

DENY_HTTP_ONLY_WARNING = (
    "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due"
    " to the use of only HTTP attributes in a DENY rule; it is recommended to explicitly"
    " specify the port"
)
_NO_RULES = (
    "{action} action without `rules` is meaningless as it will never be triggered, add an"
    " empty rule `{{}}` if you want it be triggered for every request"
)

# Source fields that also work on TCP; with requestPrincipals, the lists
# istiod requires one of (trustDomains since they are enforced).
_TCP_SOURCE_FIELDS = (
    "principals",
    "notPrincipals",
    "trustDomains",
    "notTrustDomains",
    "ipBlocks",
    "notIpBlocks",
    "namespaces",
    "notNamespaces",
    "remoteIpBlocks",
    "notRemoteIpBlocks",
    "serviceAccounts",
    "notServiceAccounts",
)
_SOURCE_FIELDS = (*_TCP_SOURCE_FIELDS, "requestPrincipals", "notRequestPrincipals")
_IP_FIELDS = frozenset({"ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks"})
_SERVICE_ACCOUNT_FIELDS = frozenset({"serviceAccounts", "notServiceAccounts"})
_PEER_FIELDS = ("principals", "notPrincipals", "namespaces", "notNamespaces")
_CUSTOM_REFUSED_SOURCE_FIELDS = (
    "namespaces",
    "notNamespaces",
    "serviceAccounts",
    "notServiceAccounts",
    "principals",
    "notPrincipals",
    "requestPrincipals",
    "notRequestPrincipals",
)
_CUSTOM_REFUSED_KEYS = frozenset({"source.namespace", "source.serviceAccount", "source.principal"})
_OPERATION_FIELDS = (
    "ports",
    "methods",
    "paths",
    "hosts",
    "notPorts",
    "notMethods",
    "notPaths",
    "notHosts",
)

ValueCheck = Callable[[str], str | None]


def check_authorization_policy(spec: Spec) -> Findings:
    errors: Problems = []
    warnings: Problems = []
    _check_targeting(spec, errors, warnings)
    action = spec.get("action") or "ALLOW"
    rules = [rule or {} for rule in spec.get("rules") or ()]
    _check_action(spec, action, bool(rules), errors)
    for i, rule in enumerate(rules):
        path = index("spec.rules", i)
        if action == "CUSTOM":
            _check_custom_rule(rule, path, errors)
        if _check_rule(rule, i, path, errors, warnings) and action == "DENY":
            warnings.append((path, DENY_HTTP_ONLY_WARNING))
    return errors, warnings


def _check_action(spec: Spec, action: str, has_rules: bool, errors: Problems) -> None:
    provider = spec.get("provider")
    if action == "CUSTOM":
        if not has_rules:
            errors.append(("spec.rules", _NO_RULES.format(action="CUSTOM")))
        elif not (provider or {}).get("name"):
            # istiod only asks for the provider once there are rules.
            errors.append(
                (
                    "spec.provider.name",
                    "`provider.name` must not be empty: name one of the extensionProviders"
                    " of the mesh config",
                )
            )
    elif provider is not None:
        errors.append(
            (
                "spec.provider",
                f"`provider` must not be with non CUSTOM action, found {action};"
                " set action: CUSTOM or remove provider",
            )
        )
    if action == "DENY" and not has_rules:
        errors.append(("spec.rules", _NO_RULES.format(action="DENY")))


def _check_custom_rule(rule: Spec, path: str, errors: Problems) -> None:
    """What an external authorizer cannot be asked about: peer and JWT identity."""
    hint = (
        "is currently not supported with CUSTOM action; the external authorizer receives"
        " the request and decides on identity itself"
    )
    for j, entry in enumerate(rule.get("from") or ()):
        source = (entry or {}).get("source")
        if source is None:
            continue
        where = join(index(join(path, "from"), j), "source")
        for field in _CUSTOM_REFUSED_SOURCE_FIELDS:
            if source.get(field):
                errors.append((join(where, field), f"From.{_go_name(field)} {hint}"))
    for k, condition in enumerate(rule.get("when") or ()):
        attr = (condition or {}).get("key") or ""
        if attr in _CUSTOM_REFUSED_KEYS or attr.startswith("request.auth."):
            errors.append((join(index(join(path, "when"), k), "key"), f"{attr} {hint}"))


def _check_rule(rule: Spec, i: int, path: str, errors: Problems, warnings: Problems) -> bool:
    """Check one rule; True when it uses HTTP-only fields alone, which on a
    TCP port a DENY widens to "deny everything"."""
    from_exists, tcp_from = _check_sources(rule, i, path, errors, warnings)
    to_exists, tcp_to = _check_operations(rule, i, path, errors, warnings)
    _check_conditions(rule, path, errors)
    return (from_exists and not to_exists and not tcp_from) or (to_exists and not tcp_to)


def _warn_empty_list(rule: Spec, field: str, path: str, what: str, warnings: Problems) -> None:
    # Go's jsonpb reads `from: []` as no `from` at all: the rule then matches
    # any source (any operation for `to`), which is rarely what was meant.
    if rule.get(field) == []:
        warnings.append(
            (
                join(path, field),
                f"an empty list is read as absent: this rule matches {what};"
                f" remove `{field}` or list at least one entry",
            )
        )


def _check_sources(
    rule: Spec, i: int, path: str, errors: Problems, warnings: Problems
) -> tuple[bool, bool]:
    _warn_empty_list(rule, "from", path, "requests from any source", warnings)
    exists = tcp = False
    for j, entry in enumerate(rule.get("from") or ()):
        where = join(index(join(path, "from"), j), "source")
        source = (entry or {}).get("source")
        if source is None:
            errors.append((where, f"`from.source` must not be nil, found at rule {i}"))
            continue
        exists = True
        lists: dict[str, list[Any]] = {f: source.get(f) or [] for f in _SOURCE_FIELDS}
        if any(lists[f] for f in _PEER_FIELDS) and any(lists[f] for f in _SERVICE_ACCOUNT_FIELDS):
            errors.append(
                (
                    where,
                    f"cannot set serviceAccounts with namespaces or principals, found at rule {i}",
                )
            )
        if not any(lists.values()):
            errors.append(
                (
                    where,
                    f"`from.source` must not be empty, found at rule {i}; list principals,"
                    " namespaces, serviceAccounts, ipBlocks or requestPrincipals, or remove it",
                )
            )
        for field, values in lists.items():
            at = join(where, field)
            if field in _SERVICE_ACCOUNT_FIELDS:
                _check_service_accounts(values, _go_name(field), at, errors)
            else:
                check = ip_problem if field in _IP_FIELDS else None
                _check_values(values, _go_name(field), at, errors, check)
        tcp = tcp or any(lists[f] for f in _TCP_SOURCE_FIELDS)
    return exists, tcp


def _check_operations(
    rule: Spec, i: int, path: str, errors: Problems, warnings: Problems
) -> tuple[bool, bool]:
    _warn_empty_list(rule, "to", path, "any operation", warnings)
    exists = tcp = False
    for j, entry in enumerate(rule.get("to") or ()):
        where = join(index(join(path, "to"), j), "operation")
        operation = (entry or {}).get("operation")
        if operation is None:
            errors.append((where, f"`to.operation` must not be nil, found at rule {i}"))
            continue
        exists = True
        lists: dict[str, list[Any]] = {f: operation.get(f) or [] for f in _OPERATION_FIELDS}
        if not any(lists.values()):
            errors.append(
                (
                    where,
                    f"`to.operation` must not be empty, found at rule {i}; list hosts, ports,"
                    " methods or paths, or remove it",
                )
            )
        for field, values in lists.items():
            _check_values(
                values, _go_name(field), join(where, field), errors, _operation_check(field)
            )
        tcp = tcp or bool(lists["ports"] or lists["notPorts"])
    return exists, tcp


def _operation_check(field: str) -> ValueCheck | None:
    if field in ("ports", "notPorts"):
        return port_problem
    if field in ("paths", "notPaths"):
        return functools.partial(path_template_problem, field=_go_name(field))
    return None


def _check_values(
    values: list[Any], name: str, path: str, errors: Problems, check: ValueCheck | None
) -> None:
    for k, value in enumerate(values):
        if value == "":
            errors.append((index(path, k), f"empty value not allowed, found in {name}"))
        elif check is not None and (problem := check(value)):
            errors.append((index(path, k), problem))


def _go_name(field: str) -> str:
    # istiod names fields by their Go names: ipBlocks -> IpBlocks.
    return field[:1].upper() + field[1:]


def _check_service_accounts(values: list[Any], name: str, path: str, errors: Problems) -> None:
    if len(values) > 16:
        errors.append((path, "may not have more than 16 values"))
        return
    for k, value in enumerate(values):
        problem = service_account_problem(value, name)
        if problem:
            errors.append((index(path, k), problem))


def service_account_problem(value: str, name: str) -> str | None:
    """istiod's CheckServiceAccount for one value ('sa' or 'ns/sa')."""
    expected = "expected format 'serviceAccount' or 'namespace/serviceAccount'"
    if value == "":
        return f"empty value not allowed, found in {name}"
    if "*" in value:
        return f"wildcard not allowed, found in {name}; name the service account exactly"
    if value.count("/") > 1:
        return f'{expected}, found "{value}" in {name}'
    if len(value.encode()) > 320:
        return f'value cannot exceed 320 characters, found "{value}" in {name}'
    namespace, slash, account = value.partition("/")
    if slash and not namespace:
        return f'{expected}, found empty namespace "{value}" in {name}'
    if slash and not account:
        return f'{expected}, found empty serviceAccount "{value}" in {name}'
    return None


def ip_problem(value: str) -> str | None:
    """Why Go's net/netip refuses an IP address, or a CIDR range when the
    value holds '/'; IPv4 and IPv6 alike. None when accepted."""
    if "/" not in value:
        if _ip_address(value) is None:
            return (
                f"bad IP address ({value}); write an IPv4 or IPv6 address, or a CIDR range"
                " such as 10.0.0.0/16"
            )
        return None
    address, _, bits = value.rpartition("/")
    parsed = _ip_address(address)
    if parsed is None or "%" in address:
        reason = f"{address!r} is not an IP address (an IPv6 zone is not allowed in a range)"
    elif not _PREFIX_BITS.fullmatch(bits) or int(bits) > parsed.max_prefixlen:
        reason = f"the prefix length must be a number from 0 to {parsed.max_prefixlen}"
    else:
        return None
    return f"bad CIDR range ({value}): {reason}"


_PREFIX_BITS = re.compile(r"0|[1-9][0-9]{0,2}")


def _ip_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # Like Go's netip.ParseAddr: dotted quads without leading zeros, IPv6
    # with an optional zone ("fe80::1%eth0").
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def port_problem(value: str) -> str | None:
    """istiod's ValidatePorts: an unsigned decimal up to 65535 ("0" passes)."""
    digits = value.lstrip("0") or "0"
    if _DIGITS.fullmatch(value) and len(digits) <= 5 and int(digits) <= 65535:
        return None
    return f'bad port ({value}): write a port number from 0 to 65535 as a string, such as "8080"'


_DIGITS = re.compile(r"[0-9]+")

# RFC 3986 pchar: what a literal segment may hold next to {*} and {**}.
_PATH_LITERAL = re.compile(r"[a-zA-Z0-9\-._~%!$&'()+,;:@=]+")


def path_template_problem(value: str, field: str) -> str | None:
    """istiod's CheckValidPathTemplate: {*} is one segment, {**} the rest and
    the last operator; no other braces."""
    templated = "{*}" in value or "{**}" in value
    trimmed = value.strip("/")
    bad = f"invalid or unsupported path {trimmed}, found in {field}."
    seen_any = False
    for segment in trimmed.split("/"):
        if segment in ("{*}", "{**}"):
            if seen_any:
                return f"{bad} {{**}} is not the last operator"
            seen_any = segment == "{**}"
            continue
        if "{" in segment or "}" in segment:
            return (
                f"{bad} Contains '{{' or '}}' beyond a supported path template"
                " ({*} for one segment, {**} for the rest)"
            )
        if templated and not _PATH_LITERAL.fullmatch(segment):
            return f"{bad} Contains segment {segment} with invalid string literal"
    return None


# Condition keys (istiod: security.ValidateAttribute), checked in istiod's
# order: some keys are prefixes of others' families.
_PLAIN_KEYS = frozenset(
    {
        "source.namespace",
        "source.principal",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "connection.sni",
    }
)
_IP_KEYS = frozenset({"source.ip", "remote.ip", "destination.ip"})
_MAP_KEY_PREFIXES = (
    "request.headers",
    "request.experimental.inline.headers",
    "request.auth.claims",
    "experimental.envoy.filters.",
)
SUPPORTED_KEYS = (
    "request.headers[<name>], request.experimental.inline.headers[<name>], source.ip,"
    " remote.ip, source.namespace, source.serviceAccount, source.principal,"
    " request.auth.principal, request.auth.audiences, request.auth.presenter,"
    " request.auth.claims[<name>], destination.ip, destination.port, connection.sni,"
    " experimental.envoy.filters.<filter>[<key>]"
)


def _check_conditions(rule: Spec, path: str, errors: Problems) -> None:
    for k, entry in enumerate(rule.get("when") or ()):
        condition = entry or {}
        where = index(join(path, "when"), k)
        attr = condition.get("key") or ""
        if not attr:
            errors.append((join(where, "key"), "`key` must not be empty"))
            continue
        values = condition.get("values") or []
        not_values = condition.get("notValues") or []
        if not values and not not_values:
            errors.append(
                (where, f"at least one of `values` or `notValues` must be set for key {attr}")
            )
            continue
        problem = attribute_key_problem(attr)
        if problem:
            errors.append((join(where, "key"), problem))
            continue
        for field, noun, given in (
            ("values", "value", values),
            ("notValues", "notValue", not_values),
        ):
            for at, message in _condition_value_problems(attr, given, join(where, field)):
                errors.append((at, f"invalid `{noun}` for `key` {attr}: {message}"))


def attribute_key_problem(attr: str) -> str | None:
    """Why istiod refuses a `when` key; None when it is one it knows."""
    if attr.startswith(_MAP_KEY_PREFIXES):
        opening = attr.find("[")
        if attr.endswith("]") and 0 < opening < len(attr) - 2:
            return None
        family = attr.partition("[")[0]
        return f"bad key ({attr}): should have format a[b], as in {family}[name]"
    if (
        attr in _PLAIN_KEYS
        or attr in _IP_KEYS
        or attr in ("source.serviceAccount", "destination.port")
    ):
        return None
    if attr == "destination.namespace":
        return (
            "attribute destination.namespace is replaced by the metadata.namespace: a policy"
            " applies to the namespace it is created in (to every namespace when created in"
            " the root namespace)"
        )
    if attr.startswith("destination.labels"):
        return (
            f"attribute {attr} is replaced by the workload selector: use spec.selector.matchLabels"
        )
    if attr in ("destination.name", "destination.user"):
        return (
            f"deprecated attribute {attr}: only supported in v1alpha1; choose the workload"
            " with spec.selector instead"
        )
    return f"unknown attribute: {attr}; the keys Istio knows are {SUPPORTED_KEYS}"


def _condition_value_problems(attr: str, values: list[Any], path: str) -> Problems:
    if attr == "source.serviceAccount":
        found: Problems = []
        _check_service_accounts(values, attr, path, found)
        return found
    check = ip_problem if attr in _IP_KEYS else port_problem if attr == "destination.port" else None
    found = []
    _check_values(values, attr, path, found, check)
    return found


# ---------------------------------------------------------------------------
# RequestAuthentication (istiod: ValidateRequestAuthentication, validateJwtRule)

# istiod's ValidateStrictHTTPHeaderName: stricter than the CRD, no '_'.
_STRICT_HEADER = re.compile(r"[-A-Za-z0-9]+")


def check_request_authentication(spec: Spec) -> Findings:
    errors: Problems = []
    warnings: Problems = []
    _check_targeting(spec, errors, warnings)
    # Several rules may share an issuer: istiod allows it.
    for i, rule in enumerate(spec.get("jwtRules") or ()):
        _check_jwt_rule(rule or {}, index("spec.jwtRules", i), errors)
    return errors, warnings


def _check_jwt_rule(rule: Spec, path: str, errors: Problems) -> None:
    for k, audience in enumerate(rule.get("audiences") or ()):
        if audience == "":
            errors.append((index(join(path, "audiences"), k), "audience must be non-empty string"))
    # jwks_uri is the proto name of jwksUri; the CRD allows one of them.
    uri_field = "jwksUri" if rule.get("jwksUri") is not None else "jwks_uri"
    uri = rule.get(uri_field) or ""
    if not rule.get("issuer") and not uri:
        errors.append(
            (
                path,
                "issuer or jwksUri must be non-empty string: set issuer to the tokens' iss claim",
            )
        )
    if uri and (problem := jwks_uri_problem(uri)):
        errors.append((join(path, uri_field), problem))
    jwks = rule.get("jwks") or ""
    if jwks and (problem := jwks_problem(jwks)):
        errors.append((join(path, "jwks"), f"jwks parse error: {problem}"))
    _check_token_locations(rule, path, errors)
    _check_claim_headers(rule.get("outputClaimToHeaders") or (), path, errors)
    timeout = rule.get("timeout")
    if timeout is not None and (problem := timeout_problem(timeout)):
        errors.append((join(path, "timeout"), problem))


def _check_token_locations(rule: Spec, path: str, errors: Problems) -> None:
    for k, header in enumerate(rule.get("fromHeaders") or ()):
        if not (header or {}).get("name"):
            errors.append(
                (
                    join(index(join(path, "fromHeaders"), k), "name"),
                    "location header name must be non-empty string",
                )
            )
    for field, message in (
        ("fromParams", "location query must be non-empty string"),
        ("fromCookies", "cookie name must be non-empty string"),
    ):
        for k, name in enumerate(rule.get(field) or ()):
            if name == "":
                errors.append((index(join(path, field), k), message))


def _check_claim_headers(entries: Any, path: str, errors: Problems) -> None:
    for k, entry in enumerate(entries):
        where = index(join(path, "outputClaimToHeaders"), k)
        claim, header = (entry or {}).get("claim") or "", (entry or {}).get("header") or ""
        if not claim or not header:
            errors.append(
                (where, "outputClaimToHeaders header and claim value must be non-empty string")
            )
        elif not _STRICT_HEADER.fullmatch(header):
            errors.append(
                (
                    join(where, "header"),
                    f"header name {header} is not a valid header name: use letters, digits"
                    " and '-' only",
                )
            )


def jwks_uri_problem(uri: str) -> str | None:
    """istiod's ParseJwksURI: Go's url.Parse, then an http or https scheme."""
    try:
        url = parse_go_url(uri)
    except ValueError as e:
        return f"{uri!r} is not a valid URL: {e}"
    if url.scheme not in ("http", "https"):
        return (
            f'URI scheme "{url.scheme}" is not supported; jwksUri must start with http://'
            " or https://"
        )
    # Go's Atoi on the port: any length that fits in an int64.
    digits = url.port.lstrip("0")
    if len(digits) > 19 or (digits and int(digits) > _INT64_MAX):
        return f"{uri!r} has a port out of range"
    return None


_INT64_MAX = 2**63 - 1

# A JSON Web Key needs these members, by key type (lestrrat-go/jwx, which
# istiod parses inline keys with).
_JWK_REQUIRED = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "oct": ("k",), "OKP": ("crv", "x")}
_JWK_BYTES = frozenset({"n", "e", "d", "p", "q", "dp", "dq", "qi", "x", "y", "k"})
_JWK_CURVES = frozenset({"P-256", "P-384", "P-521", "Ed25519", "Ed448", "X25519", "X448"})


def jwks_problem(text: str) -> str | None:
    """Why an inline ``jwks`` is not a JSON Web Key Set; None when it is.
    Like istiod, a lone key (an object without "keys") is a set of one."""
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as e:
        return f"not valid JSON ({e})"
    if not isinstance(document, dict):
        return 'expected a JSON object such as {"keys": [{"kty": "RSA", "n": "...", "e": "AQAB"}]}'
    if "keys" not in document:
        return _jwk_problem(document)
    keys = document["keys"]
    if keys is None:
        return None
    if not isinstance(keys, list):
        return '"keys" must be a list of keys'
    for i, jwk in enumerate(keys):
        problem = _jwk_problem(jwk)
        if problem:
            return f'key #{i} in "keys": {problem}'
    return None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _jwk_problem(jwk: Any) -> str | None:
    if not isinstance(jwk, dict):
        return "a key must be a JSON object"
    kty = jwk.get("kty")
    if kty not in _JWK_REQUIRED:
        return f"invalid key type {kty!r}: use RSA, EC, oct or OKP"
    for name in _JWK_REQUIRED[kty]:
        if not isinstance(jwk.get(name), str):
            return f"required field {name} is missing from the {kty} key"
    for name, value in jwk.items():
        if name in _JWK_BYTES and not _is_base64(value):
            return f"field {name} of the {kty} key is not base64url"
    if "crv" in _JWK_REQUIRED[kty] and jwk["crv"] not in _JWK_CURVES:
        return f"unknown curve {jwk['crv']!r}"
    return None


def _is_base64(value: Any) -> bool:
    # jwx picks the alphabet and padding from the text itself.
    if not isinstance(value, str):
        return False
    altchars = None if "+" in value or "/" in value else b"-_"
    padded = value if value.endswith("=") else value + "=" * (-len(value) % 4)
    try:
        base64.b64decode(padded, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def timeout_problem(value: Any) -> str | None:
    """istiod's ValidateDuration: at least 1ms, in whole milliseconds."""
    nanos = duration_nanos(value) if isinstance(value, str) else None
    if nanos is None:
        return f"invalid duration {value!r}; use a value like 5s or 500ms"
    if nanos < 1_000_000:
        return "duration must be greater than 1ms"
    if nanos % 1_000_000:
        return f"only durations to ms precision are supported; round {value} to whole milliseconds"
    return None


# ---------------------------------------------------------------------------
# The istio.io/dry-run annotation (istiod: checkDryRunAnnotation, run on
# every Istio kind before its own checks)

DRY_RUN_ANNOTATION = "istio.io/dry-run"
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_bool(text: str) -> bool | None:
    """Go's strconv.ParseBool: the value, or None when Go refuses the text."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def check_dry_run_annotation(
    kind: str, annotations: Mapping[str, str], spec: Mapping[str, Any]
) -> Problems:
    """Problems with ``istio.io/dry-run`` on an Istio resource of ``kind``."""
    if DRY_RUN_ANNOTATION not in (annotations or {}):
        return []
    path = key("metadata.annotations", DRY_RUN_ANNOTATION)
    value = annotations[DRY_RUN_ANNOTATION]
    if kind != "AuthorizationPolicy":
        return [
            (
                path,
                f"unsupported annotation {DRY_RUN_ANNOTATION}, please remove the annotation:"
                " only an AuthorizationPolicy can be dry-run",
            )
        ]
    action = (spec or {}).get("action") or "ALLOW"
    if action in ("AUDIT", "CUSTOM"):
        return [
            (
                path,
                f"the annotation {DRY_RUN_ANNOTATION} currently only supports action ALLOW/DENY,"
                f" found action {action}; remove the annotation",
            )
        ]
    # A value that is not a string is the metadata check's to report; an
    # action outside the enum is the schema's.
    if action in ("ALLOW", "DENY") and isinstance(value, str) and parse_bool(value) is None:
        return [
            (
                path,
                f'annotation {DRY_RUN_ANNOTATION} with invalid value ({value}): use "true" or'
                ' "false" (Go also reads 1, t, T, TRUE, True, 0, f, F, FALSE, False)',
            )
        ]
    return []


CHECKS: Mapping[str, Callable[[Spec], Findings]] = {
    "PeerAuthentication": check_peer_authentication,
    "AuthorizationPolicy": check_authorization_policy,
    "RequestAuthentication": check_request_authentication,
}

# ---------------------------------------------------------------------------
# Legacy MeshPolicy / Policy: the shape (proto istio.authentication.v1alpha1)

_STRING_MATCH = Obj(
    {"exact": Str(), "prefix": Str(), "suffix": Str(), "regex": Str()},
    exclusive=(("exact", "prefix", "suffix", "regex"),),
    closed=True,
)

_JWT = Obj(
    {
        "issuer": Str(),
        "audiences": Arr(Str()),
        "jwksUri": Str(),
        "jwks": Str(),
        "jwtHeaders": Arr(Str()),
        "jwtParams": Arr(Str()),
        "triggerRules": Arr(
            Obj(
                {"excludedPaths": Arr(_STRING_MATCH), "includedPaths": Arr(_STRING_MATCH)},
                closed=True,
            )
        ),
    },
    closed=True,
)

_PEER = Obj(
    {
        "mtls": Obj(
            {"allowTls": Bool(), "mode": Str(enum=("STRICT", "PERMISSIVE"))},
            closed=True,
        ),
        "jwt": _JWT,
    },
    exclusive=(("mtls", "jwt"),),
    closed=True,
)

_TARGET = Obj(
    {
        "name": Str(),
        "labels": Map(Str()),
        "ports": Arr(
            Obj(
                {"number": Int(0, U32), "name": Str()}, exclusive=(("number", "name"),), closed=True
            )
        ),
    },
    required=("name",),
    closed=True,
)

LEGACY_POLICY = Obj(
    {
        "targets": Arr(_TARGET),
        "peers": Arr(_PEER),
        "peerIsOptional": Bool(),
        "origins": Arr(Obj({"jwt": _JWT}, required=("jwt",), closed=True)),
        "originIsOptional": Bool(),
        "principalBinding": Str(enum=("USE_PEER", "USE_ORIGIN")),
    },
    closed=True,
)


def legacy_peer_mode(spec: Spec) -> MtlsMode:
    """What a valid legacy spec's ``peers`` mean as a PeerAuthentication mode."""
    for peer in spec.get("peers") or ():
        # "mtls" present with no value (``- mtls:``) still selects mTLS.
        if isinstance(peer, dict) and "mtls" in peer:
            if spec.get("peerIsOptional") is True:
                return "PERMISSIVE"
            mode = (peer["mtls"] or {}).get("mode") or "STRICT"
            return "PERMISSIVE" if mode == "PERMISSIVE" else "STRICT"
    return "DISABLE"


def check_legacy_policy(kind: str, name: str, spec: Any) -> Findings:
    """Errors and warnings of a MeshPolicy or Policy; ``spec`` as written
    (nulls kept: a bare ``mtls:`` is meaningful)."""
    errors: Problems = []
    body = {} if spec is None else spec
    check(LEGACY_POLICY, body, "spec", errors)
    if errors:
        return errors, []
    _check_legacy_scope(kind, name, body, errors)
    for i, target in enumerate(body.get("targets") or ()):
        _check_target(target, index("spec.targets", i), errors)
    _check_jwts(body, errors)
    _refuse_untranslatable_jwt(body, errors)
    if errors:
        return errors, []
    return errors, _legacy_warnings(kind, body)


def _check_legacy_scope(kind: str, name: str, spec: Spec, out: Problems) -> None:
    has_targets = bool(spec.get("targets"))
    if kind == "MeshPolicy":
        if name and name != "default":
            out.append(
                (
                    "metadata.name",
                    f"a MeshPolicy must be named 'default' (Istio reads no other), got {name!r}",
                )
            )
        if has_targets:
            out.append(
                (
                    "spec.targets",
                    "a MeshPolicy covers the whole mesh and cannot have targets;"
                    " put them in a Policy in the Services' namespace",
                )
            )
        return
    if not has_targets and name and name != "default":
        out.append(
            (
                "metadata.name",
                "a Policy without targets covers its whole namespace and must be named"
                f" 'default', got {name!r}; add targets or rename it",
            )
        )
    if has_targets and name == "default":
        out.append(
            (
                "spec.targets",
                "the Policy named 'default' is the namespace-wide one and cannot have targets;"
                " move them to a Policy with another name",
            )
        )


def _check_target(target: Spec, path: str, out: Problems) -> None:
    name = target["name"]
    if not name:
        out.append((join(path, "name"), "required"))
    elif problem := dns_label_problem(name):
        out.append((join(path, "name"), f"must be a Service name: {problem}"))
    check_labels(target.get("labels"), join(path, "labels"), out)
    for j, port in enumerate(target.get("ports") or ()):
        where = index(join(path, "ports"), j)
        number, port_name = port.get("number"), port.get("name")
        if number is None and not port_name:
            out.append((where, "needs a Service port number or name"))
        elif number is not None and not 1 <= number <= 65535:
            out.append((join(where, "number"), f"must be between 1 and 65535, got {number}"))
        elif port_name:
            problem = dns_label_problem(port_name)
            if problem:
                out.append((join(where, "name"), f"must be a Service port name: {problem}"))


def _jwts(spec: Spec) -> list[tuple[str, Spec]]:
    # Only origins: a jwt under peers is refused on its own.
    return [
        (join(index("spec.origins", i), "jwt"), o["jwt"])
        for i, o in enumerate(spec.get("origins") or ())
    ]


def _check_jwts(spec: Spec, out: Problems) -> None:
    issuers: set[str] = set()
    for path, jwt in _jwts(spec):
        issuer = jwt.get("issuer") or ""
        if not issuer:
            out.append((join(path, "issuer"), "required"))
        elif issuer in issuers:
            out.append(
                (
                    join(path, "issuer"),
                    f"issuer {issuer!r} is already used by another jwt of this policy",
                )
            )
        issuers.add(issuer)
        for field in ("audiences", "jwtHeaders", "jwtParams"):
            for j, value in enumerate(jwt.get(field) or ()):
                if value == "":
                    out.append((index(join(path, field), j), "must not be empty"))
        uri = jwt.get("jwksUri")
        if uri and not _is_http_url(uri):
            out.append(
                (join(path, "jwksUri"), f"{uri!r} must be an http:// or https:// URL with a host")
            )


def _refuse_untranslatable_jwt(spec: Spec, out: Problems) -> None:
    """Origins become a RequestAuthentication plus an AuthorizationPolicy;
    refuse the JWT forms that have no faithful modern equivalent, rather than
    enforce something else than what was written."""
    for i, peer in enumerate(spec.get("peers") or ()):
        if peer.get("jwt") is not None:
            out.append(
                (
                    join(index("spec.peers", i), "jwt"),
                    "peer JWT authentication is not supported: Istio never implemented it"
                    " and the modern API has no equivalent. Move the jwt to origins to"
                    " authenticate end users, or remove it (use `mtls: {}` for peers)",
                )
            )
    for path, jwt in _jwts(spec):
        if jwt.get("triggerRules"):
            out.append(
                (
                    join(path, "triggerRules"),
                    "triggerRules cannot be translated faithfully: RequestAuthentication"
                    " checks a token on every path, so a request carrying an invalid token"
                    " on an excluded path would be refused (401) where Istio 1.x let it"
                    " through. Remove triggerRules, and write the modern form instead: a"
                    " RequestAuthentication with this jwt, plus an AuthorizationPolicy (ALLOW)"
                    ' with one rule requiring from.source.requestPrincipals ["*"] and one rule'
                    " whose to.operation.paths lists the paths that need no token (notPaths"
                    " for includedPaths)",
                )
            )


def _is_http_url(uri: str) -> bool:
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(host)


# ---------------------------------------------------------------------------
# Legacy warnings: what is deprecated, ignored, or not enforced


def deprecation_message(kind: str) -> str:
    return (
        f"{kind} ({LEGACY_API_VERSION}) is deprecated since Istio 1.4 and was removed in 1.6;"
        f" Mizzen enforces its mTLS part as the equivalent {REPLACEMENT} and its origins"
        " as a RequestAuthentication with an AuthorizationPolicy, the forms to write instead"
    )


def _legacy_warnings(kind: str, spec: Spec) -> Problems:
    out: Problems = [("", deprecation_message(kind))]
    mode = legacy_peer_mode(spec)
    seen_mtls = False
    for i, peer in enumerate(spec.get("peers") or ()):
        where = index("spec.peers", i)
        if "mtls" in peer:
            if seen_mtls:
                out.append(
                    (join(where, "mtls"), "ignored: only the first mtls entry of peers counts")
                )
            elif (peer["mtls"] or {}).get("allowTls") is True:
                out.append(
                    (
                        join(join(where, "mtls"), "allowTls"),
                        "ignored: PeerAuthentication has no mode that accepts TLS without a"
                        f" client certificate; this policy's mode is {mode}",
                    )
                )
            seen_mtls = True
        elif peer.get("jwt") is None:
            out.append(
                (where, "an empty peer method is ignored; write `mtls: {}` to require mutual TLS")
            )
    for i, target in enumerate(spec.get("targets") or ()):
        if target.get("labels"):
            out.append(
                (
                    join(index("spec.targets", i), "labels"),
                    "ignored: Istio never implemented target labels; the Service named in"
                    " name chooses the workloads",
                )
            )
    if spec.get("principalBinding") == "USE_ORIGIN":
        out.append(
            (
                "spec.principalBinding",
                "USE_ORIGIN has no modern counterpart: an AuthorizationPolicy names end users"
                " with requestPrincipals (<iss>/<sub> of the token) and calling workloads with"
                " principals; rewrite rules that relied on the origin being the principal",
            )
        )
    return out
