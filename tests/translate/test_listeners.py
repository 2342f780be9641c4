from __future__ import annotations

from dataclasses import replace
from typing import Any

from google.protobuf.json_format import MessageToDict

from mizzen.api.resources import Destination, RouteDestination, TCPRoute
from mizzen.model.snapshot import Workload
from mizzen.translate.listeners import build_listeners

from .factories import bookinfo, dr, fqdn, gateway, pa, router, service, sidecar, snapshot, vs

TCP_PROXY = "envoy.filters.network.tcp_proxy"
HCM = "envoy.filters.network.http_connection_manager"


def listeners(snap: Any, proxy: Any = None) -> dict[str, dict[str, Any]]:
    return {x.name: MessageToDict(x) for x in build_listeners(snap, proxy or sidecar())}


def chain_filter(chain: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (network_filter,) = chain["filters"]
    return network_filter["name"], network_filter["typedConfig"]


def test_sidecar_listener_names() -> None:
    assert list(listeners(bookinfo())) == [
        "0.0.0.0_9080",
        "10.0.0.14_27017",
        "virtualInbound",
        "virtualOutbound",
    ]


def test_virtual_outbound_hands_off_and_passes_through() -> None:
    outbound = listeners(bookinfo())["virtualOutbound"]
    assert outbound["address"]["socketAddress"] == {"address": "0.0.0.0", "portValue": 15001}
    assert outbound["useOriginalDst"] is True
    chains = {c["name"]: c for c in outbound["filterChains"]}
    assert list(chains) == ["virtualOutbound-blackhole", "virtualOutbound-catchall-tcp"]
    kind, config = chain_filter(chains["virtualOutbound-catchall-tcp"])
    assert (kind, config["cluster"]) == (TCP_PROXY, "PassthroughCluster")
    assert "filterChainMatch" not in chains["virtualOutbound-catchall-tcp"]


def test_http_port_listener_uses_rds_by_port() -> None:
    listener = listeners(bookinfo())["0.0.0.0_9080"]
    assert listener["bindToPort"] is False
    assert listener["address"]["socketAddress"] == {"address": "0.0.0.0", "portValue": 9080}
    kind, config = chain_filter(listener["filterChains"][0])
    assert kind == HCM
    assert config["rds"] == {
        "configSource": {"ads": {}, "resourceApiVersion": "V3"},
        "routeConfigName": "9080",
    }
    assert [f["name"] for f in config["httpFilters"]] == [
        "envoy.filters.http.grpc_stats",
        "envoy.filters.http.fault",
        "envoy.filters.http.router",
    ]
    assert config.get("codecType", "AUTO") == "AUTO"  # the enum default
    assert config["normalizePath"] is True
    assert config["useRemoteAddress"] is False
    log_format = config["accessLog"][0]["typedConfig"]["logFormat"]["textFormatSource"]
    assert "%RESPONSE_FLAGS%" in log_format["inlineString"]
    assert "%UPSTREAM_CLUSTER%" in log_format["inlineString"]
    assert log_format["inlineString"].count("\n") == 1


def test_tcp_service_listener_on_its_vip() -> None:
    listener = listeners(bookinfo())["10.0.0.14_27017"]
    assert listener["bindToPort"] is False
    assert listener["address"]["socketAddress"] == {"address": "10.0.0.14", "portValue": 27017}
    kind, config = chain_filter(listener["filterChains"][0])
    assert (kind, config["cluster"]) == (TCP_PROXY, f"outbound|27017||{fqdn('mongodb')}")


def test_tcp_routes_split_by_weight() -> None:
    rule = TCPRoute(
        route=(
            RouteDestination(Destination("mongodb", "v1"), 70),
            RouteDestination(Destination("mongodb", "v2"), 30),
        )
    )
    snap = bookinfo(
        [vs("mongodb", ["mongodb"], tcp=[rule])],
        [dr("mongodb", ("v1", {"version": "v1"}), ("v2", {"version": "v2"}))],
    )
    _, config = chain_filter(listeners(snap)["10.0.0.14_27017"]["filterChains"][0])
    assert config["weightedClusters"]["clusters"] == [
        {"name": f"outbound|27017|v1|{fqdn('mongodb')}", "weight": 70},
        {"name": f"outbound|27017|v2|{fqdn('mongodb')}", "weight": 30},
    ]


def test_virtual_inbound_chains_per_port_and_catchall() -> None:
    snap = bookinfo(peer_authentications=[pa("default", mode="DISABLE")])
    inbound = listeners(snap, sidecar(ports=(9080, 7777)))["virtualInbound"]
    assert inbound["address"]["socketAddress"]["portValue"] == 15006
    assert [f["name"] for f in inbound["listenerFilters"]] == [
        "envoy.filters.listener.original_dst"
    ]
    chains = inbound["filterChains"]
    assert [(c["name"], c.get("filterChainMatch")) for c in chains] == [
        ("virtualInbound-blackhole", {"destinationPort": 15006}),
        ("inbound|7777||-plaintext", {"destinationPort": 7777}),
        ("inbound|9080||-plaintext", {"destinationPort": 9080}),
        ("virtualInbound-catchall-tcp", None),
    ]
    kind, tcp = chain_filter(chains[1])  # 7777: no service names it, so TCP
    assert (kind, tcp["cluster"]) == (TCP_PROXY, "inbound|7777||")
    kind, http = chain_filter(chains[2])  # 9080: productpage's HTTP port
    assert kind == HCM
    route_config = http["routeConfig"]
    assert route_config["name"] == "inbound|9080||"
    (host,) = route_config["virtualHosts"]
    assert host["domains"] == ["*"]
    assert host["routes"][0]["route"]["cluster"] == "inbound|9080||"
    kind, catchall = chain_filter(chains[3])
    assert (kind, catchall["cluster"]) == (TCP_PROXY, "InboundPassthroughCluster")


def test_router_listens_per_gateway_port_on_the_annotated_address() -> None:
    gw = gateway("gw", [(8080, "HTTP", ["*"]), (8443, "HTTPS", ["*"])])
    proxy = router(annotations={"mizzen.io/listen-address": "127.0.0.1"})
    found = listeners(bookinfo(gateways=[gw]), proxy)
    assert list(found) == ["0.0.0.0_8080"]  # HTTPS waits for certificates
    listener = found["0.0.0.0_8080"]
    assert listener["address"]["socketAddress"] == {"address": "127.0.0.1", "portValue": 8080}
    assert "bindToPort" not in listener
    _, config = chain_filter(listener["filterChains"][0])
    assert config["rds"]["routeConfigName"] == "http.8080"
    assert config["useRemoteAddress"] is True


def test_router_defaults_to_the_wildcard_address() -> None:
    gw = gateway("gw", [(80, "HTTP", ["*"])])
    found = listeners(bookinfo(gateways=[gw]), router())
    assert found["0.0.0.0_80"]["address"]["socketAddress"]["address"] == "0.0.0.0"


def test_proxy_ports_are_never_served_or_captured_twice() -> None:
    status = service("gw-status", ports=(("status-port", 15021, "HTTP"),), vip="10.0.0.40")
    found = listeners(snapshot([status]), sidecar(ports=(15006, 15021, 8080)))
    assert "0.0.0.0_15021" not in found
    chains = [c["name"] for c in found["virtualInbound"]["filterChains"]]
    assert [c for c in chains if "8080" in c or "15021" in c] == [
        "inbound|8080||",
        "inbound|8080||-plaintext",
        "inbound|8080||-tls",
    ]


def _detecting_snapshot(timeout: float) -> Any:
    svc = service("echo", ports=(("", 8000, "UNKNOWN"),), vip="10.0.0.20", selector={"app": "echo"})
    pod = Workload("echo-0", "default", "10.1.0.9", {"app": "echo"})
    return replace(snapshot([svc], workloads=[pod]), protocol_detection_timeout=timeout)


def test_protocol_detection_timeout_from_the_mesh_config() -> None:
    echo = sidecar("echo-0", labels={"app": "echo"}, ports=())
    # Istio's default 0s: the outbound side waits for the client's bytes;
    # the inbound side keeps Envoy's own 15 s so a silent client still gets in.
    waiting = _detecting_snapshot(0.0)
    assert listeners(waiting)["10.0.0.20_8000"]["listenerFiltersTimeout"] == "0s"
    inbound = listeners(waiting, echo)["virtualInbound"]
    assert "listenerFiltersTimeout" not in inbound
    assert [f["name"] for f in inbound["listenerFilters"]][-1] == (
        "envoy.filters.listener.http_inspector"
    )
    timed = _detecting_snapshot(0.25)
    outbound = listeners(timed)["10.0.0.20_8000"]
    assert outbound["listenerFiltersTimeout"] == "0.250s"
    assert outbound["continueOnListenerFiltersTimeout"] is True
    inbound = listeners(timed, echo)["virtualInbound"]
    assert inbound["listenerFiltersTimeout"] == "0.250s"
    assert inbound["continueOnListenerFiltersTimeout"] is True
