from __future__ import annotations

import pytest
from mesh_factories import (
    deployment,
    dr,
    gateway,
    namespace,
    service,
    service_entry,
    vs,
)

from mizzen.api.resources import Resource, ServiceEntryPort, ServicePort, WorkloadEntry
from mizzen.model.build import build_snapshot, gateway_key, host_matches, resolve_host
from mizzen.model.snapshot import MeshSnapshot

SUFFIX = "cluster.local"
REVIEWS = "reviews.default.svc.cluster.local"
RATINGS = "ratings.default.svc.cluster.local"


def build(
    resources: list[Resource],
    pod_ips: dict[tuple[str, str], str] | None = None,
    vips: dict[str, str] | None = None,
) -> MeshSnapshot:
    return build_snapshot(resources, pod_ips or {}, vips or {}, "7")


def names(items: tuple[object, ...]) -> list[str]:
    return [i.meta.name for i in items]  # type: ignore[attr-defined]


# -- services ---------------------------------------------------------------


def test_kubernetes_service_becomes_mesh_service() -> None:
    ports = (ServicePort(9080, "http", "http-app"), ServicePort(9090, "grpc-x"))
    snap = build([service("reviews", ports=ports)], vips={REVIEWS: "10.96.0.2"})
    svc = snap.services[REVIEWS]
    assert (svc.name, svc.namespace, svc.vip, svc.origin) == (
        "reviews",
        "default",
        "10.96.0.2",
        "kubernetes",
    )
    assert [(p.port, p.protocol, p.target_port) for p in svc.ports] == [
        (9080, "HTTP", "http-app"),
        (9090, "GRPC", None),
    ]
    assert snap.version == "7" and snap.domain_suffix == SUFFIX


def test_headless_service_has_no_vip() -> None:
    snap = build(
        [service("db", cluster_ip="None")], vips={"db.default.svc.cluster.local": "1.2.3.4"}
    )
    assert snap.services["db.default.svc.cluster.local"].vip is None


@pytest.mark.parametrize(
    ("resolution", "expected"),
    [("NONE", "NONE"), ("STATIC", "STATIC"), ("DNS", "DNS"), ("DNS_ROUND_ROBIN", "DNS")],
)
def test_service_entry_resolution(resolution: str, expected: str) -> None:
    snap = build([service_entry("ext", ("api.example.com",), resolution=resolution)])
    svc = snap.services["api.example.com"]
    assert svc.resolution == expected
    assert (svc.origin, svc.location, svc.name) == ("serviceentry", "MESH_EXTERNAL", "ext")
    assert svc.ports[0].protocol == "TLS"


def test_service_entry_vip_prefers_addresses() -> None:
    resources = [
        service_entry("a", ("a.example.com", "b.example.com"), addresses=("240.0.0.1/32",)),
        service_entry("c", ("c.example.com",)),
    ]
    snap = build(resources, vips={"c.example.com": "10.96.0.9", "a.example.com": "10.96.0.8"})
    assert snap.services["a.example.com"].vip == "240.0.0.1"
    assert snap.services["b.example.com"].vip == "240.0.0.1"
    assert snap.services["c.example.com"].vip == "10.96.0.9"


def test_kubernetes_service_wins_a_hostname_clash() -> None:
    snap = build([service_entry("se", (REVIEWS,)), service("reviews")])
    assert snap.services[REVIEWS].origin == "kubernetes"


# -- workloads and endpoints ------------------------------------------------


def test_only_pods_with_an_ip_become_workloads() -> None:
    resources = [deployment("reviews", replicas=2, ports=(("http", 9080), ("", 15000)))]
    snap = build(resources, pod_ips={("default", "reviews-1"): "198.18.0.5"})
    (w,) = snap.workloads
    assert (w.name, w.ip) == ("reviews-1", "198.18.0.5")
    assert w.container_ports == {"http": 9080}
    assert w.ports == (9080, 15000)


