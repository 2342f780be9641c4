"""Mutual TLS in translation: PeerAuthentication on the inbound side, auto
mTLS and DestinationRule ``tls`` on the outbound side, endpoint metadata."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict

from mizzen.api.resources import ObjectMeta, Subset, TrafficPolicy
from mizzen.model.snapshot import MeshService, MeshSnapshot, ServicePort
from mizzen.translate.authn import WorkloadMtls, namespace_mode, service_mode, workload_mtls
from mizzen.translate.clusters import build_clusters
from mizzen.translate.endpoints import build_endpoints
from mizzen.translate.listeners import build_listeners

from .factories import REVIEWS, REVIEWS_SUBSETS, bookinfo, dr, pa, sidecar

REVIEWS_SA = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
HCM = "envoy.filters.network.http_connection_manager"
TLS_CONTEXT = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3"


def sds(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "sdsConfig": {
            "apiConfigSource": {
                "apiType": "GRPC",
                "transportApiVersion": "V3",
                "setNodeOnFirstMessageOnly": True,
                "grpcServices": [{"envoyGrpc": {"clusterName": "sds-grpc"}}],
            },
            "initialFetchTimeout": "0s",
            "resourceApiVersion": "V3",
        },
    }


# -- which mode applies ---------------------------------------------------------


def test_no_policy_is_permissive() -> None:
    assert workload_mtls(bookinfo(), "default", {"app": "reviews"}) == WorkloadMtls("PERMISSIVE")


def test_narrowest_scope_wins_and_unset_inherits() -> None:
    snap = bookinfo(
        peer_authentications=[
            pa("default", "istio-system", "STRICT"),
            pa("default", "default", "UNSET"),
            pa("reviews", selector={"app": "reviews"}, mode="PERMISSIVE", ports={9080: "DISABLE"}),
            pa("ratings", selector={"app": "ratings"}, ports={9080: "UNSET"}),
        ]
    )
    assert namespace_mode(snap, "default") == "STRICT"  # UNSET inherits the mesh
    assert workload_mtls(snap, "default", {"app": "reviews"}) == WorkloadMtls(
        "PERMISSIVE", {9080: "DISABLE"}
    )
    ratings = workload_mtls(snap, "default", {"app": "ratings"})
    assert ratings == WorkloadMtls("STRICT", {9080: "STRICT"})
    assert workload_mtls(snap, "other", {"app": "reviews"}) == WorkloadMtls("STRICT")


def test_the_oldest_policy_of_a_scope_wins() -> None:
    snap = bookinfo(
        peer_authentications=[
            pa("first", mode="DISABLE"),
            pa("second", mode="STRICT"),
            pa("w1", selector={"app": "reviews"}, mode="STRICT"),
            pa("w2", selector={"app": "reviews"}, mode="DISABLE"),
        ]
    )
    assert namespace_mode(snap, "default") == "DISABLE"
    assert workload_mtls(snap, "default", {"app": "reviews"}).mode == "STRICT"


def test_selectors_in_the_root_namespace_select_nothing() -> None:
    snap = bookinfo(
        peer_authentications=[pa("x", "istio-system", "STRICT", selector={"app": "reviews"})]
    )
    assert workload_mtls(snap, "default", {"app": "reviews"}).mode == "PERMISSIVE"


def test_clients_learn_only_namespace_and_mesh_levels() -> None:
    snap = bookinfo(
        peer_authentications=[
            pa("default", mode="DISABLE"),
            pa("w", selector={"app": "reviews"}, mode="STRICT"),
        ]
    )
    reviews = snap.services[REVIEWS]
    assert service_mode(snap, reviews) == "DISABLE"
    external = dataclasses.replace(reviews, location="MESH_EXTERNAL")
    assert service_mode(snap, external) is None


# -- inbound ----------------------------------------------------------------------


def inbound(snap: MeshSnapshot, **proxy: Any) -> dict[str, Any]:
    listeners = {x.name: x for x in build_listeners(snap, sidecar(**proxy))}
    found: dict[str, Any] = MessageToDict(listeners["virtualInbound"])
    return found


def chains(listener: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in listener["filterChains"]}


def test_strict_takes_only_mtls() -> None:
    snap = bookinfo(peer_authentications=[pa("default", mode="STRICT")])
    found = chains(inbound(snap))
    assert [n for n in found if "9080" in n] == ["inbound|9080||"]
    chain = found["inbound|9080||"]
    # Any TLS, as Istio: the client certificate decides, not the ALPN.
    assert chain["filterChainMatch"] == {"destinationPort": 9080, "transportProtocol": "tls"}
    socket = chain["transportSocket"]
    assert socket["name"] == "envoy.transport_sockets.tls"
    context = socket["typedConfig"]
    assert context["@type"] == f"{TLS_CONTEXT}.DownstreamTlsContext"
    assert context["requireClientCertificate"] is True
    common = context["commonTlsContext"]
    assert common["alpnProtocols"] == ["h2", "http/1.1"]
    assert common["tlsCertificateSdsSecretConfigs"] == [sds("default")]
    assert common["combinedValidationContext"] == {
        "defaultValidationContext": {},
        "validationContextSdsSecretConfig": sds("ROOTCA"),
    }
    assert common["tlsParams"] == {
        "tlsMinimumProtocolVersion": "TLSv1_2",
        "tlsMaximumProtocolVersion": "TLSv1_3",
    }
    (network,) = chain["filters"]
    manager = network["typedConfig"]
    assert network["name"] == HCM
    assert manager["forwardClientCertDetails"] == "APPEND_FORWARD"
    assert manager["setCurrentClientCertDetails"] == {"subject": True, "dns": True, "uri": True}
    assert list(found)[-1] == "virtualInbound-catchall-mtls"
    assert found["virtualInbound-catchall-mtls"]["filterChainMatch"] == {"transportProtocol": "tls"}


def test_permissive_tells_mtls_plaintext_and_foreign_tls_apart() -> None:
    found = chains(inbound(bookinfo()))
    assert [n for n in found if "9080" in n] == [
        "inbound|9080||",
        "inbound|9080||-plaintext",
        "inbound|9080||-tls",
    ]
    assert found["inbound|9080||"]["filterChainMatch"] == {
        "destinationPort": 9080,
        "transportProtocol": "tls",
        "applicationProtocols": [
            "istio",
            "istio-peer-exchange",
            "istio-http/1.0",
            "istio-http/1.1",
            "istio-h2",
        ],
    }
    assert found["inbound|9080||-plaintext"]["filterChainMatch"] == {"destinationPort": 9080}
    assert "transportSocket" not in found["inbound|9080||-plaintext"]
    plain = found["inbound|9080||-plaintext"]["filters"][0]["typedConfig"]
    assert "forwardClientCertDetails" not in plain  # SANITIZE: a forged XFCC is dropped
    foreign = found["inbound|9080||-tls"]
    assert foreign["filterChainMatch"] == {"destinationPort": 9080, "transportProtocol": "tls"}
    assert foreign["filters"][0]["name"] == "envoy.filters.network.tcp_proxy"
    assert list(found)[-3:] == [
        "virtualInbound-catchall-mtls",
        "virtualInbound-catchall-tcp",
        "virtualInbound-catchall-tls",
    ]


def test_tls_inspector_skips_plaintext_only_ports() -> None:
    snap = bookinfo(
        peer_authentications=[
            pa("default", mode="STRICT"),
            pa("pp", selector={"app": "productpage"}, ports={7070: "DISABLE"}),
        ]
    )
    listener = inbound(snap, ports=(9080, 7070))
    names = [f["name"] for f in listener["listenerFilters"]]
    assert names == ["envoy.filters.listener.original_dst", "envoy.filters.listener.tls_inspector"]
    inspector = listener["listenerFilters"][1]
    assert inspector["filterDisabled"] == {"destinationPortRange": {"start": 7070, "end": 7071}}
    assert listener["continueOnListenerFiltersTimeout"] is True
    found = chains(listener)
    assert [n for n in found if "7070" in n] == ["inbound|7070||-plaintext"]
    assert [n for n in found if "9080" in n] == ["inbound|9080||"]


def test_a_disabled_workload_inspects_only_its_tls_ports() -> None:
    snap = bookinfo(
        peer_authentications=[
            pa("pp", selector={"app": "productpage"}, mode="DISABLE", ports={9080: "STRICT"})
        ]
    )
    listener = inbound(snap, ports=(9080, 7070))
    inspector = listener["listenerFilters"][1]
    assert inspector["filterDisabled"] == {
        "notMatch": {"destinationPortRange": {"start": 9080, "end": 9081}}
    }
    found = chains(listener)
    assert list(found)[-1] == "virtualInbound-catchall-tcp"
    assert "virtualInbound-catchall-mtls" not in found


def test_all_disabled_needs_no_inspector() -> None:
    listener = inbound(bookinfo(peer_authentications=[pa("default", mode="DISABLE")]))
    assert len(listener["listenerFilters"]) == 1
    assert "continueOnListenerFiltersTimeout" not in listener


# -- outbound ---------------------------------------------------------------------


def clusters(snap: MeshSnapshot) -> dict[str, dict[str, Any]]:
    return {c.name: MessageToDict(c) for c in build_clusters(snap, sidecar())}


def test_auto_mtls_picks_tls_by_endpoint_metadata() -> None:
    cluster = clusters(bookinfo(destination_rules=[REVIEWS_SUBSETS]))[f"outbound|9080|v1|{REVIEWS}"]
    assert "transportSocket" not in cluster
    (istio,) = cluster["transportSocketMatches"]  # others: the default, plaintext
    assert istio["name"] == "tlsMode-istio"
    assert istio["match"] == {"tlsMode": "istio"}
    context = istio["transportSocket"]["typedConfig"]
    assert context["@type"] == f"{TLS_CONTEXT}.UpstreamTlsContext"
    assert context["sni"] == f"outbound_.9080_.v1_.{REVIEWS}"
    common = context["commonTlsContext"]
    assert common["alpnProtocols"] == ["istio"]
    assert common["tlsCertificateSdsSecretConfigs"] == [sds("default")]
    assert common["combinedValidationContext"] == {
        "defaultValidationContext": {
            "matchTypedSubjectAltNames": [{"sanType": "URI", "matcher": {"exact": REVIEWS_SA}}]
        },
        "validationContextSdsSecretConfig": sds("ROOTCA"),
    }


def test_http2_clusters_also_offer_h2() -> None:
    snap = bookinfo()
    grpc = MeshService(
        "echo.default.svc.cluster.local",
        "default",
        "echo",
        (ServicePort("grpc", 7070, "GRPC"),),
        vip="10.0.0.30",
    )
    snap = dataclasses.replace(snap, services={**snap.services, grpc.hostname: grpc})
    cluster = clusters(snap)[f"outbound|7070||{grpc.hostname}"]
    context = cluster["transportSocketMatches"][0]["transportSocket"]["typedConfig"]
    assert context["commonTlsContext"]["alpnProtocols"] == ["istio", "h2"]


def test_no_auto_mtls_when_the_namespace_disables_it_or_auto_mtls_is_off() -> None:
    disabled = bookinfo(peer_authentications=[pa("default", mode="DISABLE")])
    assert "transportSocketMatches" not in clusters(disabled)[f"outbound|9080||{REVIEWS}"]
    off = dataclasses.replace(bookinfo(), auto_mtls=False)
    assert "transportSocketMatches" not in clusters(off)[f"outbound|9080||{REVIEWS}"]


def test_fixed_clusters_stay_plaintext() -> None:
    found = clusters(bookinfo())
    for name in ("PassthroughCluster", "BlackHoleCluster", "InboundPassthroughCluster"):
        assert "transportSocket" not in found[name]
        assert "transportSocketMatches" not in found[name]
    assert "transportSocketMatches" not in found["inbound|9080||"]


def tls_rule(top: str | None, subset: str | None = None, port_level: str | None = None) -> Any:
    def policy(mode: str | None, ports: str | None = None) -> TrafficPolicy | None:
        if mode is None and ports is None:
            return None
        levels = ({"port": {"number": 9080}, "tls": {"mode": ports}},) if ports else ()
        return TrafficPolicy(tls={"mode": mode} if mode else None, port_level_settings=levels)

    rule = dr("reviews", ("v1", {"version": "v1"}))
    return dataclasses.replace(
        rule,
        traffic_policy=policy(top, port_level),
        subsets=(Subset("v1", {"version": "v1"}, policy(subset)),),
    )


@pytest.mark.parametrize(
    ("rule", "default", "v1"),
    [
        (tls_rule("ISTIO_MUTUAL"), "istio", "istio"),
        (tls_rule("DISABLE"), "plain", "plain"),
        (tls_rule("DISABLE", subset="ISTIO_MUTUAL"), "plain", "istio"),
        (tls_rule("ISTIO_MUTUAL", port_level="DISABLE"), "plain", "plain"),
        (tls_rule("DISABLE", subset="ISTIO_MUTUAL", port_level="DISABLE"), "plain", "istio"),
    ],
)
def test_destination_rule_tls_wins_over_auto_mtls(rule: Any, default: str, v1: str) -> None:
    found = clusters(bookinfo(destination_rules=[rule]))

    def kind(cluster: dict[str, Any]) -> str:
        assert "transportSocketMatches" not in cluster
        return "istio" if "transportSocket" in cluster else "plain"

    assert kind(found[f"outbound|9080||{REVIEWS}"]) == default
    assert kind(found[f"outbound|9080|v1|{REVIEWS}"]) == v1


def test_istio_mutual_takes_names_from_the_rule() -> None:
    rule = dataclasses.replace(
        dr("reviews"),
        meta=ObjectMeta("r", "default"),
        traffic_policy=TrafficPolicy(
            tls={"mode": "ISTIO_MUTUAL", "sni": "my.sni", "subjectAltNames": ["spiffe://x/y"]}
        ),
    )
    cluster = clusters(bookinfo(destination_rules=[rule]))[f"outbound|9080||{REVIEWS}"]
    context = cluster["transportSocket"]["typedConfig"]
    assert context["sni"] == "my.sni"
    matcher = context["commonTlsContext"]["combinedValidationContext"]["defaultValidationContext"]
    assert matcher == {
        "matchTypedSubjectAltNames": [{"sanType": "URI", "matcher": {"exact": "spiffe://x/y"}}]
    }


def test_endpoints_with_a_sidecar_carry_the_tls_mode() -> None:
    assignment = next(
        MessageToDict(a)
        for a in build_endpoints(bookinfo(), sidecar())
        if a.cluster_name == f"outbound|9080||{REVIEWS}"
    )
    metadata = {
        e["endpoint"]["address"]["socketAddress"]["address"]: e.get("metadata")
        for group in assignment["endpoints"]
        for e in group["lbEndpoints"]
    }
    istio = {"filterMetadata": {"envoy.transport_socket_match": {"tlsMode": "istio"}}}
    assert metadata == {"10.1.0.3": istio, "10.1.0.4": istio, "10.1.0.5": None}


def test_several_plaintext_ports_are_ored() -> None:
    snap = bookinfo(
        peer_authentications=[
            pa("pp", selector={"app": "productpage"}, ports={7070: "DISABLE", 7071: "DISABLE"})
        ]
    )
    inspector = inbound(snap, ports=(9080, 7070, 7071))["listenerFilters"][1]
    assert inspector["filterDisabled"] == {
        "orMatch": {
            "rules": [
                {"destinationPortRange": {"start": 7070, "end": 7071}},
                {"destinationPortRange": {"start": 7071, "end": 7072}},
            ]
        }
    }


def test_a_port_level_mode_applies_to_a_port_nothing_declares() -> None:
    snap = bookinfo(
        peer_authentications=[
            pa("default", mode="STRICT"),
            pa("pp", selector={"app": "productpage"}, ports={7777: "DISABLE"}),
        ]
    )
    listener = inbound(snap)  # the pod declares 9080 only
    found = chains(listener)
    assert found["virtualInbound-catchall-tcp-7777"]["filterChainMatch"] == {
        "destinationPort": 7777
    }
    assert "virtualInbound-catchall-mtls-7777" not in found
    assert "virtualInbound-catchall-tcp" not in found  # the rest stays STRICT
    inspector = listener["listenerFilters"][1]
    assert inspector["filterDisabled"] == {"destinationPortRange": {"start": 7777, "end": 7778}}
