"""The mesh a cluster's objects describe (mizzen.kube.snapshot), fed with
objects shaped as the API server lists and watches them."""

from __future__ import annotations

from typing import Any

from mizzen.api.meshconfig import MeshConfig
from mizzen.kube.snapshot import WATCHED, ClusterConfig, ready_pod_addresses

KINDS = {w.kind: w for w in WATCHED}


def meta(name: str, namespace: str = "shop", created: str = "2026-12-01T00:00:00Z") -> Any:
    return {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{name}",
        "resourceVersion": "7",
        "creationTimestamp": created,
        "managedFields": [{"manager": "kubectl"}],
    }


def pod(name: str, version: str) -> dict[str, Any]:
    # As listed: no apiVersion or kind on the item.
    return {
        "metadata": {**meta(name), "labels": {"app": "reviews", "version": version}},
        "spec": {
            "nodeName": "mizzen-k1",
            "serviceAccountName": "reviews",
            "initContainers": [{"name": "istio-init", "image": "docker.io/mizzen/proxyv2:0.1.0"}],
            "containers": [
                {"name": "app", "image": "app", "ports": [{"containerPort": 9080}]},
                {"name": "istio-proxy", "image": "docker.io/mizzen/proxyv2:0.1.0"},
            ],
        },
        "status": {"phase": "Running", "podIP": "198.18.0.9"},
    }


SERVICE = {
    "metadata": meta("reviews"),
    "spec": {
        "clusterIP": "198.19.0.20",
        "selector": {"app": "reviews"},
        "ports": [{"name": "http", "port": 9080, "targetPort": 9080, "protocol": "TCP"}],
    },
}


def endpoint_slice(*ready: tuple[str, str, bool | None]) -> dict[str, Any]:
    endpoints = []
    for name, ip, is_ready in ready:
        conditions = {} if is_ready is None else {"ready": is_ready}
        endpoints.append(
            {
                "addresses": [ip],
                "conditions": conditions,
                "targetRef": {"kind": "Pod", "namespace": "shop", "name": name},
            }
        )
    return {
        "metadata": {**meta("reviews-abcde"), "labels": {"kubernetes.io/service-name": "reviews"}},
        "addressType": "IPv4",
        "endpoints": endpoints,
    }


def virtual_service(name: str, subset: str, created: str, weight: int | None = None) -> Any:
    route: dict[str, Any] = {"destination": {"host": "reviews", "subset": subset}}
    if weight is not None:
        route["weight"] = weight
    return {
        "metadata": meta(name, created=created),
        "spec": {"hosts": ["reviews"], "http": [{"route": [route]}]},
    }


def test_every_kind_has_a_list_path() -> None:
    assert KINDS["Pod"].path == "/api/v1/pods"
    assert KINDS["EndpointSlice"].path == "/apis/discovery.k8s.io/v1/endpointslices"
    assert KINDS["VirtualService"].path == "/apis/networking.istio.io/v1/virtualservices"
    assert KINDS["PeerAuthentication"].path == "/apis/security.istio.io/v1/peerauthentications"


def test_ready_addresses_come_from_endpoint_slices() -> None:
    eps = endpoint_slice(
        ("a", "198.18.0.2", True), ("b", "198.18.0.3", False), ("c", "198.18.0.4", None)
    )
    assert ready_pod_addresses([eps]) == {("shop", "a"): "198.18.0.2", ("shop", "c"): "198.18.0.4"}


def test_pods_become_endpoints_only_when_a_slice_says_ready() -> None:
    config = ClusterConfig()
    config.update(KINDS["Service"], "ADDED", SERVICE)
    config.update(KINDS["Pod"], "ADDED", pod("reviews-1", "v1"))
    host = "reviews.shop.svc.cluster.local"
    before = config.snapshot("1", MeshConfig())
    assert before.services[host].vip == "198.19.0.20"
    assert before.endpoints_of(host, 9080) == ()
    config.update(
        KINDS["EndpointSlice"], "ADDED", endpoint_slice(("reviews-1", "198.18.0.9", True))
    )
    after = config.snapshot("2", MeshConfig())
    assert [e.address for e in after.endpoints_of(host, 9080)] == ["198.18.0.9"]
    config.update(KINDS["EndpointSlice"], "DELETED", endpoint_slice())
    assert config.snapshot("3", MeshConfig()).endpoints_of(host, 9080) == ()


def test_an_invalid_new_version_keeps_the_last_valid_one() -> None:
    config = ClusterConfig()
    good = virtual_service("reviews", "v2", "2026-12-01T00:00:00Z")
    assert config.update(KINDS["VirtualService"], "ADDED", good) == ()
    bad = virtual_service("reviews", "v3", "2026-12-01T00:00:00Z", weight=-1)
    errors = config.update(KINDS["VirtualService"], "MODIFIED", bad)
    assert errors, "a negative weight must be refused"
    assert "kubernetes:virtualservices/shop/reviews" in str(errors[0])
    (vs,) = config.snapshot("2", MeshConfig()).virtual_services
    assert vs.http[0].route[0].destination.subset == "v2"
    config.update(KINDS["VirtualService"], "DELETED", bad)
    assert config.snapshot("3", MeshConfig()).virtual_services == ()
    assert config.rejected == {}


def test_resources_are_ordered_by_creation_time() -> None:
    config = ClusterConfig()
    newer = virtual_service("b-newer", "v3", "2026-12-01T10:00:00Z")
    older = virtual_service("z-older", "v1", "2026-12-01T09:00:00Z")
    config.update(KINDS["VirtualService"], "ADDED", newer)
    config.update(KINDS["VirtualService"], "ADDED", older)
    names = [vs.meta.name for vs in config.snapshot("1", MeshConfig()).virtual_services]
    assert names == ["z-older", "b-newer"]


def test_namespaces_are_kept_for_the_injection_rules() -> None:
    config = ClusterConfig()
    config.update(KINDS["Namespace"], "ADDED", {"metadata": {"name": "shop", "labels": {}}})
    assert config.rejected == {}
    assert list(config.resources) == [("Namespace", "", "shop")]
