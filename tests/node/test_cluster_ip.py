"""Service names and ClusterIP rules for pods (mizzen.node.cluster_ip)."""

from __future__ import annotations

from typing import Any

from mizzen.node.cluster_ip import hosts_for, service_rules
from mizzen.runtime.kubeproxy import ServiceRule


def service(
    name: str,
    namespace: str,
    cluster_ip: str | None,
    ports: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": "ClusterIP",
        "selector": {"app": name},
        "ports": ports
        if ports is not None
        else [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 9080}],
    }
    if cluster_ip is not None:
        spec["clusterIP"] = cluster_ip
        spec["clusterIPs"] = [cluster_ip]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
        "spec": spec,
    }


def endpoint(ip: str, ready: bool | None = True, pod: str = "p") -> dict[str, Any]:
    e: dict[str, Any] = {
        "addresses": [ip],
        "nodeName": "mizzen-t",
        "targetRef": {"kind": "Pod", "namespace": "shop", "name": pod},
    }
    if ready is not None:
        e["conditions"] = {"ready": ready, "serving": ready, "terminating": False}
    return e


def endpoint_slice(
    name: str,
    namespace: str,
    service_name: str | None,
    endpoints: list[dict[str, Any]],
    ports: list[dict[str, Any]],
    address_type: str = "IPv4",
) -> dict[str, Any]:
    labels = {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
    if service_name is not None:
        labels["kubernetes.io/service-name"] = service_name
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": ports,
    }


REVIEWS = service("reviews", "shop", "198.19.12.20")
RATINGS = service("ratings", "data", "198.19.12.30")
HEADLESS = service("db", "shop", "None")
EXTERNAL = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "ext", "namespace": "shop"},
    "spec": {"type": "ExternalName", "externalName": "example.com"},
}


# -- hosts_for ----------------------------------------------------------------------------


def test_short_name_only_in_the_pods_namespace() -> None:
    hosts = hosts_for([REVIEWS, RATINGS], "shop")
    assert hosts["reviews"] == "198.19.12.20"
    assert "ratings" not in hosts


def test_qualified_names_everywhere() -> None:
    for ns in ("shop", "data", "default"):
        hosts = hosts_for([REVIEWS, RATINGS], ns)
        for name, svc_ns, ip in (
            ("reviews", "shop", "198.19.12.20"),
            ("ratings", "data", "198.19.12.30"),
        ):
            assert hosts[f"{name}.{svc_ns}"] == ip
            assert hosts[f"{name}.{svc_ns}.svc"] == ip
            assert hosts[f"{name}.{svc_ns}.svc.cluster.local"] == ip


def test_hosts_for_lists_exactly_those_names() -> None:
    assert hosts_for([REVIEWS, RATINGS], "shop") == {
        "reviews": "198.19.12.20",
        "reviews.shop": "198.19.12.20",
        "reviews.shop.svc": "198.19.12.20",
        "reviews.shop.svc.cluster.local": "198.19.12.20",
        "ratings.data": "198.19.12.30",
        "ratings.data.svc": "198.19.12.30",
        "ratings.data.svc.cluster.local": "198.19.12.30",
    }


def test_headless_and_ipless_services_get_no_names() -> None:
    hosts = hosts_for([HEADLESS, EXTERNAL, service("pending", "shop", "")], "shop")
    assert hosts == {}


def test_same_short_name_in_two_namespaces() -> None:
    a = service("web", "a", "198.19.12.40")
    b = service("web", "b", "198.19.12.41")
    assert hosts_for([a, b], "b")["web"] == "198.19.12.41"
    assert hosts_for([a, b], "a")["web"] == "198.19.12.40"


# -- service_rules ----------------------------------------------------------------------------


def test_one_rule_per_service_port_matched_by_port_name() -> None:
    svc = service(
        "reviews",
        "shop",
        "198.19.12.20",
        ports=[
            {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"},
            {"name": "grpc", "port": 7070, "protocol": "TCP", "targetPort": 9090},
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353},
        ],
    )
    s = endpoint_slice(
        "reviews-abc12",
        "shop",
        "reviews",
        [endpoint("198.18.12.7", pod="r1"), endpoint("198.18.12.8", pod="r2")],
        [
            {"name": "grpc", "port": 9090, "protocol": "TCP"},
            {"name": "http", "port": 9080, "protocol": "TCP"},
            {"name": "dns", "port": 5353, "protocol": "UDP"},
        ],
    )
    assert service_rules([svc], [s]) == [
        ServiceRule("198.19.12.20", 80, "TCP", (("198.18.12.7", 9080), ("198.18.12.8", 9080))),
        ServiceRule("198.19.12.20", 7070, "TCP", (("198.18.12.7", 9090), ("198.18.12.8", 9090))),
        ServiceRule("198.19.12.20", 53, "UDP", (("198.18.12.7", 5353), ("198.18.12.8", 5353))),
    ]


