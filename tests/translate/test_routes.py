from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict

from mizzen.api.resources import HTTPMatchRequest, HTTPRoute, StringMatch
from mizzen.model.snapshot import MeshService
from mizzen.translate.routes import build_routes, service_domains

from .factories import (
    REVIEWS,
    REVIEWS_SUBSETS,
    bookinfo,
    fqdn,
    gateway,
    router,
    service,
    sidecar,
    snapshot,
    to,
    vs,
)


def route_configs(snap: Any, proxy: Any = None) -> dict[str, dict[str, Any]]:
    return {c.name: MessageToDict(c) for c in build_routes(snap, proxy or sidecar())}


def vhost(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in config["virtualHosts"] if v["name"] == name)


def reviews_routes(*rules: HTTPRoute, proxy: Any = None) -> list[dict[str, Any]]:
    snap = bookinfo([vs("reviews", ["reviews"], rules)], [REVIEWS_SUBSETS])
    routes: list[dict[str, Any]] = vhost(route_configs(snap, proxy)["9080"], f"{REVIEWS}:9080")[
        "routes"
    ]
    return routes


@pytest.mark.parametrize(
    ("svc", "proxy_ns", "expected"),
    [
        (
            service("reviews", vip="10.0.0.12"),
            "default",
            [
                "reviews.default.svc.cluster.local",
                "reviews.default.svc.cluster.local:9080",
                "reviews.default.svc",
                "reviews.default.svc:9080",
                "reviews.default",
                "reviews.default:9080",
                "reviews",
                "reviews:9080",
                "10.0.0.12",
                "10.0.0.12:9080",
            ],
        ),
        (
            service("reviews"),
            "other",
            [
                "reviews.default.svc.cluster.local",
                "reviews.default.svc.cluster.local:9080",
                "reviews.default.svc",
                "reviews.default.svc:9080",
                "reviews.default",
                "reviews.default:9080",
            ],
        ),
        (
            MeshService(
                "api.example.com",
                "default",
                "api",
                service("x").ports,
                vip="240.240.0.1",
                origin="serviceentry",
            ),
            "default",
            ["api.example.com", "api.example.com:9080", "240.240.0.1", "240.240.0.1:9080"],
        ),
    ],
)
def test_service_domains(svc: MeshService, proxy_ns: str, expected: list[str]) -> None:
    assert service_domains(svc, 9080, proxy_ns) == expected


def test_sidecar_route_config_per_http_port_with_allow_any_last() -> None:
    configs = route_configs(bookinfo())
    assert list(configs) == ["9080"]  # mongodb is TCP: no route config
    hosts = [v["name"] for v in configs["9080"]["virtualHosts"]]
    assert hosts == [
        f"{fqdn(n)}:9080" for n in ("details", "productpage", "ratings", "reviews")
    ] + ["allow_any"]
    allow_any = configs["9080"]["virtualHosts"][-1]
    assert allow_any["domains"] == ["*"]
    assert allow_any["routes"][0]["route"]["cluster"] == "PassthroughCluster"
    assert configs["9080"]["validateClusters"] is False


def test_default_route() -> None:
    (route,) = vhost(route_configs(bookinfo())["9080"], f"{REVIEWS}:9080")["routes"]
    assert route["name"] == "default"
    assert route["match"] == {"prefix": "/"}
    assert route["route"]["cluster"] == f"outbound|9080||{REVIEWS}"
    assert route["route"]["timeout"] == "0s"
    assert route["route"]["retryPolicy"]["numRetries"] == 2
    assert route["decorator"] == {"operation": f"{REVIEWS}:9080/*"}


def test_ored_matches_become_routes_in_order() -> None:
    jason = HTTPMatchRequest(name="jason", headers={"end-user": StringMatch("exact", "jason")})
    api = HTTPMatchRequest(uri=StringMatch("prefix", "/api"))
    routes = reviews_routes(
        HTTPRoute(name="v2", match=(jason, api), route=(to("reviews", "v2"),)),
        HTTPRoute(route=(to("reviews", "v1"),)),
    )
    assert [(r["name"], r["route"]["cluster"]) for r in routes] == [
        ("v2.jason", f"outbound|9080|v2|{REVIEWS}"),
        ("v2", f"outbound|9080|v2|{REVIEWS}"),
        ("1", f"outbound|9080|v1|{REVIEWS}"),
    ]
    assert routes[1]["match"] == {"prefix": "/api"}
    assert routes[2]["match"] == {"prefix": "/"}


