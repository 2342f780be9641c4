"""The Bookinfo manifests: well-formed, consistent with each other and with the apps."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

BOOKINFO = Path(__file__).resolve().parents[2] / "examples" / "bookinfo"

Doc = dict[str, Any]


def documents() -> Iterator[tuple[Path, Doc]]:
    for path in sorted(BOOKINFO.rglob("*.y*ml")):
        with path.open() as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    yield path, doc


def of_kind(kind: str, folder: str = "") -> list[tuple[Path, Doc]]:
    return [
        (path, doc)
        for path, doc in documents()
        if doc["kind"] == kind and path.parent.name.startswith(folder)
    ]


def test_every_document_has_api_version_kind_and_name() -> None:
    docs = list(documents())
    assert len(docs) >= 20
    for path, doc in docs:
        where = f"{path.relative_to(BOOKINFO)}: {doc.get('kind')}"
        assert isinstance(doc.get("apiVersion"), str), where
        assert isinstance(doc.get("kind"), str), where
        assert isinstance(doc.get("metadata", {}).get("name"), str), where
        if doc["apiVersion"].startswith("networking.istio.io/"):
            assert doc["apiVersion"] == "networking.istio.io/v1", where


def test_expected_files_exist() -> None:
    for name in (
        "platform/namespace.yaml",
        "networking/gateway.yaml",
        "routing/destination-rules.yaml",
        "routing/all-v1.yaml",
        "routing/reviews-jason-v2.yaml",
        "routing/reviews-50-v3.yaml",
        "routing/reviews-80-20.yaml",
        "README.md",
    ):
        assert (BOOKINFO / name).is_file(), name


def test_platform_is_consistent() -> None:
    (_, namespace), *_ = of_kind("Namespace")
    assert namespace["metadata"] == {"name": "default", "labels": {"istio-injection": "enabled"}}
    accounts = {doc["metadata"]["name"] for _, doc in of_kind("ServiceAccount")}
    services = {doc["metadata"]["name"]: doc for _, doc in of_kind("Service")}
    deployments = {doc["metadata"]["name"]: doc for _, doc in of_kind("Deployment")}
    assert set(services) == {"details", "ratings", "reviews", "productpage"}
    assert set(deployments) == {
        "details-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3", "productpage-v1"
    }  # fmt: skip
    assert accounts == {f"bookinfo-{name}" for name in services}
    for name, service in services.items():
        assert service["spec"]["ports"] == [{"name": "http", "port": 9080, "targetPort": 9080}]
        selector = service["spec"]["selector"]
        assert any(
            selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
            for d in deployments.values()
        ), name
    for name, deployment in deployments.items():
        spec = deployment["spec"]
        assert spec["replicas"] == 1
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"] == labels
        assert f"{labels['app']}-{labels['version']}" == name
        assert spec["template"]["spec"]["serviceAccountName"] in accounts
        (container,) = spec["template"]["spec"]["containers"]
        assert container["command"] == ["python3", f"../apps/{labels['app']}.py"]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env == {"VERSION": labels["version"], "PORT": "9080"}
        assert container["ports"] == [{"name": "http", "containerPort": 9080}]
        assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}


def test_deployment_commands_start_and_become_ready(run_process: Any) -> None:
    """Run each container like Mizzen would (relative paths against the manifest's
    folder), but on a loopback ephemeral port, and probe its readiness path."""
    for path, deployment in of_kind("Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        argv = [*container["command"], *container.get("args", [])]
        argv = [sys.executable] + [
            str(path.parent / a) if a.startswith(".") else a for a in argv[1:]
        ]
        env = {e["name"]: e["value"] for e in container["env"]}
        app = run_process(argv, env, path.parent)
        probe = container["readinessProbe"]["httpGet"]["path"]
        deadline = time.monotonic() + 5
        while app.get(probe)[0] != 200:
            assert time.monotonic() < deadline, deployment["metadata"]["name"]
            time.sleep(0.05)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if labels["app"] == "reviews":
            assert app.get("/reviews/0")[2]["version"] == labels["version"]


def test_gateway_routes_productpage() -> None:
    (_, gateway), *_ = of_kind("Gateway")
    assert gateway["metadata"]["name"] == "bookinfo-gateway"
    assert gateway["spec"]["selector"] == {"istio": "ingressgateway"}
    (server,) = gateway["spec"]["servers"]
    assert server["port"]["number"] == 8080 and server["port"]["protocol"] == "HTTP"
    assert server["hosts"] == ["*"]
    (_, vs), *_ = of_kind("VirtualService", "networking")
    assert vs["spec"]["gateways"] == ["bookinfo-gateway"]
    (route,) = vs["spec"]["http"]
    uris = [m["uri"] for m in route["match"]]
    for uri in ({"exact": "/productpage"}, {"exact": "/health"}, {"prefix": "/static"}):
        assert uri in uris
    assert route["route"] == [{"destination": {"host": "productpage", "port": {"number": 9080}}}]


def subsets() -> dict[str, set[str]]:
    return {
        doc["spec"]["host"]: {s["name"] for s in doc["spec"]["subsets"]}
        for _, doc in of_kind("DestinationRule")
    }


def test_destination_rules() -> None:
    assert subsets() == {
        "productpage": {"v1"},
        "details": {"v1"},
        "ratings": {"v1"},
        "reviews": {"v1", "v2", "v3"},
    }


def routing_variant(name: str) -> list[Doc]:
    with (BOOKINFO / "routing" / name).open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


@pytest.mark.parametrize(
    "name", ["all-v1.yaml", "reviews-jason-v2.yaml", "reviews-50-v3.yaml", "reviews-80-20.yaml"]
)
def test_routing_variants_name_known_subsets(name: str) -> None:
    known = subsets()
    for vs in routing_variant(name):
        assert vs["kind"] == "VirtualService"
        for http in vs["spec"]["http"]:
            route = http["route"]
            if len(route) > 1:
                assert sum(r["weight"] for r in route) == 100
            for r in route:
                assert r["destination"]["subset"] in known[r["destination"]["host"]]


def weights(doc: Doc) -> dict[str, int]:
    (http,) = doc["spec"]["http"]
    return {r["destination"]["subset"]: r.get("weight", 100) for r in http["route"]}


def test_routing_variants_say_what_their_names_say() -> None:
    all_v1 = routing_variant("all-v1.yaml")
    assert {vs["metadata"]["name"] for vs in all_v1} == set(subsets())
    assert all(weights(vs) == {"v1": 100} for vs in all_v1)
    (fifty,) = routing_variant("reviews-50-v3.yaml")
    assert weights(fifty) == {"v1": 50, "v3": 50}
    (canary,) = routing_variant("reviews-80-20.yaml")
    assert weights(canary) == {"v1": 80, "v2": 20}
    (jason,) = routing_variant("reviews-jason-v2.yaml")
    first, rest = jason["spec"]["http"]
    assert first["match"] == [{"headers": {"end-user": {"exact": "jason"}}}]
    assert first["route"] == [{"destination": {"host": "reviews", "subset": "v2"}}]
    assert "match" not in rest
    assert rest["route"] == [{"destination": {"host": "reviews", "subset": "v1"}}]
    for variant in (fifty, canary, jason):
        assert variant["metadata"]["name"] == "reviews"  # each replaces the others


def test_mizzen_loader_accepts_everything() -> None:
    load = pytest.importorskip("mizzen.api.load")
    result = load.load_paths([BOOKINFO])
    assert result.errors == ()