def test_endpoints_resolve_target_ports() -> None:
    ports = (
        ServicePort(80, "http", None),
        ServicePort(81, "http-num", 9080),
        ServicePort(82, "http-named", "web"),
        ServicePort(83, "http-missing", "nope"),
    )
    resources = [
        service("reviews", ports=ports),
        deployment("reviews", replicas=2, ports=(("web", 9080),)),
    ]
    ips = {("default", "reviews-0"): "10.0.0.1", ("default", "reviews-1"): "10.0.0.2"}
    snap = build(resources, pod_ips=ips)
    assert [(e.address, e.port) for e in snap.endpoints_of(REVIEWS, 80)] == [
        ("10.0.0.1", 80),
        ("10.0.0.2", 80),
    ]
    assert {e.port for e in snap.endpoints_of(REVIEWS, 81)} == {9080}
    assert {e.port for e in snap.endpoints_of(REVIEWS, 82)} == {9080}
    assert snap.endpoints_of(REVIEWS, 83) == ()
    assert (REVIEWS, 83) in snap.endpoints  # known port, no endpoint
    ep = snap.endpoints_of(REVIEWS, 80)[0]
    assert (ep.workload, ep.namespace, ep.service_account) == ("reviews-0", "default", "default")
    assert ep.labels["app"] == "reviews"


def test_named_target_port_is_resolved_per_pod() -> None:
    resources = [
        service("app", ports=(ServicePort(80, "http", "web"),)),
        deployment("a", labels={"app": "app"}, ports=(("web", 8001),)),
        deployment("b", labels={"app": "app"}, ports=(("web", 8002),)),
    ]
    ips = {("default", "a-0"): "10.0.0.1", ("default", "b-0"): "10.0.0.2"}
    snap = build(resources, pod_ips=ips)
    endpoints = snap.endpoints_of("app.default.svc.cluster.local", 80)
    assert [(e.address, e.port) for e in endpoints] == [("10.0.0.1", 8001), ("10.0.0.2", 8002)]


def test_selector_does_not_match_across_namespaces() -> None:
    resources = [
        service("reviews", ns="default"),
        deployment("reviews", ns="other", labels={"app": "reviews"}),
        deployment("reviews", ns="default", labels={"app": "reviews"}),
    ]
    ips = {("other", "reviews-0"): "10.0.0.9", ("default", "reviews-0"): "10.0.0.1"}
    snap = build(resources, pod_ips=ips)
    assert [e.address for e in snap.endpoints_of(REVIEWS, 9080)] == ["10.0.0.1"]


@pytest.mark.parametrize(
    ("selector", "labels", "matched"),
    [
        ({"app": "r"}, {"app": "r", "version": "v1"}, True),
        ({"app": "r", "version": "v2"}, {"app": "r", "version": "v1"}, False),
        ({}, {"app": "r"}, False),  # no selector: no managed endpoints
    ],
)
def test_selector_matching(selector: dict[str, str], labels: dict[str, str], matched: bool) -> None:
    resources = [service("r", selector=selector), deployment("d", labels=labels)]
    snap = build(resources, pod_ips={("default", "d-0"): "10.0.0.1"})
    assert bool(snap.endpoints_of("r.default.svc.cluster.local", 9080)) is matched