def test_weighted_split() -> None:
    (route,) = reviews_routes(HTTPRoute(route=(to("reviews", "v1", 80), to("reviews", "v3", 20))))
    assert route["route"]["weightedClusters"]["clusters"] == [
        {"name": f"outbound|9080|v1|{REVIEWS}", "weight": 80},
        {"name": f"outbound|9080|v3|{REVIEWS}", "weight": 20},
    ]


def test_zero_weight_destination_is_dropped() -> None:
    (route,) = reviews_routes(HTTPRoute(route=(to("reviews", "v1", 100), to("reviews", "v3", 0))))
    assert route["route"]["cluster"] == f"outbound|9080|v1|{REVIEWS}"


def test_blocks_for_other_ports_and_sources_are_skipped() -> None:
    routes = reviews_routes(
        HTTPRoute(match=(HTTPMatchRequest(port=9999),), route=(to("reviews", "v2"),)),
        HTTPRoute(
            match=(HTTPMatchRequest(source_labels={"app": "ratings"}),),
            route=(to("reviews", "v3"),),
        ),
        HTTPRoute(
            match=(HTTPMatchRequest(source_labels={"app": "productpage"}),),
            route=(to("reviews", "v1"),),
        ),
    )
    assert [r["route"]["cluster"] for r in routes] == [f"outbound|9080|v1|{REVIEWS}"]


def test_vs_without_rules_for_the_port_keeps_the_default_route() -> None:
    routes = reviews_routes(
        HTTPRoute(match=(HTTPMatchRequest(port=9999),), route=(to("reviews", "v2"),))
    )
    assert [r["name"] for r in routes] == ["default"]


def test_destination_short_name_resolves_in_vs_namespace() -> None:
    snap = snapshot(
        [service("reviews"), service("reviews", ns="other")],
        virtual_services=[
            vs("r", [fqdn("reviews", "other")], [HTTPRoute(route=(to("reviews"),))], ns="other")
        ],
    )
    config = route_configs(snap)["9080"]
    (route,) = vhost(config, f"{fqdn('reviews', 'other')}:9080")["routes"]
    assert route["route"]["cluster"] == f"outbound|9080||{fqdn('reviews', 'other')}"
    # The bare short name belongs to the proxy's own namespace only.
    assert "reviews" in vhost(config, f"{REVIEWS}:9080")["domains"]
    assert "reviews" not in vhost(config, f"{fqdn('reviews', 'other')}:9080")["domains"]


def test_gateway_routes_from_bound_virtual_services() -> None:
    gw = gateway("gw", [(80, "HTTP", ["bookinfo.example.com", "*.shop.com"])])
    bound = vs(
        "bookinfo",
        ["bookinfo.example.com", "a.shop.com", "unrelated.org"],
        [HTTPRoute(route=(to("productpage"),))],
        gateways=["gw"],
    )
    unbound = vs("mesh-only", ["bookinfo.example.com"], [HTTPRoute(route=(to("details"),))])
    configs = route_configs(bookinfo([bound, unbound], gateways=[gw]), router())
    assert list(configs) == ["http.80"]
    hosts = {v["name"]: v for v in configs["http.80"]["virtualHosts"]}
    assert sorted(hosts) == ["a.shop.com:80", "bookinfo.example.com:80"]
    assert hosts["bookinfo.example.com:80"]["domains"] == [
        "bookinfo.example.com",
        "bookinfo.example.com:80",
    ]
    (route,) = hosts["a.shop.com:80"]["routes"]
    assert route["route"]["cluster"] == f"outbound|9080||{fqdn('productpage')}"


def test_gateway_port_without_virtual_service_answers_404() -> None:
    gw = gateway("gw", [(80, "HTTP", ["*"])])
    config = route_configs(bookinfo(gateways=[gw]), router())["http.80"]
    (host,) = config["virtualHosts"]
    assert host["name"] == "blackhole:80"
    assert host["routes"][0]["directResponse"] == {"status": 404}


def test_gateway_selector_must_match_the_router() -> None:
    gw = gateway("gw", [(80, "HTTP", ["*"])], selector={"istio": "egressgateway"})
    assert route_configs(bookinfo(gateways=[gw]), router()) == {}
