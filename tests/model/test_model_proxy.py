from __future__ import annotations

import json
from typing import Any

import pytest

from mizzen.api.resources import ContainerPort
from mizzen.model.proxy import node_id_for, node_metadata_for, proxy_from_node

NODE = "sidecar~10.1.1.1~reviews-v1-0.default~default.svc.cluster.local"


def test_node_id_format() -> None:
    assert node_id_for("sidecar", "10.1.1.1", "reviews-v1-0", "default") == NODE
    assert (
        node_id_for("router", "127.0.0.1", "gw-0", "istio-system", "mesh.local")
        == "router~127.0.0.1~gw-0.istio-system~istio-system.svc.mesh.local"
    )


def test_metadata_has_exactly_istio_keys() -> None:
    md = node_metadata_for(
        name="reviews-v1-0",
        namespace="default",
        ips=["10.1.1.1", "fd00::1"],
        labels={"app": "reviews"},
        annotations={"a": "b"},
        service_account="bookinfo-reviews",
        ports=[ContainerPort(9080, "http"), ContainerPort(15000)],
    )
    assert set(md) == {
        "NAME",
        "NAMESPACE",
        "INSTANCE_IPS",
        "LABELS",
        "ANNOTATIONS",
        "SERVICE_ACCOUNT",
        "POD_PORTS",
    }
    assert md["INSTANCE_IPS"] == "10.1.1.1,fd00::1"
    assert md["POD_PORTS"] == (
        '[{"name":"http","containerPort":9080,"protocol":"TCP"},'
        '{"containerPort":15000,"protocol":"TCP"}]'
    )


def test_round_trip() -> None:
    node = node_id_for("sidecar", "10.1.1.1", "reviews-v1-0", "default")
    md = node_metadata_for(
        name="reviews-v1-0",
        namespace="default",
        ips=["10.1.1.1"],
        labels={"app": "reviews", "version": "v1"},
        annotations={"x": "y"},
        service_account="bookinfo-reviews",
        ports=[ContainerPort(9080, "http"), ContainerPort(9090), ContainerPort(9080, "dup")],
    )
    proxy = proxy_from_node(node, md)
    assert proxy.id == node
    assert (proxy.type, proxy.ip, proxy.name, proxy.namespace) == (
        "sidecar",
        "10.1.1.1",
        "reviews-v1-0",
        "default",
    )
    assert proxy.labels == {"app": "reviews", "version": "v1"}
    assert proxy.annotations == {"x": "y"}
    assert proxy.service_account == "bookinfo-reviews"
    assert proxy.ports == (9080, 9090)


def test_node_id_alone_is_enough() -> None:
    proxy = proxy_from_node("router~127.0.0.1~gw-0.istio-system~istio-system.svc.cluster.local", {})
    assert (proxy.type, proxy.name, proxy.namespace, proxy.ip) == (
        "router",
        "gw-0",
        "istio-system",
        "127.0.0.1",
    )
    assert proxy.service_account == "default"
    assert proxy.labels == {} and proxy.ports == ()


def test_metadata_wins_over_node_id() -> None:
    md: dict[str, Any] = {"NAME": "real", "NAMESPACE": "prod", "LABELS": {"n": 1}}
    proxy = proxy_from_node(NODE, md)
    assert (proxy.name, proxy.namespace) == ("real", "prod")
    assert proxy.labels == {"n": "1"}


def test_dotted_pod_name_and_fallbacks() -> None:
    proxy = proxy_from_node("sidecar~~my.pod.ns~ns.svc.cluster.local", {"INSTANCE_IPS": "10.0.0.3"})
    assert (proxy.name, proxy.namespace, proxy.ip) == ("my.pod", "ns", "10.0.0.3")
    bare = proxy_from_node("sidecar~10.0.0.1~pod~team.svc.cluster.local", {})
    assert (bare.name, bare.namespace) == ("pod", "team")


def test_pod_ports_as_struct_list_with_float_numbers() -> None:
    # Envoy node metadata arrives as a protobuf Struct: numbers are floats.
    proxy = proxy_from_node(NODE, {"POD_PORTS": [{"containerPort": 9080.0}]})
    assert proxy.ports == (9080,)


@pytest.mark.parametrize(
    ("node_id", "message"),
    [
        ("", "4 parts"),
        ("sidecar~10.1.1.1~reviews.default", "4 parts"),
        ("sidecar~1~2~3~4", "4 parts"),
        ("gateway~10.1.1.1~p.ns~ns.svc.cluster.local", "type 'gateway'"),
        ("sidecar~~p.ns~ns.svc.cluster.local", "IP"),
        ("sidecar~10.0.0.1~~", "pod name"),
    ],
)
def test_malformed_node_id(node_id: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        proxy_from_node(node_id, {})


@pytest.mark.parametrize("raw", ["not json", '{"containerPort": 1}', '[{"port": 1}]'])
def test_malformed_pod_ports(raw: str) -> None:
    with pytest.raises(ValueError, match="POD_PORTS"):
        proxy_from_node(NODE, {"POD_PORTS": raw})


def test_pod_ports_json_is_what_kubernetes_writes() -> None:
    md = node_metadata_for(name="p", namespace="n", ips=[], ports=[ContainerPort(80, "web", "UDP")])
    assert json.loads(md["POD_PORTS"]) == [{"name": "web", "containerPort": 80, "protocol": "UDP"}]
