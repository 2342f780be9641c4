from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict

from mizzen.api.resources import HTTPMatchRequest, L4MatchAttributes, StringMatch
from mizzen.translate.matches import MatchContext, applies, route_match

from .factories import vs


def as_dict(match: HTTPMatchRequest | None) -> dict[str, Any]:
    result: dict[str, Any] = MessageToDict(route_match(match))
    return result


EXACT, PREFIX, REGEX, PRESENT = (
    StringMatch("exact", "jason"),
    StringMatch("prefix", "ja"),
    StringMatch("regex", "j.*n"),
    StringMatch("present"),
)


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        (None, {"prefix": "/"}),
        (HTTPMatchRequest(), {"prefix": "/"}),
        (HTTPMatchRequest(uri=StringMatch("exact", "/a")), {"path": "/a"}),
        (HTTPMatchRequest(uri=StringMatch("prefix", "/a")), {"prefix": "/a"}),
        (HTTPMatchRequest(uri=StringMatch("regex", "/a.*")), {"safeRegex": {"regex": "/a.*"}}),
        (
            HTTPMatchRequest(uri=StringMatch("prefix", "/A"), ignore_uri_case=True),
            {"prefix": "/A", "caseSensitive": False},
        ),
        (
            HTTPMatchRequest(headers={"end-user": EXACT}),
            {"prefix": "/", "headers": [{"name": "end-user", "stringMatch": {"exact": "jason"}}]},
        ),
        (
            HTTPMatchRequest(headers={"end-user": PREFIX}),
            {"prefix": "/", "headers": [{"name": "end-user", "stringMatch": {"prefix": "ja"}}]},
        ),
        (
            HTTPMatchRequest(headers={"end-user": REGEX}),
            {
                "prefix": "/",
                "headers": [{"name": "end-user", "stringMatch": {"safeRegex": {"regex": "j.*n"}}}],
            },
        ),
        (
            HTTPMatchRequest(headers={"end-user": PRESENT}),
            {"prefix": "/", "headers": [{"name": "end-user", "presentMatch": True}]},
        ),
        (
            HTTPMatchRequest(without_headers={"end-user": PRESENT}),
            {"prefix": "/", "headers": [{"name": "end-user", "presentMatch": False}]},
        ),
        (
            HTTPMatchRequest(without_headers={"end-user": EXACT}),
            {
                "prefix": "/",
                "headers": [
                    {
                        "name": "end-user",
                        "stringMatch": {"exact": "jason"},
                        "invertMatch": True,
                        "treatMissingHeaderAsEmpty": True,
                    }
                ],
            },
        ),
        (
            HTTPMatchRequest(query_params={"q": EXACT, "r": REGEX, "s": PREFIX, "t": PRESENT}),
            {
                "prefix": "/",
                "queryParameters": [
                    {"name": "q", "stringMatch": {"exact": "jason"}},
                    {"name": "r", "stringMatch": {"safeRegex": {"regex": "j.*n"}}},
                    {"name": "s", "stringMatch": {"prefix": "ja"}},
                    {"name": "t", "presentMatch": True},
                ],
            },
        ),
        (
            HTTPMatchRequest(
                method=StringMatch("exact", "GET"),
                scheme=StringMatch("exact", "https"),
                authority=StringMatch("prefix", "shop."),
            ),
            {
                "prefix": "/",
                "headers": [
                    {"name": ":method", "stringMatch": {"exact": "GET"}},
                    {"name": ":scheme", "stringMatch": {"exact": "https"}},
                    {"name": ":authority", "stringMatch": {"prefix": "shop."}},
                ],
            },
        ),
    ],
)
def test_route_match(match: HTTPMatchRequest | None, expected: dict[str, Any]) -> None:
    assert as_dict(match) == expected


MESH = MatchContext(9080, "mesh", "default", {"app": "productpage"})
GATEWAY = MatchContext(80, "default/gw", "istio-system", {"istio": "ingressgateway"})


@pytest.mark.parametrize(
    ("match", "ctx", "vs_gateways", "expected"),
    [
        (HTTPMatchRequest(), MESH, (), True),
        (HTTPMatchRequest(port=9080), MESH, (), True),
        (HTTPMatchRequest(port=9081), MESH, (), False),
        (HTTPMatchRequest(source_labels={"app": "productpage"}), MESH, (), True),
        (HTTPMatchRequest(source_labels={"app": "other"}), MESH, (), False),
        (HTTPMatchRequest(source_namespace="other"), MESH, (), False),
        (HTTPMatchRequest(gateways=("gw",)), MESH, ("mesh", "gw"), False),
        (HTTPMatchRequest(gateways=("gw",)), GATEWAY, ("mesh", "gw"), True),
        (HTTPMatchRequest(gateways=("mesh",)), MESH, ("mesh", "gw"), True),
        (HTTPMatchRequest(), GATEWAY, ("gw",), True),
        (HTTPMatchRequest(), GATEWAY, ("other/gw",), False),
        (L4MatchAttributes(port=80), GATEWAY, ("gw",), True),
    ],
)
def test_applies(
    match: HTTPMatchRequest, ctx: MatchContext, vs_gateways: tuple[str, ...], expected: bool
) -> None:
    assert applies(match, vs("r", ["reviews"], gateways=vs_gateways), ctx) is expected
