"""External authorization (CUSTOM AuthorizationPolicies) through Envoy's
ext_authz filters.

As in Istio, a CUSTOM policy names an ``extensionProviders`` entry of the
mesh config (``envoyExtAuthzHttp`` or ``envoyExtAuthzGrpc``); its rules say
*which* requests the external authorizer decides, the authorizer says
*whether*. So the chain gets an RBAC filter holding the CUSTOM rules as
shadow rules (evaluated, never enforced; the matched rule's name lands in
the dynamic metadata), and ext_authz runs only when that name is there.
On TCP chains only gRPC providers can run (Envoy's network ext_authz).

A provider that is not declared, or whose service the mesh does not know,
cannot decide anything: the CUSTOM rules then deny what they match, so
that a broken authorizer never lets traffic through.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from envoy.config.core.v3 import config_source_pb2, grpc_service_pb2, http_uri_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2 as http_ext_authz_pb2
from envoy.extensions.filters.network.ext_authz.v3 import ext_authz_pb2 as net_ext_authz_pb2
from envoy.type.matcher.v3 import metadata_pb2, string_pb2

from mizzen.api.meshconfig import ExtAuthzProvider
from mizzen.api.resources import AuthorizationPolicy
from mizzen.model.snapshot import MeshSnapshot
from mizzen.translate import names
from mizzen.translate.filters import duration
from mizzen.translate.lookup import registry_host
from mizzen.translate.rbac import (
    CUSTOM_PREFIX,
    CUSTOM_STAT_PREFIX,
    HTTP_RBAC_FILTER,
    NETWORK_RBAC_FILTER,
    TCP_STAT_PREFIX,
    policy_rules,
)

HTTP_EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz"
NETWORK_EXT_AUTHZ_FILTER = "envoy.filters.network.ext_authz"
# Where the CUSTOM shadow RBAC filter leaves the name of the rule it matched.
SHADOW_POLICY_KEY = CUSTOM_STAT_PREFIX + "shadow_effective_policy_id"


@dataclass(frozen=True)
class CustomAuthz:
    """The CUSTOM side of one workload: its provider (None when it cannot
    be used) and its policies."""

    provider: ExtAuthzProvider | None
    cluster: str
    policies: tuple[AuthorizationPolicy, ...]
    problem: str = ""  # why the provider cannot be used


def provider_cluster(snapshot: MeshSnapshot, provider: ExtAuthzProvider) -> str | None:
    """The outbound cluster of the provider's service (a registry hostname,
    optionally written ``<namespace>/<host>``)."""
    host = registry_host(snapshot, provider.service.rpartition("/")[2], provider.port)
    return None if host is None else names.outbound_cluster(provider.port, host)


def custom_authz(
    snapshot: MeshSnapshot, policies: Sequence[AuthorizationPolicy]
) -> CustomAuthz | None:
    custom = tuple(p for p in policies if p.action == "CUSTOM")
    if not custom:
        return None
    wanted = sorted({p.provider for p in custom})
    if len(wanted) > 1:
        return CustomAuthz(
            None,
            "",
            custom,
            f"CUSTOM policies name several providers ({', '.join(wanted)}); "
            "a workload can use only one",
        )
    provider = snapshot.ext_authz_providers.get(wanted[0])
    if provider is None:
        return CustomAuthz(
            None,
            "",
            custom,
            f"provider {wanted[0]!r} is not an envoyExtAuthzHttp or "
            "envoyExtAuthzGrpc entry of the mesh config's extensionProviders",
        )
    cluster = provider_cluster(snapshot, provider)
    if cluster is None:
        return CustomAuthz(
            None,
            "",
            custom,
            f"provider {provider.name!r} names service {provider.service} "
            f"port {provider.port}, which the mesh does not know",
        )
    return CustomAuthz(provider, cluster, custom)


def custom_rules(custom: CustomAuthz, trust_domain: str, *, tcp: bool) -> dict[str, Any]:
    rules: dict[str, Any] = {}
    prefix = CUSTOM_PREFIX if custom.provider is not None else CUSTOM_PREFIX + "bad-provider-"
    for policy in custom.policies:
        rules.update(policy_rules(policy, trust_domain, tcp=tcp, key_prefix=prefix))
    return rules


def _enabled_metadata(rbac_filter: str) -> Any:
    """Runs ext_authz only where the CUSTOM shadow rules left a policy name."""
    return metadata_pb2.MetadataMatcher(
        filter=rbac_filter,
        path=[metadata_pb2.MetadataMatcher.PathSegment(key=SHADOW_POLICY_KEY)],
        value={"string_match": {"prefix": CUSTOM_PREFIX}},
    )


def _header_names(headers: Sequence[str]) -> Any:
    patterns = []
    for name in headers:
        if name.endswith("*"):
            patterns.append(string_pb2.StringMatcher(prefix=name[:-1], ignore_case=True))
        elif name.startswith("*"):
            patterns.append(string_pb2.StringMatcher(suffix=name[1:], ignore_case=True))
        else:
            patterns.append(string_pb2.StringMatcher(exact=name, ignore_case=True))
    return string_pb2.ListStringMatcher(patterns=patterns)


def _grpc_service(provider: ExtAuthzProvider, cluster: str) -> Any:
    return grpc_service_pb2.GrpcService(
        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(
            cluster_name=cluster, authority=provider.service.rpartition("/")[2]
        ),
        timeout=duration(provider.timeout),
    )


def http_ext_authz(provider: ExtAuthzProvider, cluster: str) -> Any:
    config = http_ext_authz_pb2.ExtAuthz(
        transport_api_version=config_source_pb2.V3,
        failure_mode_allow=provider.fail_open,
        status_on_error={"code": provider.status_on_error},
        filter_enabled_metadata=_enabled_metadata(HTTP_RBAC_FILTER),
    )
    if provider.kind == "envoyExtAuthzGrpc":
        config.grpc_service.CopyFrom(_grpc_service(provider, cluster))
    else:
        service = config.http_service
        service.server_uri.CopyFrom(
            http_uri_pb2.HttpUri(
                uri=f"http://{provider.service.rpartition('/')[2]}",
                cluster=cluster,
                timeout=duration(provider.timeout),
            )
        )
        service.path_prefix = provider.path_prefix
        for name, value in sorted(provider.include_additional_headers.items()):
            service.authorization_request.headers_to_add.add(key=name, value=value)
        response = service.authorization_response
        if provider.headers_to_upstream_on_allow:
            response.allowed_upstream_headers.CopyFrom(
                _header_names(provider.headers_to_upstream_on_allow)
            )
        if provider.headers_to_downstream_on_deny:
            response.allowed_client_headers.CopyFrom(
                _header_names(provider.headers_to_downstream_on_deny)
            )
        if provider.headers_to_downstream_on_allow:
            response.allowed_client_headers_on_success.CopyFrom(
                _header_names(provider.headers_to_downstream_on_allow)
            )
    if provider.include_request_headers:
        config.allowed_headers.CopyFrom(_header_names(provider.include_request_headers))
    if provider.max_request_bytes:
        config.with_request_body.max_request_bytes = provider.max_request_bytes
        config.with_request_body.allow_partial_message = provider.allow_partial_message
        config.with_request_body.pack_as_bytes = provider.pack_as_bytes
    return config


def network_ext_authz(provider: ExtAuthzProvider, cluster: str) -> Any:
    """gRPC providers only: Envoy has no HTTP check for raw TCP."""
    return net_ext_authz_pb2.ExtAuthz(
        stat_prefix=TCP_STAT_PREFIX,
        grpc_service=_grpc_service(provider, cluster),
        transport_api_version=config_source_pb2.V3,
        failure_mode_allow=provider.fail_open,
        filter_enabled_metadata=_enabled_metadata(NETWORK_RBAC_FILTER),
    )