def test_service_entry_endpoints_from_spec_and_selector() -> None:
    ports = (ServiceEntryPort(8080, "HTTP", "http"), ServiceEntryPort(9000, "TCP", "tcp"))
    entries = (
        WorkloadEntry("1.1.1.1", ports={"http": 18080}, labels={"v": "1"}, weight=3),
        WorkloadEntry("2.2.2.2"),
    )
    resources = [
        service_entry("vm", ("vm.internal",), ports=ports, resolution="STATIC", endpoints=entries),
        service_entry(
            "sel", ("sel.internal",), ports=ports, resolution="STATIC", selector={"app": "x"}
        ),
        deployment("x", labels={"app": "x"}),
        deployment("x", ns="other", labels={"app": "x"}),
    ]
    ips = {("default", "x-0"): "10.0.0.1", ("other", "x-0"): "10.0.0.2"}
    snap = build(resources, pod_ips=ips)
    assert [(e.address, e.port, e.weight) for e in snap.endpoints_of("vm.internal", 8080)] == [
        ("1.1.1.1", 18080, 3),
        ("2.2.2.2", 8080, 1),
    ]
    assert [(e.address, e.port) for e in snap.endpoints_of("vm.internal", 9000)] == [
        ("1.1.1.1", 9000),
        ("2.2.2.2", 9000),
    ]
    assert [(e.address, e.port) for e in snap.endpoints_of("sel.internal", 8080)] == [
        ("10.0.0.1", 8080)
    ]


def test_dns_service_entry_without_endpoints_resolves_its_host() -> None:
    snap = build([service_entry("ext", ("api.example.com", "*.wild.com"))])
    assert [(e.address, e.port) for e in snap.endpoints_of("api.example.com", 443)] == [
        ("api.example.com", 443)
    ]
    assert snap.endpoints_of("*.wild.com", 443) == ()


# -- host resolution --------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "ns", "expected"),
    [
        ("reviews", "default", REVIEWS),
        ("reviews", "prod", "reviews.prod.svc.cluster.local"),
        ("reviews.other", "default", "reviews.other"),  # Istio expands only dot-less names
        ("reviews.other.svc.cluster.local", "default", "reviews.other.svc.cluster.local"),
        ("api.example.com", "default", "api.example.com"),
        ("*.example.com", "default", "*.example.com"),
        ("*", "default", "*"),
    ],
)
def test_resolve_host(host: str, ns: str, expected: str) -> None:
    assert resolve_host(host, ns, SUFFIX) == expected


def test_service_entry_host_is_taken_as_is() -> None:
    assert resolve_host("example.com", "default", SUFFIX, {"example.com"}) == "example.com"


@pytest.mark.parametrize(
    ("pattern", "host", "matched"),
    [
        ("*", REVIEWS, True),
        ("*.example.com", "api.example.com", True),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "api.example.org", False),
        ("*.default.svc.cluster.local", REVIEWS, True),
        ("*.com", "*.example.com", True),
        ("*.example.com", "*.com", False),
        ("api.example.com", "api.example.com", True),
    ],
)
def test_host_matches(pattern: str, host: str, matched: bool) -> None:
    assert host_matches(pattern, host) is matched


@pytest.mark.parametrize(
    ("ref", "ns", "expected"),
    [
        ("bookinfo-gateway", "default", "default/bookinfo-gateway"),
        ("istio-system/ingress", "default", "istio-system/ingress"),
        ("ingress.istio-system.svc.cluster.local", "default", "istio-system/ingress"),
    ],
)
def test_gateway_key(ref: str, ns: str, expected: str) -> None:
    assert gateway_key(ref, ns) == expected


# -- indexes ----------------------------------------------------------------


def test_indexes_keep_resource_order() -> None:
    resources = [vs("b", ("reviews",)), gateway("gw"), dr("d1", "reviews"), vs("a", ("ratings",))]
    snap = build(resources)
    assert names(snap.virtual_services) == ["b", "a"]
    assert names(snap.destination_rules) == ["d1"]
    assert names(snap.gateways) == ["gw"]


def test_mesh_vs_by_host_resolves_short_names_and_keeps_oldest_first() -> None:
    resources = [
        service("reviews"),
        vs("first", ("reviews",)),
        vs("second", (REVIEWS,)),
        vs("other-ns", (REVIEWS,), ns="prod"),
        vs("dotted-is-not-expanded", ("reviews.default",), ns="prod"),
        vs("short-in-prod", ("reviews",), ns="prod"),
        vs("gw-only", ("reviews",), gateways=("gw",)),
        vs("both", ("reviews",), gateways=("gw", "mesh")),
    ]
    snap = build(resources)
    assert names(snap.mesh_vs_by_host[REVIEWS]) == ["first", "second", "other-ns", "both"]
    assert names(snap.mesh_vs_by_host["reviews.prod.svc.cluster.local"]) == ["short-in-prod"]


