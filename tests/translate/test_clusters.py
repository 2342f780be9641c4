from __future__ import annotations

from dataclasses import replace
from typing import Any

from google.protobuf.json_format import MessageToDict

from mizzen.api.resources import DestinationRule, ObjectMeta, Subset, TrafficPolicy
from mizzen.model.snapshot import MeshService, ServicePort, Workload
from mizzen.translate.clusters import build_clusters

from .factories import REVIEWS, REVIEWS_SUBSETS, bookinfo, router, service, sidecar, snapshot

H2 = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def clusters(snap: Any, proxy: Any = None) -> dict[str, dict[str, Any]]:
    return {c.name: MessageToDict(c) for c in build_clusters(snap, proxy or sidecar())}


def test_sidecar_cluster_names() -> None:
    assert list(clusters(bookinfo(destination_rules=[REVIEWS_SUBSETS]))) == [
        "BlackHoleCluster",
        "InboundPassthroughCluster",
        "PassthroughCluster",
        "inbound|9080||",
        "outbound|27017||mongodb.default.svc.cluster.local",
        f"outbound|9080|v1|{REVIEWS}",
        f"outbound|9080|v2|{REVIEWS}",
        f"outbound|9080|v3|{REVIEWS}",
        "outbound|9080||details.default.svc.cluster.local",
        "outbound|9080||productpage.default.svc.cluster.local",
        "outbound|9080||ratings.default.svc.cluster.local",
        f"outbound|9080||{REVIEWS}",
    ]


def test_router_has_no_inbound_clusters() -> None:
    names = list(clusters(bookinfo(), router()))
    assert "InboundPassthroughCluster" not in names
    assert not [n for n in names if n.startswith("inbound|")]
    assert "PassthroughCluster" in names


def test_outbound_cluster_is_eds_over_ads() -> None:
    cluster = clusters(bookinfo(destination_rules=[REVIEWS_SUBSETS]))[f"outbound|9080|v1|{REVIEWS}"]
    matches = cluster.pop("transportSocketMatches")  # auto mTLS: see test_mtls
    assert [m["name"] for m in matches] == ["tlsMode-istio"]
    assert cluster == {
        "name": f"outbound|9080|v1|{REVIEWS}",
        "type": "EDS",
        "connectTimeout": "10s",
        "edsClusterConfig": {
            "edsConfig": {"ads": {}, "resourceApiVersion": "V3"},
            "serviceName": f"outbound|9080|v1|{REVIEWS}",
        },
        # Istio's defaults: least request, circuit breakers wide open.
        "lbPolicy": "LEAST_REQUEST",
        "circuitBreakers": {
            "thresholds": [
                {
                    "maxConnections": 4294967295,
                    "maxPendingRequests": 4294967295,
                    "maxRequests": 4294967295,
                    "maxRetries": 4294967295,
                    "trackRemaining": True,
                }
            ]
        },
    }


def test_grpc_and_http2_ports_speak_http2_upstream() -> None:
    svc = service("grpc", ports=(("grpc", 7070, "GRPC"), ("http", 8080, "HTTP")))
    found = clusters(snapshot([svc]))
    grpc = found["outbound|7070||grpc.default.svc.cluster.local"]
    assert grpc["typedExtensionProtocolOptions"][H2]["explicitHttpConfig"] == {
        "http2ProtocolOptions": {}
    }
    assert (
        "typedExtensionProtocolOptions"
        not in found["outbound|8080||grpc.default.svc.cluster.local"]
    )


def _protocol(cluster: dict[str, Any]) -> str:
    options = cluster.get("typedExtensionProtocolOptions", {}).get(H2, {})
    if "useDownstreamProtocolConfig" in options:
        return "downstream"
    return "h2" if "explicitHttpConfig" in options else "http/1.1"


def test_undeclared_ports_keep_the_clients_protocol_both_ways() -> None:
    svc = service("echo", ports=(("", 8000, "UNKNOWN"),), selector={"app": "echo"})
    pod = Workload("echo-0", "default", "10.1.0.9", {"app": "echo"})
    snap = snapshot([svc], workloads=[pod])
    assert _protocol(clusters(snap)["outbound|8000||echo.default.svc.cluster.local"]) == (
        "downstream"
    )
    inbound = clusters(snap, sidecar("echo-0", labels={"app": "echo"}))["inbound|8000||"]
    assert _protocol(inbound) == "downstream"


def _upgrade(policy: str) -> TrafficPolicy:
    return TrafficPolicy(connection_pool={"http": {"h2UpgradePolicy": policy}})


def _rule(host: str, policy: TrafficPolicy, *subsets: Subset) -> DestinationRule:
    return DestinationRule(ObjectMeta(f"{host}-dr", "default"), host, policy, subsets)


