"""The security filters in front of a workload: what inbound chains (and
gateway listeners) run before routing or proxying.

HTTP, in Istio's order: CUSTOM (shadow RBAC + ext_authz), JWT
authentication, then RBAC for AUDIT, DENY and ALLOW. TCP: the same RBAC
actions as network filters (with the HTTP-only parts handled as Istio
does, see ``rbac``) and gRPC ext_authz for CUSTOM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from mizzen.model.snapshot import MeshSnapshot
from mizzen.translate.ext_authz import (
    HTTP_EXT_AUTHZ_FILTER,
    NETWORK_EXT_AUTHZ_FILTER,
    CustomAuthz,
    custom_authz,
    custom_rules,
    http_ext_authz,
    network_ext_authz,
)
from mizzen.translate.filters import pack
from mizzen.translate.jwt_authn import jwt_authn_filter, workload_jwt_rules
from mizzen.translate.rbac import (
    HTTP_RBAC_FILTER,
    NETWORK_RBAC_FILTER,
    RbacConfig,
    action_configs,
    custom_shadow,
    http_rbac,
    network_rbac,
    workload_policies,
)


@dataclass(frozen=True)
class SecurityFilters:
    """Filters to put first in a workload's HTTP managers and TCP chains."""

    http: tuple[Any, ...] = ()  # HttpFilters
    tcp: tuple[Any, ...] = ()  # network Filters
    # Some policy is dry-run: the access log shows what it would have done.
    dry_run: bool = False


NO_SECURITY = SecurityFilters()


def _http_filter(name: str, message: Any) -> Any:
    return hcm_pb2.HttpFilter(name=name, typed_config=pack(message))


def _network_filter(name: str, message: Any) -> Any:
    return listener_components_pb2.Filter(name=name, typed_config=pack(message))


def _custom_http(custom: CustomAuthz, trust_domain: str) -> list[Any]:
    rules = custom_rules(custom, trust_domain, tcp=False)
    if custom.provider is None:
        # Nobody can decide: what the CUSTOM rules match is denied.
        return [_http_filter(HTTP_RBAC_FILTER, http_rbac(RbacConfig("DENY", rules, {})))]
    return [
        _http_filter(HTTP_RBAC_FILTER, custom_shadow(rules, tcp=False)),
        _http_filter(HTTP_EXT_AUTHZ_FILTER, http_ext_authz(custom.provider, custom.cluster)),
    ]


def _custom_tcp(custom: CustomAuthz, trust_domain: str) -> list[Any]:
    provider = custom.provider
    if provider is not None and provider.kind != "envoyExtAuthzGrpc":
        return []  # as Istio: an HTTP authorizer cannot see TCP connections
    rules = custom_rules(custom, trust_domain, tcp=True)
    if provider is None:
        return [_network_filter(NETWORK_RBAC_FILTER, network_rbac(RbacConfig("DENY", rules, {})))]
    return [
        _network_filter(NETWORK_RBAC_FILTER, custom_shadow(rules, tcp=True)),
        _network_filter(NETWORK_EXT_AUTHZ_FILTER, network_ext_authz(provider, custom.cluster)),
    ]


def workload_security(
    snapshot: MeshSnapshot, namespace: str, labels: Mapping[str, str]
) -> SecurityFilters:
    policies = workload_policies(snapshot, namespace, labels)
    jwt_rules = workload_jwt_rules(snapshot, namespace, labels)
    if not policies and not jwt_rules:
        return NO_SECURITY
    trust_domain = snapshot.trust_domain
    http: list[Any] = []
    tcp: list[Any] = []
    custom = custom_authz(snapshot, policies)
    if custom is not None:
        http.extend(_custom_http(custom, trust_domain))
        tcp.extend(_custom_tcp(custom, trust_domain))
    if jwt_rules:
        http.append(jwt_authn_filter(snapshot, jwt_rules))
    http.extend(
        _http_filter(HTTP_RBAC_FILTER, http_rbac(c))
        for c in action_configs(policies, trust_domain, tcp=False)
    )
    tcp.extend(
        _network_filter(NETWORK_RBAC_FILTER, network_rbac(c))
        for c in action_configs(policies, trust_domain, tcp=True)
    )
    return SecurityFilters(
        http=tuple(http),
        tcp=tuple(tcp),
        dry_run=any(p.dry_run for p in policies),
    )


def describe(
    snapshot: MeshSnapshot, namespace: str, labels: Mapping[str, str]
) -> list[dict[str, Any]]:
    """What ``mizzen get authz`` shows for one workload: the policies in the
    order Envoy applies them (CUSTOM, DENY, ALLOW, then AUDIT, which never
    decides), and the JWT issuers it verifies."""
    root = snapshot.root_namespace
    policies = workload_policies(snapshot, namespace, labels)
    custom = custom_authz(snapshot, policies)
    rows: list[dict[str, Any]] = []
    for action in ("CUSTOM", "DENY", "ALLOW", "AUDIT"):
        for p in (p for p in policies if p.action == action):
            where = p.meta.namespace
            scope = "workload" if p.selector else ("mesh" if where == root else "namespace")
            note = "dry-run: logged only" if p.dry_run else ""
            if action == "CUSTOM" and custom is not None:
                note = custom.problem and f"denies what it matches: {custom.problem}"
                note = note or f"provider {p.provider}"
            if action == "ALLOW" and not p.rules:
                note = note or "allows nothing"
            rows.append(
                {
                    "action": action,
                    "policy": f"{where}.{p.meta.name}",
                    "scope": scope,
                    "rules": len(p.rules),
                    "dry_run": p.dry_run,
                    "note": note,
                }
            )
    for rule in workload_jwt_rules(snapshot, namespace, labels):
        source = "inline jwks" if rule.jwks else f"jwksUri {rule.jwks_uri}"
        rows.append(
            {
                "action": "JWT",
                "policy": rule.issuer or "(any issuer)",
                "scope": "",
                "rules": 0,
                "dry_run": False,
                "note": source,
            }
        )
    return rows