def test_vs_by_gateway() -> None:
    resources = [
        vs("a", ("*",), gateways=("bookinfo-gateway",)),
        vs("b", ("*",), ns="apps", gateways=("istio-system/ingress", "mesh")),
        vs("c", ("*",), ns="istio-system", gateways=("ingress",)),
        vs("d", ("reviews",)),
    ]
    snap = build(resources)
    assert names(snap.vs_by_gateway["default/bookinfo-gateway"]) == ["a"]
    assert names(snap.vs_by_gateway["istio-system/ingress"]) == ["b", "c"]
    assert set(snap.vs_by_gateway) == {"default/bookinfo-gateway", "istio-system/ingress"}


def test_wildcard_vs_is_indexed_to_matching_services_after_exact_ones() -> None:
    resources = [
        service("reviews"),
        service("ratings"),
        service("details", ns="prod"),
        service_entry("ext", ("api.example.com",)),
        vs("everything", ("*",)),
        vs("default-ns", ("*.default.svc.cluster.local",)),
        vs("exact", ("reviews",)),
        vs("example", ("*.example.com",)),
    ]
    snap = build(resources)
    assert names(snap.mesh_vs_by_host[REVIEWS]) == ["exact", "default-ns", "everything"]
    assert names(snap.mesh_vs_by_host[RATINGS]) == ["default-ns", "everything"]
    assert names(snap.mesh_vs_by_host["details.prod.svc.cluster.local"]) == ["everything"]
    assert names(snap.mesh_vs_by_host["api.example.com"]) == ["example", "everything"]
    assert "*" not in snap.mesh_vs_by_host


def test_dr_by_host_resolves_relative_to_dr_namespace() -> None:
    resources = [
        service("reviews"),
        service("reviews", ns="prod"),
        service_entry("ext", ("api.example.com",)),
        dr("short", "reviews"),
        dr("short-prod", "reviews", ns="prod"),
        dr("dotted", "reviews.prod.svc.cluster.local", ns="default"),
        dr("dotted-is-not-expanded", "reviews.prod", ns="default"),
        dr("wild", "*.example.com"),
        dr("se-host", "api.example.com", ns="prod"),
    ]
    snap = build(resources)
    assert names(snap.dr_by_host[REVIEWS]) == ["short"]
    assert names(snap.dr_by_host["reviews.prod.svc.cluster.local"]) == ["short-prod", "dotted"]
    assert names(snap.dr_by_host["api.example.com"]) == ["se-host", "wild"]


def test_service_entry_wildcard_host_indexes_itself() -> None:
    resources = [
        service_entry("wiki", ("*.wikipedia.org", "en.wikipedia.org")),
        vs("w", ("*.wikipedia.org",)),
    ]
    snap = build(resources)
    assert names(snap.mesh_vs_by_host["*.wikipedia.org"]) == ["w"]
    assert names(snap.mesh_vs_by_host["en.wikipedia.org"]) == ["w"]


def test_injection_reaches_workloads() -> None:
    resources = [namespace("default", **{"istio-injection": "enabled"}), deployment("a")]
    snap = build(resources, pod_ips={("default", "a-0"): "10.0.0.1"})
    assert snap.workloads[0].sidecar


def test_build_is_deterministic() -> None:
    resources = [service("reviews"), deployment("reviews", replicas=2), vs("v", ("*",))]
    ips = {("default", "reviews-0"): "10.0.0.1", ("default", "reviews-1"): "10.0.0.2"}
    assert build(resources, ips) == build(resources, ips)
