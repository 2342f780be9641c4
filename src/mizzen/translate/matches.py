"""Istio ``HTTPMatchRequest`` as an Envoy ``RouteMatch``.

Conditions inside one match block are ANDed by Envoy; the blocks of one
HTTPRoute are ORed by emitting one Envoy route per block (see ``routes``).
Whether a block applies at all to a given listener (port, source labels,
gateways) is decided here too, before translation, because Envoy has no way
to express it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from envoy.config.route.v3 import route_components_pb2 as route_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import wrappers_pb2

from mizzen.api.resources import HTTPMatchRequest, L4MatchAttributes, StringMatch, VirtualService
from mizzen.translate.lookup import effective_gateways, labels_match

PSEUDO_HEADERS = (("method", ":method"), ("scheme", ":scheme"), ("authority", ":authority"))


@dataclass(frozen=True)
class MatchContext:
    """Where routes are being built: the listener port and who is asking."""

    port: int
    gateway: str  # "mesh" for sidecars, "ns/name" for a Gateway
    proxy_namespace: str
    proxy_labels: Mapping[str, str] = field(default_factory=dict)


def applies(
    match: HTTPMatchRequest | L4MatchAttributes, vs: VirtualService, ctx: MatchContext
) -> bool:
    """Whether a match block is meant for this listener and this proxy at all."""
    if match.port is not None and match.port != ctx.port:
        return False
    if match.source_namespace and match.source_namespace != ctx.proxy_namespace:
        return False
    if not labels_match(match.source_labels, ctx.proxy_labels):
        return False
    return ctx.gateway in effective_gateways(vs, match.gateways)


def string_matcher(match: StringMatch, *, ignore_case: bool = False) -> Any:
    if match.kind == "exact":
        return string_pb2.StringMatcher(exact=match.value, ignore_case=ignore_case)
    if match.kind == "prefix":
        return string_pb2.StringMatcher(prefix=match.value, ignore_case=ignore_case)
    if match.kind == "regex":
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=match.value))
    raise ValueError(f"no string matcher for {match.kind!r}")


def header_matcher(name: str, match: StringMatch, *, invert: bool = False) -> Any:
    if match.kind == "present":
        # present_match=false is Envoy's "header is absent".
        return route_pb2.HeaderMatcher(name=name, present_match=not invert)
    matcher = route_pb2.HeaderMatcher(name=name, string_match=string_matcher(match))
    if invert:
        # A missing header must satisfy "without x: foo"; Envoy otherwise
        # fails a match on an absent header before inverting it.
        matcher.invert_match = True
        matcher.treat_missing_header_as_empty = True
    return matcher


def query_matcher(name: str, match: StringMatch) -> Any:
    if match.kind == "present":
        return route_pb2.QueryParameterMatcher(name=name, present_match=True)
    return route_pb2.QueryParameterMatcher(name=name, string_match=string_matcher(match))


def _set_path(out: Any, uri: StringMatch | None) -> None:
    if uri is None or uri.kind == "present":
        out.prefix = "/"
    elif uri.kind == "exact":
        out.path = uri.value
    elif uri.kind == "prefix":
        out.prefix = uri.value
    else:
        out.safe_regex.regex = uri.value


def route_match(match: HTTPMatchRequest | None) -> Any:
    """The Envoy RouteMatch for one block; ``None`` matches every request."""
    out = route_pb2.RouteMatch()
    if match is None:
        out.prefix = "/"
        return out
    _set_path(out, match.uri)
    if match.ignore_uri_case:
        out.case_sensitive.CopyFrom(wrappers_pb2.BoolValue(value=False))
    headers = [header_matcher(name, value) for name, value in match.headers.items()]
    for attribute, pseudo in PSEUDO_HEADERS:
        value = getattr(match, attribute)
        if value is not None:
            headers.append(header_matcher(pseudo, value))
    headers += [
        header_matcher(name, value, invert=True) for name, value in match.without_headers.items()
    ]
    out.headers.extend(headers)
    out.query_parameters.extend(query_matcher(n, v) for n, v in match.query_params.items())
    return out
