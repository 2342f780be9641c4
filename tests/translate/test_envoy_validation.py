"""In-memory scenarios through ``envoy --mode validate`` (golden outputs are
validated by ``test_golden``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mizzen.api.resources import (
    FaultAbort,
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPRewrite,
    HTTPRoute,
    StringMatch,
)
from mizzen.model.snapshot import Endpoint, MeshService, ServicePort
from mizzen.translate import CLUSTER, build_resources

from .envoy_check import bootstrap, validate
from .factories import (
    REVIEWS_SUBSETS,
    bookinfo,
    gateway,
    router,
    service,
    sidecar,
    snapshot,
    to,
    vs,
)


def scenarios() -> dict[str, dict[str, Any]]:
    external = MeshService(
        "api.example.com",
        "default",
        "api",
        (ServicePort("http", 80, "HTTP"), ServicePort("tls", 443, "TLS")),
        origin="serviceentry",
        location="MESH_EXTERNAL",
        resolution="DNS",
        vip="240.240.0.1",
    )
    grpc = service(
        "echo", ports=(("grpc", 7070, "GRPC"), ("http2", 8080, "HTTP2")), vip="10.0.0.30"
    )
    headless = MeshService(
        "db.default.svc.cluster.local",
        "default",
        "db",
        (ServicePort("tcp", 5432, "TCP"),),
        resolution="NONE",
    )
    regex_rewrite = HTTPRoute(
        match=(HTTPMatchRequest(uri=StringMatch("regex", "/v[0-9]/.*")),),
        rewrite=HTTPRewrite(uri="/"),
        fault=HTTPFaultInjection(abort=FaultAbort(grpc_status="UNAVAILABLE")),
        route=(to("echo", port=7070),),
    )
    gw = gateway("gw", [(8080, "HTTP", ["*"]), (9000, "TCP", ["*"])])
    to_gateway = vs("front", ["*"], [HTTPRoute(route=(to("productpage"),))], gateways=["gw"])
    mesh = snapshot(
        [external, grpc, headless, service("web", vip="10.0.0.31")],
        {(external.hostname, 80): [Endpoint("192.0.2.1", 80)]},
        virtual_services=[vs("echo", ["echo"], [regex_rewrite])],
    )
    return {
        "bookinfo-sidecar": build_resources(
            bookinfo(destination_rules=[REVIEWS_SUBSETS]), sidecar()
        ),
        "mixed-sidecar": build_resources(mesh, sidecar(ports=(9080, 7070, 8081))),
        "bookinfo-router": build_resources(
            bookinfo([to_gateway], gateways=[gw]),
            router(annotations={"mizzen.io/listen-address": "127.0.0.1"}),
        ),
    }


def test_translated_scenarios_pass_envoy_validation(tmp_path: Path) -> None:
    bootstraps = {name: bootstrap(resources) for name, resources in scenarios().items()}
    failures = validate(bootstraps, tmp_path)
    assert not failures, "\n\n".join(f"{name}:\n{error}" for name, error in failures.items())


def test_validation_reports_envoy_errors(tmp_path: Path) -> None:
    resources = build_resources(bookinfo(), sidecar())
    broken = resources[CLUSTER]["BlackHoleCluster"]
    broken.lb_policy = broken.CLUSTER_PROVIDED  # only valid on ORIGINAL_DST clusters
    failures = validate({"broken": bootstrap(resources)}, tmp_path)
    assert "broken" in failures
    assert failures["broken"].strip()
