"""The JWT authentication filter from RequestAuthentications.

As in Istio: the ``jwtRules`` of every RequestAuthentication selecting a
workload (root namespace and its own, by selector) become providers
``origins-<i>`` in issuer order, and one requirement covers every path: a
request passes with a valid token of any provider, or with no token at
all. A token that is present and fails verification is refused with 401;
requiring a token is an AuthorizationPolicy's job (``requestPrincipals``).
The verified payload lands in the dynamic metadata
``envoy.filters.http.jwt_authn``/``payload``, which RBAC matches.

``jwksUri`` is fetched by the sidecar itself, through the mesh's cluster
for that host (``outbound|<port>||<host>``), when the listener starts and
again before the cached key set expires. A URI whose host no service of
the mesh serves gets a key set that verifies nothing: every token is then
refused, as istiod does when it cannot fetch a key set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from envoy.config.core.v3 import http_uri_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import empty_pb2

from mizzen.api.resources import JWTRule
from mizzen.model.snapshot import MeshSnapshot
from mizzen.translate import names
from mizzen.translate.filters import duration, pack
from mizzen.translate.lookup import policy_selects, registry_host

JWT_FILTER = "envoy.filters.http.jwt_authn"
PAYLOAD_KEY = "payload"
DEFAULT_FETCH_TIMEOUT_S = 5.0
JWKS_CACHE_S = 300.0  # how long a fetched key set is trusted (Istio: 5 min)
JWKS_RETRY_S = 1.0  # after a failed fetch, try again this soon
# Claims that hold space-separated lists and are matched item by item.
SPACE_DELIMITED = ("permission", "scope")
# A key set nobody holds the private key of: verifies no token.
UNREACHABLE_JWKS = (
    '{"keys":[{"kty":"RSA","e":"AQAB","alg":"RS256","kid":"mizzen-unreachable-jwks","n":"'
    "qM3yF2A_vosnurthNwN5Ymhq330-Hrp8h0HPPwYRVqnW7fddExMfmeQVNbROoa0zs-iQ_9PHCb1znro1enoyFxeN4"
    "RtoSLW_hKz7l6S9k2cxQRTyOG5OFgrvaxhF0-3CANpr4tWkiwm476M2a8MOgH8J8B4XF6yI3FRksQKmOWGGnYiEuT5"
    "az1cZnotf7KGq-ZhCIfNFxsZDqVgEKGKn2hCroWFKHbvLlkzPLcSrFY6JjEKQluLLHMeTg7txr7F4g4b6TryUo1Oar"
    "BXCgUX8xHh6_rf1eD9Gf1jpuWKbChq4HItkBLC3zXRRZ5lJDuIvt5QhIJalTnT58-9lzPI9CQ"
    '"}]}'
)


def workload_jwt_rules(
    snapshot: MeshSnapshot, namespace: str, labels: Mapping[str, str]
) -> tuple[JWTRule, ...]:
    """Every jwtRule that applies to one workload, sorted by issuer."""
    root = snapshot.root_namespace
    rules = [
        rule
        for ra in snapshot.request_authentications
        if policy_selects(ra, root, namespace, labels)
        for rule in ra.jwt_rules
    ]
    return tuple(sorted(rules, key=lambda r: r.issuer))


def jwks_cluster(snapshot: MeshSnapshot, uri: str) -> str | None:
    """The cluster that serves ``uri``, if a service of the mesh has its
    host and port."""
    parts = urlsplit(uri)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    host = registry_host(snapshot, parts.hostname or "", port)
    return None if host is None else names.outbound_cluster(port, host)


def _provider(snapshot: MeshSnapshot, rule: JWTRule) -> jwt_pb2.JwtProvider:
    provider = jwt_pb2.JwtProvider(
        issuer=rule.issuer,
        audiences=list(rule.audiences),
        forward=rule.forward_original_token,
        forward_payload_header=rule.output_payload_to_header,
        payload_in_metadata=PAYLOAD_KEY,
        from_params=list(rule.from_params),
        from_cookies=list(rule.from_cookies),
    )
    provider.normalize_payload_in_metadata.space_delimited_claims.extend(
        sorted({*SPACE_DELIMITED, *rule.space_delimited_claims})
    )
    for header in rule.from_headers:
        provider.from_headers.add(name=header.name, value_prefix=header.prefix)
    for claim in rule.output_claim_to_headers:
        provider.claim_to_headers.add(header_name=claim.header, claim_name=claim.claim)
    cluster = jwks_cluster(snapshot, rule.jwks_uri) if rule.jwks_uri else None
    if rule.jwks:
        provider.local_jwks.inline_string = rule.jwks
    elif cluster is not None:
        remote = provider.remote_jwks
        remote.http_uri.CopyFrom(
            http_uri_pb2.HttpUri(
                uri=rule.jwks_uri,
                cluster=cluster,
                timeout=duration(rule.timeout or DEFAULT_FETCH_TIMEOUT_S),
            )
        )
        remote.cache_duration.CopyFrom(duration(JWKS_CACHE_S))
        # Fetched when the listener starts, refreshed before it expires.
        remote.async_fetch.failed_refetch_duration.CopyFrom(duration(JWKS_RETRY_S))
    else:
        provider.local_jwks.inline_string = UNREACHABLE_JWKS
    return provider


def _requirement(names_: Sequence[str]) -> jwt_pb2.JwtRequirement:
    allow_missing = jwt_pb2.JwtRequirement(allow_missing=empty_pb2.Empty())
    if len(names_) == 1:
        either = [jwt_pb2.JwtRequirement(provider_name=names_[0]), allow_missing]
        return jwt_pb2.JwtRequirement(
            requires_any=jwt_pb2.JwtRequirementOrList(requirements=either)
        )
    # Any one valid token, or, for each provider, its token or none of it.
    each = [
        jwt_pb2.JwtRequirement(
            requires_any=jwt_pb2.JwtRequirementOrList(
                requirements=[jwt_pb2.JwtRequirement(provider_name=n), allow_missing]
            )
        )
        for n in names_
    ]
    options = [jwt_pb2.JwtRequirement(provider_name=n) for n in names_]
    options.append(
        jwt_pb2.JwtRequirement(requires_all=jwt_pb2.JwtRequirementAndList(requirements=each))
    )
    return jwt_pb2.JwtRequirement(requires_any=jwt_pb2.JwtRequirementOrList(requirements=options))


def jwt_authn_filter(snapshot: MeshSnapshot, rules: Sequence[JWTRule]) -> hcm_pb2.HttpFilter:
    config = jwt_pb2.JwtAuthentication(bypass_cors_preflight=True)
    provider_names = [f"origins-{i}" for i in range(len(rules))]
    for name, rule in zip(provider_names, rules, strict=True):
        config.providers[name].CopyFrom(_provider(snapshot, rule))
    config.rules.append(
        jwt_pb2.RequirementRule(
            match=route_components_pb2.RouteMatch(prefix="/"),
            requires=_requirement(provider_names),
        )
    )
    return hcm_pb2.HttpFilter(name=JWT_FILTER, typed_config=pack(config))