def test_h2_upgrade_policy_rule_over_mesh_subset_over_rule() -> None:
    rule = _rule(
        "reviews",
        _upgrade("UPGRADE"),
        Subset("v1", {"version": "v1"}, _upgrade("DO_NOT_UPGRADE")),
        Subset("v2", {"version": "v2"}),
    )
    found = clusters(bookinfo(destination_rules=[rule]))
    assert _protocol(found[f"outbound|9080||{REVIEWS}"]) == "h2"
    assert _protocol(found[f"outbound|9080|v1|{REVIEWS}"]) == "http/1.1"
    assert _protocol(found[f"outbound|9080|v2|{REVIEWS}"]) == "h2"
    # HTTP/2 negotiated with the server's sidecar too.
    match = found[f"outbound|9080||{REVIEWS}"]["transportSocketMatches"][0]
    assert match["transportSocket"]["typedConfig"]["commonTlsContext"]["alpnProtocols"] == [
        "istio",
        "h2",
    ]
    # The mesh-wide default applies where no rule says; TCP is never upgraded.
    upgraded = replace(bookinfo(), h2_upgrade=True)
    found = clusters(upgraded)
    assert _protocol(found["outbound|9080||details.default.svc.cluster.local"]) == "h2"
    assert _protocol(found["outbound|27017||mongodb.default.svc.cluster.local"]) == "http/1.1"
    rule = _rule("details", _upgrade("DO_NOT_UPGRADE"))
    found = clusters(replace(bookinfo(destination_rules=[rule]), h2_upgrade=True))
    assert _protocol(found["outbound|9080||details.default.svc.cluster.local"]) == "http/1.1"


def test_inbound_cluster_is_loopback_bound_from_127_0_0_6() -> None:
    cluster = clusters(bookinfo())["inbound|9080||"]
    assert cluster["type"] == "STATIC"
    endpoint = cluster["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]
    assert endpoint["address"]["socketAddress"] == {"address": "127.0.0.1", "portValue": 9080}
    assert cluster["upstreamBindConfig"]["sourceAddress"] == {
        "address": "127.0.0.6",
        "portValue": 0,
    }


def test_inbound_ports_are_container_ports_and_selecting_service_targets() -> None:
    svc = MeshService(
        "web.default.svc.cluster.local",
        "default",
        "web",
        (ServicePort("http", 80, "HTTP", target_port="web"), ServicePort("m", 81, "TCP", 9091)),
        selector={"app": "web"},
    )
    pod = Workload("web-0", "default", "10.1.0.9", {"app": "web"}, container_ports={"web": 8080})
    proxy = sidecar("web-0", labels={"app": "web"}, ports=(8080, 7000, 15090))
    names = [
        n for n in clusters(snapshot([svc], workloads=[pod]), proxy) if n.startswith("inbound")
    ]
    assert names == ["inbound|7000||", "inbound|8080||", "inbound|9091||"]  # not 15090


def test_passthrough_and_blackhole() -> None:
    found = clusters(bookinfo())
    assert found["PassthroughCluster"] == {
        "name": "PassthroughCluster",
        "type": "ORIGINAL_DST",
        "connectTimeout": "10s",
        "lbPolicy": "CLUSTER_PROVIDED",
    }
    assert found["BlackHoleCluster"] == {
        "name": "BlackHoleCluster",
        "type": "STATIC",
        "connectTimeout": "10s",
    }
    inbound = found["InboundPassthroughCluster"]
    assert (inbound["type"], inbound["lbPolicy"]) == ("ORIGINAL_DST", "CLUSTER_PROVIDED")
    assert inbound["upstreamBindConfig"]["sourceAddress"]["address"] == "127.0.0.6"


def _entry(resolution: Any) -> MeshService:
    return MeshService(
        "api.example.com",
        "default",
        "api",
        (ServicePort("https", 443, "TLS"),),
        origin="serviceentry",
        location="MESH_EXTERNAL",
        resolution=resolution,
    )


def test_service_entry_resolutions() -> None:
    name = "outbound|443||api.example.com"
    assert clusters(snapshot([_entry("STATIC")]))[name]["type"] == "EDS"
    assert clusters(snapshot([_entry("NONE")]))[name]["lbPolicy"] == "CLUSTER_PROVIDED"
    dns = clusters(snapshot([_entry("DNS")]))[name]
    assert (dns["type"], dns["dnsLookupFamily"]) == ("STRICT_DNS", "V4_ONLY")
    target = dns["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]["address"]
    assert target["socketAddress"] == {"address": "api.example.com", "portValue": 443}


def test_export_to_hides_services_from_other_namespaces() -> None:
    private = MeshService(
        "db.data.svc.cluster.local",
        "data",
        "db",
        (ServicePort("tcp", 5432, "TCP"),),
        export_to=(".",),
    )
    assert "outbound|5432||db.data.svc.cluster.local" not in clusters(snapshot([private]))
    inside = sidecar("app-0", ns="data")
    assert "outbound|5432||db.data.svc.cluster.local" in clusters(snapshot([private]), inside)
