"""RBAC filters (HTTP and network) from AuthorizationPolicies.

Istio's model, which this follows:

* the policies of a workload are those of the root namespace (mesh-wide,
  or selecting by labels in any namespace) and of its own namespace
  (namespace-wide, or selecting it), oldest first;
* CUSTOM decides first (through ext_authz, see ``ext_authz``), then DENY,
  then ALLOW: one RBAC filter per action, AUDIT (Envoy's LOG) first, and a
  workload with no ALLOW policy allows what was not denied;
* each rule is one RBAC policy named ``ns[<ns>]-policy[<name>]-rule[<i>]``,
  the name Envoy reports in ``rbac_access_denied_matched_policy[...]``;
  a policy without rules is one policy that never matches (so an ALLOW one
  allows nothing), ``rules: [{}]`` one that matches everything;
* a rule's ``from`` entries are OR'ed principals, its ``to`` entries OR'ed
  permissions, its ``when`` conditions AND'ed into every principal (source
  attributes) or every permission (destination attributes);
* values are exact, ``prefix*``, ``*suffix``, or ``*`` (present);
* on a TCP chain the HTTP-only fields (hosts, methods, paths, headers,
  request principals, ``request.auth.*``) cannot be checked: an ALLOW rule
  using one is dropped (it allows nothing), a DENY or AUDIT rule loses that
  field only (it denies more), as in Istio;
* ``istio.io/dry-run`` policies go to ``shadow_rules``: Envoy evaluates and
  logs them but never enforces them.

Pure: protobuf messages out, nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envoy.config.core.v3 import address_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.extensions.path.match.uri_template.v3 import uri_template_match_pb2
from envoy.type.matcher.v3 import metadata_pb2, path_pb2, string_pb2, value_pb2
from google.protobuf import wrappers_pb2

from mizzen.api.resources import (
    AuthorizationPolicy,
    AuthzAction,
    AuthzCondition,
    AuthzOperation,
    AuthzRule,
    AuthzSource,
)
from mizzen.model.snapshot import MeshSnapshot
from mizzen.translate.filters import pack
from mizzen.translate.jwt_authn import JWT_FILTER
from mizzen.translate.lookup import policy_selects

HTTP_RBAC_FILTER = "envoy.filters.http.rbac"
NETWORK_RBAC_FILTER = "envoy.filters.network.rbac"
TCP_STAT_PREFIX = "tcp."
# Stat and metadata prefixes of dry-run (shadow) decisions, as Istio names them.
DRY_RUN_PREFIX = {"ALLOW": "istio_dry_run_allow_", "DENY": "istio_dry_run_deny_"}
CUSTOM_PREFIX = "istio-ext-authz-"
CUSTOM_STAT_PREFIX = "istio_ext_authz_"
URI_TEMPLATE = "envoy.path.match.uri_template.uri_template_matcher"

_ENVOY_ACTION = {
    "ALLOW": rbac_pb2.RBAC.ALLOW,
    "DENY": rbac_pb2.RBAC.DENY,
    "AUDIT": rbac_pb2.RBAC.LOG,
    "CUSTOM": rbac_pb2.RBAC.DENY,
}

# Envoy protobuf messages (xds-protos has no type stubs).
Msg = Any
Principal = rbac_pb2.Principal
Permission = rbac_pb2.Permission


class Untranslatable(Exception):
    """A rule that cannot be built (a condition key no generator knows,
    which istiod's validation lets through): istiod skips the rule."""


class HttpOnly(Untranslatable):
    """A field that only HTTP requests carry, met while building for TCP."""


# ---------------------------------------------------------------------------
# Which policies apply


def workload_policies(
    snapshot: MeshSnapshot, namespace: str, labels: Mapping[str, str]
) -> tuple[AuthorizationPolicy, ...]:
    """The policies that apply to one workload, oldest first."""
    root = snapshot.root_namespace
    return tuple(
        p for p in snapshot.authorization_policies if policy_selects(p, root, namespace, labels)
    )


def policy_key(policy: AuthorizationPolicy, index: int) -> str:
    return f"ns[{policy.meta.namespace}]-policy[{policy.meta.name}]-rule[{index}]"


# ---------------------------------------------------------------------------
# String matching: exact, prefix*, *suffix, * (present)


def _string(value: str, prefix: str = "", *, ignore_case: bool = False) -> Msg:
    # Istio reads a leading * before a trailing one (*abc* is a suffix).
    if value == "*":
        return string_pb2.StringMatcher(safe_regex={"regex": ".+"})
    if value.startswith("*"):
        return string_pb2.StringMatcher(suffix=value[1:], ignore_case=ignore_case)
    if value.endswith("*"):
        return string_pb2.StringMatcher(prefix=prefix + value[:-1], ignore_case=ignore_case)
    return string_pb2.StringMatcher(exact=prefix + value, ignore_case=ignore_case)


def _regex(pattern: str) -> Msg:
    return string_pb2.StringMatcher(safe_regex={"regex": pattern})


def _wildcard_regex(value: str) -> str:
    """``value`` as a regex where ``*`` is any run of characters."""
    return ".*".join(re.escape(part) for part in value.split("*"))


def _header(name: str, value: str, *, ignore_case: bool = False) -> Msg:
    if value == "*":
        return route_components_pb2.HeaderMatcher(name=name, present_match=True)
    return route_components_pb2.HeaderMatcher(
        name=name, string_match=_string(value, ignore_case=ignore_case)
    )


def _cidr(value: str) -> Msg:
    address, _, length = value.partition("/")
    bits = 128 if ":" in address else 32
    return address_pb2.CidrRange(
        address_prefix=address, prefix_len=wrappers_pb2.UInt32Value(value=int(length or bits))
    )


# ---------------------------------------------------------------------------
# Principals (who): the source side of a rule


def _any_id(ids: list[Msg]) -> Msg:
    return ids[0] if len(ids) == 1 else Principal(or_ids=rbac_pb2.Principal.Set(ids=ids))


def _all_ids(ids: list[Msg]) -> Msg:
    if not ids:
        return Principal(any=True)
    return Principal(and_ids=rbac_pb2.Principal.Set(ids=ids))


def _principal_name(matcher: Msg) -> Msg:
    return Principal(authenticated=rbac_pb2.Principal.Authenticated(principal_name=matcher))


def _jwt_claim(path: Sequence[str], matcher: value_pb2.ValueMatcher) -> Msg:
    return metadata_pb2.MetadataMatcher(
        filter=JWT_FILTER,
        path=[metadata_pb2.MetadataMatcher.PathSegment(key=k) for k in ("payload", *path)],
        value=matcher,
    )


def _claim_value(value: str) -> Msg:
    """A claim that is a string or a list of strings containing ``value``."""
    single = value_pb2.ValueMatcher(string_match=_string(value))
    listed = value_pb2.ValueMatcher(list_match=value_pb2.ListMatcher(one_of=single))
    return value_pb2.ValueMatcher(or_match=value_pb2.OrMatcher(value_matchers=[listed, single]))


def _claim_string(claim: str, matcher: Msg) -> Msg:
    return Principal(metadata=_jwt_claim([claim], value_pb2.ValueMatcher(string_match=matcher)))


def _request_principal(value: str) -> Msg:
    """``<iss>/<sub>``, split at the last slash. As in Istio, a ``*`` counts
    only at either end of the whole value: ``*x/y`` is an issuer ending in
    x with subject y, ``x/y*`` issuer x with a subject starting y; a value
    without a slash names an issuer with an empty subject."""
    present = _regex(".+")
    if value == "*":
        iss, sub = present, present
    elif value.startswith("*"):
        head, slash, tail = value[1:].rpartition("/")
        if slash:
            iss = string_pb2.StringMatcher(suffix=head) if head else present
            sub = string_pb2.StringMatcher(exact=tail)
        else:
            iss, sub = present, string_pb2.StringMatcher(suffix=tail)
    elif value.endswith("*"):
        head, slash, tail = value[:-1].rpartition("/")
        if slash:
            iss = string_pb2.StringMatcher(exact=head)
            sub = string_pb2.StringMatcher(prefix=tail) if tail else present
        else:
            iss, sub = string_pb2.StringMatcher(prefix=tail), present
    else:
        head, slash, tail = value.rpartition("/")
        iss = string_pb2.StringMatcher(exact=head if slash else tail)
        sub = string_pb2.StringMatcher(exact=tail if slash else "")
    ids = [_claim_string("iss", iss), _claim_string("sub", sub)]
    return Principal(and_ids=rbac_pb2.Principal.Set(ids=ids))


class _Identities:
    """Principal matchers that need the trust domain or the policy namespace."""

    def __init__(self, trust_domain: str, namespace: str) -> None:
        self.trust_domain = trust_domain
        self.namespace = namespace

    def principal(self, value: str) -> Msg:
        # <td>/ns/<ns>/sa/<sa> written for cluster.local means this mesh's
        # own trust domain (Istio's trust domain aliasing).
        parts = value.split("/")
        if len(parts) == 5 and parts[0] == "cluster.local" and parts[1] == "ns":
            value = "/".join([self.trust_domain, *parts[1:]])
        return self._spiffe(value)

    @staticmethod
    def _spiffe(value: str) -> Msg:
        if value == "*":
            return _principal_name(_regex(".+"))
        return _principal_name(_string(value, "spiffe://"))

    @staticmethod
    def namespace_of(value: str) -> Msg:
        return _principal_name(_regex(f".*/ns/{_wildcard_regex(value)}/.*"))

    def service_account(self, value: str) -> Msg:
        namespace, _, name = value.rpartition("/")
        namespace = namespace or self.namespace
        ns, sa = re.escape(namespace), re.escape(name)
        return _principal_name(_regex(f"spiffe://.+/ns/{ns}/(.+/|)sa/{sa}(/.+)?"))

    @staticmethod
    def trust_domain_of(value: str) -> Msg:
        if value == "*":
            return _principal_name(_regex("spiffe://.+"))
        if value.startswith("*"):
            return _principal_name(_regex(f"spiffe://.*{re.escape(value[1:])}/.*"))
        return _principal_name(
            string_pb2.StringMatcher(
                prefix=f"spiffe://{value.rstrip('*')}" + ("" if value.endswith("*") else "/")
            )
        )


def _source_fields(ids: _Identities) -> list[tuple[str, Callable[[str], Msg], bool]]:
    """(AuthzSource field, matcher of one value, HTTP only), in Istio's order."""
    return [
        ("principals", ids.principal, False),
        ("trust_domains", ids.trust_domain_of, False),
        ("request_principals", _request_principal, True),
        ("service_accounts", ids.service_account, False),
        ("namespaces", ids.namespace_of, False),
        ("remote_ip_blocks", lambda v: Principal(remote_ip=_cidr(v)), False),
        ("ip_blocks", lambda v: Principal(direct_remote_ip=_cidr(v)), False),
    ]


def _values(
    values: Iterable[str], not_values: Iterable[str], one: Callable[[str], Msg]
) -> list[Msg]:
    out = []
    if values := list(values):
        out.append(_any_id([one(v) for v in values]))
    if not_values := list(not_values):
        out.append(Principal(not_id=_any_id([one(v) for v in not_values])))
    return out


def _source_ids(source: AuthzSource, ids: _Identities, tcp: bool, strict: bool) -> list[Msg]:
    out: list[Msg] = []
    for name, one, http_only in _source_fields(ids):
        values, not_values = getattr(source, name), getattr(source, "not_" + name)
        if not values and not not_values:
            continue
        if http_only and tcp:
            if strict:
                raise HttpOnly(name)
            continue
        out.extend(_values(values, not_values, one))
    return out


# ---------------------------------------------------------------------------
# Conditions (when)

_PERMISSION_KEYS = ("destination.ip", "destination.port", "connection.sni")
_HTTP_ONLY_KEYS = ("request.headers[", "request.auth.", "request.experimental.")


def _bracketed(key: str) -> list[str]:
    """``a.b[c][d]`` -> ``["c", "d"]``."""
    return re.findall(r"\[([^\]]*)\]", key)


def _condition_principal(key: str, ids: _Identities) -> Callable[[str], Msg] | None:
    if key.startswith("request.headers["):
        name = _bracketed(key)[0]
        return lambda v: Principal(header=_header(name, v))
    if key.startswith("request.experimental.inline.headers["):
        name = _bracketed(key)[0]
        return lambda v: Principal(header=_header_in_list(name, v))
    if key.startswith("request.auth.claims["):
        path = _bracketed(key)
        return lambda v: Principal(metadata=_jwt_claim(path, _claim_value(v)))
    simple: dict[str, Callable[[str], Msg]] = {
        "source.ip": lambda v: Principal(direct_remote_ip=_cidr(v)),
        "remote.ip": lambda v: Principal(remote_ip=_cidr(v)),
        "source.namespace": ids.namespace_of,
        "source.principal": ids.principal,
        "source.serviceAccount": ids.service_account,
        "request.auth.principal": _request_principal,
        "request.auth.audiences": lambda v: Principal(
            metadata=_jwt_claim(["aud"], _claim_value(v))
        ),
        "request.auth.presenter": lambda v: Principal(
            metadata=_jwt_claim(["azp"], _claim_value(v))
        ),
    }
    return simple.get(key)


def _header_in_list(name: str, value: str) -> Msg:
    # The value is one item of a comma-separated header.
    item = re.escape(value)
    pattern = f"^{item}$|^{item},.*|.*,{item},.*|.*,{item}$"
    return route_components_pb2.HeaderMatcher(name=name, string_match=_regex(pattern))


def _condition_permission(key: str) -> Callable[[str], Msg] | None:
    if key == "destination.ip":
        return lambda v: Permission(destination_ip=_cidr(v))
    if key == "destination.port":
        return lambda v: Permission(destination_port=int(v))
    if key == "connection.sni":
        return lambda v: Permission(requested_server_name=_string(v))
    if key.startswith("experimental.envoy.filters."):
        filter_name, _, rest = key.partition("[")
        path = [filter_name.removeprefix("experimental."), *_bracketed("[" + rest)]
        return lambda v: Permission(metadata=_filter_metadata(path, v))
    return None


def _filter_metadata(path: Sequence[str], value: str) -> Msg:
    if value.startswith("[") and value.endswith("]"):
        one = value_pb2.ValueMatcher(string_match=_string(value[1:-1]))
        matcher = value_pb2.ValueMatcher(list_match=value_pb2.ListMatcher(one_of=one))
    else:
        matcher = value_pb2.ValueMatcher(string_match=_string(value))
    return metadata_pb2.MetadataMatcher(
        filter=path[0],
        path=[metadata_pb2.MetadataMatcher.PathSegment(key=k) for k in path[1:]],
        value=matcher,
    )


# ---------------------------------------------------------------------------
# Permissions (what): the destination side of a rule


def _any_rule(rules: list[Msg]) -> Msg:
    return (
        rules[0] if len(rules) == 1 else Permission(or_rules=rbac_pb2.Permission.Set(rules=rules))
    )


def _all_rules(rules: list[Msg]) -> Msg:
    if not rules:
        return Permission(any=True)
    return Permission(and_rules=rbac_pb2.Permission.Set(rules=rules))


def _path(value: str) -> Msg:
    if "{*}" in value or "{**}" in value:
        template = value.replace("{**}", "**").replace("{*}", "*")
        config = uri_template_match_pb2.UriTemplateMatchConfig(path_template=template)
        return Permission(uri_template={"name": URI_TEMPLATE, "typed_config": pack(config)})
    return Permission(url_path=path_pb2.PathMatcher(path=_string(value)))


_OPERATION_FIELDS: list[tuple[str, Callable[[str], Msg], bool]] = [
    ("hosts", lambda v: Permission(header=_header(":authority", v, ignore_case=True)), True),
    ("methods", lambda v: Permission(header=_header(":method", v)), True),
    ("paths", _path, True),
    ("ports", lambda v: Permission(destination_port=int(v)), False),
]


def _operation_rules(op: AuthzOperation, tcp: bool, strict: bool) -> list[Msg]:
    out: list[Msg] = []
    for name, one, http_only in _OPERATION_FIELDS:
        values, not_values = getattr(op, name), getattr(op, "not_" + name)
        if not values and not not_values:
            continue
        if http_only and tcp:
            if strict:
                raise HttpOnly(name)
            continue
        if values:
            out.append(_any_rule([one(v) for v in values]))
        if not_values:
            out.append(Permission(not_rule=_any_rule([one(v) for v in not_values])))
    return out


# ---------------------------------------------------------------------------
# Rule -> Envoy Policy


@dataclass(frozen=True)
class _Conditions:
    principals: list[Msg]
    permissions: list[Msg]


def _conditions(
    when: Sequence[AuthzCondition], ids: _Identities, tcp: bool, strict: bool
) -> _Conditions:
    principals: list[Msg] = []
    permissions: list[Msg] = []
    for condition in when:
        if tcp and condition.key.startswith(_HTTP_ONLY_KEYS):
            if strict:
                raise HttpOnly(condition.key)
            continue
        permission = _condition_permission(condition.key)
        if permission is not None:
            if condition.values:
                permissions.append(_any_rule([permission(v) for v in condition.values]))
            if condition.not_values:
                not_any = _any_rule([permission(v) for v in condition.not_values])
                permissions.append(Permission(not_rule=not_any))
            continue
        principal = _condition_principal(condition.key, ids)
        if principal is None:
            raise Untranslatable(condition.key)
        principals.extend(_values(condition.values, condition.not_values, principal))
    return _Conditions(principals, permissions)


def rule_policy(rule: AuthzRule, ids: _Identities, *, tcp: bool, strict: bool) -> Msg:
    """One rule as an Envoy policy; raises HttpOnly for an HTTP-only field on
    TCP when ``strict`` (ALLOW), else leaves such fields out."""
    when = _conditions(rule.when, ids, tcp, strict)
    principals = [
        _all_ids(_source_ids(s, ids, tcp, strict) + when.principals) for s in rule.sources
    ] or [_all_ids(when.principals)]
    permissions = [
        _all_rules(_operation_rules(op, tcp, strict) + when.permissions) for op in rule.operations
    ] or [_all_rules(when.permissions)]
    return rbac_pb2.Policy(principals=principals, permissions=permissions)


def _never() -> Msg:
    return rbac_pb2.Policy(
        principals=[Principal(not_id=Principal(any=True))],
        permissions=[Permission(not_rule=Permission(any=True))],
    )


def policy_rules(
    policy: AuthorizationPolicy, trust_domain: str, *, tcp: bool, key_prefix: str = ""
) -> dict[str, Msg]:
    """Envoy policies of one AuthorizationPolicy, by Istio's policy key."""
    if not policy.rules:
        return {key_prefix + policy_key(policy, 0): _never()}
    ids = _Identities(trust_domain, policy.meta.namespace)
    strict = policy.action == "ALLOW"
    out = {}
    for i, rule in enumerate(policy.rules):
        try:
            out[key_prefix + policy_key(policy, i)] = rule_policy(rule, ids, tcp=tcp, strict=strict)
        except Untranslatable:
            continue  # as istiod: skipped (an ALLOW rule then allows nothing)
    return out


# ---------------------------------------------------------------------------
# Filters


@dataclass(frozen=True)
class RbacConfig:
    """The enforced and dry-run rules of one action."""

    action: AuthzAction
    rules: Mapping[str, Msg]
    shadow: Mapping[str, Msg]
    # Some policy is enforced (or dry-run): even with no rules left (an
    # ALLOW whose rules all dropped on TCP) the engine must be there.
    enforced: bool = True
    dry_run: bool = False


def action_configs(
    policies: Sequence[AuthorizationPolicy], trust_domain: str, *, tcp: bool
) -> list[RbacConfig]:
    """AUDIT, DENY and ALLOW configs, in filter order, for the actions some
    policy uses (CUSTOM is ``ext_authz``'s)."""
    out = []
    for action in ("AUDIT", "DENY", "ALLOW"):
        rules: dict[str, Msg] = {}
        shadow: dict[str, Msg] = {}
        chosen = [p for p in policies if p.action == action]
        for policy in chosen:
            target = shadow if policy.dry_run else rules
            for key, rule in policy_rules(policy, trust_domain, tcp=tcp).items():
                # A translated legacy policy may share a user policy's name.
                while key in target:
                    key += "'"
                target[key] = rule
        if chosen:
            enforced = any(not p.dry_run for p in chosen)
            dry_run = any(p.dry_run for p in chosen)
            out.append(RbacConfig(action, rules, shadow, enforced, dry_run))
    return out


def _engine(action: AuthzAction, policies: Mapping[str, Msg]) -> Msg:
    engine = rbac_pb2.RBAC(action=_ENVOY_ACTION[action])
    for name in sorted(policies):
        engine.policies[name].CopyFrom(policies[name])
    return engine


def _rbac(message: Msg, config: RbacConfig) -> Msg:
    if config.enforced:
        message.rules.CopyFrom(_engine(config.action, config.rules))
    if config.dry_run:
        message.shadow_rules.CopyFrom(_engine(config.action, config.shadow))
        message.shadow_rules_stat_prefix = DRY_RUN_PREFIX[config.action]
    return message


def http_rbac(config: RbacConfig) -> Msg:
    return _rbac(http_rbac_pb2.RBAC(), config)


def network_rbac(config: RbacConfig) -> Msg:
    return _rbac(network_rbac_pb2.RBAC(stat_prefix=TCP_STAT_PREFIX), config)


def custom_shadow(policies: Mapping[str, Msg], *, tcp: bool) -> Msg:
    """The RBAC filter in front of ext_authz: CUSTOM rules as shadow DENY
    rules, so that ext_authz runs only for requests one of them matches."""
    engine = _engine("CUSTOM", policies)
    if tcp:
        return network_rbac_pb2.RBAC(
            stat_prefix=TCP_STAT_PREFIX,
            shadow_rules=engine,
            shadow_rules_stat_prefix=CUSTOM_STAT_PREFIX,
        )
    return http_rbac_pb2.RBAC(shadow_rules=engine, shadow_rules_stat_prefix=CUSTOM_STAT_PREFIX)