def test_unnamed_single_port() -> None:
    svc = service("web", "shop", "198.19.12.50", ports=[{"port": 8080, "targetPort": 80}])
    s = endpoint_slice(
        "web-x",
        "shop",
        "web",
        [endpoint("198.18.12.9")],
        [{"name": "", "port": 80, "protocol": "TCP"}],
    )
    assert service_rules([svc], [s]) == [
        ServiceRule("198.19.12.50", 8080, "TCP", (("198.18.12.9", 80),))
    ]


def test_endpoints_of_several_slices_are_merged() -> None:
    ports = [{"name": "http", "port": 9080, "protocol": "TCP"}]
    slices = [
        endpoint_slice("reviews-a", "shop", "reviews", [endpoint("198.18.12.8")], ports),
        endpoint_slice("reviews-b", "shop", "reviews", [endpoint("198.18.12.7")], ports),
    ]
    [rule] = service_rules([REVIEWS], slices)
    assert rule.endpoints == (("198.18.12.7", 9080), ("198.18.12.8", 9080))


def test_not_ready_endpoints_are_excluded_and_absent_ready_counts_as_ready() -> None:
    s = endpoint_slice(
        "reviews-abc12",
        "shop",
        "reviews",
        [
            endpoint("198.18.12.7", ready=True),
            endpoint("198.18.12.8", ready=False),
            endpoint("198.18.12.9", ready=None),  # no conditions at all
            {"addresses": ["198.18.12.10"], "conditions": {}},  # conditions without ready
        ],
        [{"name": "http", "port": 9080, "protocol": "TCP"}],
    )
    [rule] = service_rules([REVIEWS], [s])
    assert rule.endpoints == (
        ("198.18.12.10", 9080),
        ("198.18.12.7", 9080),
        ("198.18.12.9", 9080),
    )


def test_ipv6_and_fqdn_slices_are_ignored() -> None:
    ports = [{"name": "http", "port": 9080, "protocol": "TCP"}]
    slices = [
        endpoint_slice("reviews-v6", "shop", "reviews", [endpoint("fd00::7")], ports, "IPv6"),
        endpoint_slice("reviews-f", "shop", "reviews", [endpoint("r.example")], ports, "FQDN"),
    ]
    [rule] = service_rules([REVIEWS], slices)
    assert rule.endpoints == ()


def test_slices_must_be_labelled_with_the_service_in_its_namespace() -> None:
    ports = [{"name": "http", "port": 9080, "protocol": "TCP"}]
    slices = [
        endpoint_slice("unlabelled", "shop", None, [endpoint("198.18.12.7")], ports),
        endpoint_slice("other-svc", "shop", "ratings", [endpoint("198.18.12.8")], ports),
        endpoint_slice("other-ns", "data", "reviews", [endpoint("198.18.12.9")], ports),
    ]
    [rule] = service_rules([REVIEWS], slices)
    assert rule.endpoints == ()


def test_service_without_slices_gets_a_rule_without_endpoints() -> None:
    assert service_rules([REVIEWS], []) == [ServiceRule("198.19.12.20", 80, "TCP", ())]


def test_slice_port_of_another_name_gives_no_endpoints() -> None:
    s = endpoint_slice(
        "reviews-abc12",
        "shop",
        "reviews",
        [endpoint("198.18.12.7")],
        [{"name": "metrics", "port": 15020, "protocol": "TCP"}],
    )
    [rule] = service_rules([REVIEWS], [s])
    assert rule.endpoints == ()


def test_headless_and_external_services_get_no_rules() -> None:
    ports = [{"name": "http", "port": 9080, "protocol": "TCP"}]
    s = endpoint_slice("db-1", "shop", "db", [endpoint("198.18.12.7")], ports)
    assert service_rules([HEADLESS, EXTERNAL], [s]) == []


def test_rules_sorted_by_namespace_then_name() -> None:
    rules = service_rules([REVIEWS, RATINGS, service("details", "shop", "198.19.12.21")], [])
    assert [r.vip for r in rules] == ["198.19.12.30", "198.19.12.21", "198.19.12.20"]
