"""The bootstrap renderer: node identity, ADS wiring, ports; Envoy validates it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mizzen.agent.bootstrap import (
    METADATA_KEYS,
    BootstrapError,
    BootstrapOptions,
    PodPort,
    node_cluster,
    node_id,
    render_bootstrap,
    render_bootstrap_json,
)
from mizzen.agent.envoy import resolve_envoy_binary


def opts(**overrides: Any) -> BootstrapOptions:
    base: dict[str, Any] = {
        "pod": "reviews-v1-abc",
        "namespace": "default",
        "ips": ("198.18.0.7",),
        "xds_host": "198.18.0.1",
        "xds_port": 15010,
        "labels": {"app": "reviews", "version": "v1"},
        "annotations": {"sidecar.istio.io/inject": "true"},
        "service_account": "bookinfo-reviews",
        "pod_ports": (PodPort(9080, "http"),),
    }
    base.update(overrides)
    return BootstrapOptions(**base)


def test_sidecar_node_id_follows_istio() -> None:
    assert node_id(opts()) == "sidecar~198.18.0.7~reviews-v1-abc.default~default.svc.cluster.local"


def test_router_node_id_and_first_ip() -> None:
    o = opts(
        proxy_type="router",
        pod="istio-ingressgateway-0",
        namespace="istio-system",
        ips=("127.0.0.1", "10.0.0.2"),
    )
    assert node_id(o) == (
        "router~127.0.0.1~istio-ingressgateway-0.istio-system~istio-system.svc.cluster.local"
    )


def test_node_metadata_has_exactly_istio_keys() -> None:
    node = render_bootstrap(opts(ips=("198.18.0.7", "fd00::7")))["node"]
    md = node["metadata"]
    assert sorted(md) == sorted(METADATA_KEYS)
    assert md["NAME"] == "reviews-v1-abc"
    assert md["NAMESPACE"] == "default"
    assert md["INSTANCE_IPS"] == "198.18.0.7,fd00::7"
    assert md["LABELS"] == {"app": "reviews", "version": "v1"}
    assert md["ANNOTATIONS"] == {"sidecar.istio.io/inject": "true"}
    assert md["SERVICE_ACCOUNT"] == "bookinfo-reviews"
    # A JSON string, as Istio sends it, not a list.
    assert isinstance(md["POD_PORTS"], str)
    assert json.loads(md["POD_PORTS"]) == [
        {"name": "http", "containerPort": 9080, "protocol": "TCP"}
    ]


def test_empty_pod_ports_is_an_empty_json_list() -> None:
    md = render_bootstrap(opts(pod_ports=()))["node"]["metadata"]
    assert md["POD_PORTS"] == "[]"


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"app": "reviews"}, "reviews.default"),
        ({"app.kubernetes.io/name": "rv", "app": "reviews"}, "rv.default"),
        ({"service.istio.io/canonical-name": "c", "app": "reviews"}, "c.default"),
        ({}, "reviews-v1-abc.default"),
    ],
)
def test_node_cluster_from_canonical_labels(labels: dict[str, str], expected: str) -> None:
    assert node_cluster(opts(labels=labels)) == expected


def test_options_are_frozen_against_caller_mutation() -> None:
    labels = {"app": "reviews"}
    o = opts(labels=labels)
    labels["app"] = "changed"
    assert o.labels["app"] == "reviews"


def test_ads_wiring() -> None:
    dyn = render_bootstrap(opts())["dynamic_resources"]
    assert dyn["ads_config"] == {
        "api_type": "GRPC",
        "transport_api_version": "V3",
        "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
        "set_node_on_first_message_only": True,
    }
    for key in ("cds_config", "lds_config"):
        assert dyn[key]["ads"] == {}
        assert dyn[key]["resource_api_version"] == "V3"


def _cluster(b: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        c for c in b["static_resources"]["clusters"] if c["name"] == name
    ]
    assert len(found) == 1, f"expected one cluster {name}"
    return found[0]


def test_xds_cluster_is_static_http2_with_keepalive() -> None:
    c = _cluster(render_bootstrap(opts()), "xds-grpc")
    assert c["type"] == "STATIC"
    assert c["connect_timeout"] == "1s"
    addr = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert addr == {"socket_address": {"address": "198.18.0.1", "port_value": 15010}}
    proto = c["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert "connection_keepalive" in proto["explicit_http_config"]["http2_protocol_options"]


def test_xds_cluster_by_name_uses_dns() -> None:
    c = _cluster(render_bootstrap(opts(xds_host="istiod.istio-system.svc")), "xds-grpc")
    assert c["type"] == "STRICT_DNS"


def test_admin_and_prometheus_with_fixed_admin_port() -> None:
    b = render_bootstrap(opts())
    assert b["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15000}
    assert b["admin"]["access_log"][0]["typed_config"]["path"] == "/dev/null"
    (listener,) = b["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 15090}
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    route = hcm["route_config"]["virtual_hosts"][0]["routes"][0]
    assert route == {
        "match": {"prefix": "/stats/prometheus"},
        "route": {"cluster": "prometheus_stats"},
    }
    prom = _cluster(b, "prometheus_stats")
    addr = prom["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert addr["socket_address"] == {"address": "127.0.0.1", "port_value": 15000}


def test_wildcard_admin_is_scraped_through_loopback() -> None:
    prom = _cluster(render_bootstrap(opts(admin_address="0.0.0.0")), "prometheus_stats")
    addr = prom["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert addr["socket_address"]["address"] == "127.0.0.1"


@pytest.mark.parametrize("override", [{"admin_port": 0}, {"prometheus_port": None}])
def test_no_prometheus_listener_without_fixed_admin(override: dict[str, Any]) -> None:
    b = render_bootstrap(opts(**override))
    assert "listeners" not in b["static_resources"]
    assert [c["name"] for c in b["static_resources"]["clusters"]] == ["xds-grpc"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"ips": ()}, "ip: at least one"),
        ({"ips": ("not-an-ip",)}, "ip: 'not-an-ip' is not an IP"),
        ({"namespace": "a.b"}, "namespace:"),
        ({"pod": "a~b"}, "pod:"),
        ({"xds_port": 0}, "xds-address: port"),
        ({"admin_port": 70000}, "admin-port: port"),
        ({"proxy_type": "gateway"}, "type: must be sidecar or router"),
        ({"pod_ports": (PodPort(9080, "http", "HTTP"),)}, "pod-ports[0].protocol"),
    ],
)
def test_bad_options_name_the_option(override: dict[str, Any], message: str) -> None:
    with pytest.raises(BootstrapError, match=None) as info:
        render_bootstrap(opts(**override))
    assert message in str(info.value)


def test_pod_names_may_contain_dots() -> None:
    assert node_id(opts(pod="web.1")).startswith("sidecar~198.18.0.7~web.1.default~")


SDS = "mizzen/m1/default.reviews-v1-abc/sds"

VALIDATE_CASES: dict[str, Callable[[], BootstrapOptions]] = {
    "sidecar": lambda: opts(),
    "router-ephemeral-admin-dns-xds": lambda: opts(
        proxy_type="router", admin_port=0, xds_host="localhost", pod_ports=()
    ),
    "wildcard-admin-no-limit": lambda: opts(
        admin_address="0.0.0.0", max_downstream_connections=None
    ),
    "router-pinned-dns-resolver": lambda: opts(
        proxy_type="router", admin_port=0, dns_resolver=("127.0.0.1", 1)
    ),
    "sidecar-mtls-ads": lambda: opts(sds_socket=SDS, xds_tls=True, xds_port=15012),
    "sidecar-sds-plaintext-ads": lambda: opts(sds_socket=SDS),
    "router-mtls-ads-by-name": lambda: opts(
        proxy_type="router",
        admin_port=0,
        xds_host="istiod.istio-system.svc",
        xds_port=15012,
        sds_socket=SDS,
        xds_tls=True,
    ),
}


def test_pinned_dns_resolver_has_no_fallback() -> None:
    resolver = render_bootstrap(opts(dns_resolver=("127.0.0.1", 1)))["typed_dns_resolver_config"]
    config = resolver["typed_config"]
    assert config["resolvers"] == [{"socket_address": {"address": "127.0.0.1", "port_value": 1}}]
    assert config["use_resolvers_as_fallback"] is False
    assert "typed_dns_resolver_config" not in render_bootstrap(opts())


@pytest.mark.parametrize("case", sorted(VALIDATE_CASES))
def test_envoy_validates_rendered_bootstrap(case: str, tmp_path: Path) -> None:
    path = tmp_path / "bootstrap.json"
    path.write_text(render_bootstrap_json(VALIDATE_CASES[case]()))
    result = subprocess.run(
        [
            str(resolve_envoy_binary()),
            "--mode",
            "validate",
            "--disable-hot-restart",
            "--log-level",
            "warning",
            "-c",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "OK" in output
    # Deprecations would turn into errors in a later Envoy: keep none.
    assert "deprecated" not in output.lower(), output


def test_control_plane_parses_the_node_back() -> None:
    from mizzen.model.proxy import proxy_from_node

    o = opts(pod="web.1", ips=("198.18.0.7", "198.18.0.8"))
    node = render_bootstrap(o)["node"]
    proxy = proxy_from_node(node["id"], node["metadata"])
    assert (proxy.type, proxy.ip, proxy.name, proxy.namespace) == (
        "sidecar",
        "198.18.0.7",
        "web.1",
        "default",
    )
    assert dict(proxy.labels) == {"app": "reviews", "version": "v1"}
    assert proxy.service_account == "bookinfo-reviews"
    assert proxy.ports == (9080,)


# -- mutual TLS: the SDS cluster and ADS over TLS -----------------------------------------


def test_sds_cluster_is_the_agents_abstract_socket_over_http2() -> None:
    c = _cluster(render_bootstrap(opts(sds_socket=SDS)), "sds-grpc")
    assert c["type"] == "STATIC"
    addr = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    # "@" is Envoy's spelling of an abstract socket: the pod's own namespace.
    assert addr == {"pipe": {"path": f"@{SDS}"}}
    proto = c["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert proto["explicit_http_config"] == {"http2_protocol_options": {}}
    assert "transport_socket" not in c  # the pod-local socket needs no TLS


def test_no_sds_cluster_and_no_tls_without_mesh_identity() -> None:
    b = render_bootstrap(opts())
    assert "sds-grpc" not in [c["name"] for c in b["static_resources"]["clusters"]]
    assert "transport_socket" not in _cluster(b, "xds-grpc")


def test_ads_over_mutual_tls() -> None:
    b = render_bootstrap(opts(sds_socket=SDS, xds_tls=True, xds_port=15012))
    socket = _cluster(b, "xds-grpc")["transport_socket"]
    assert socket["name"] == "envoy.transport_sockets.tls"
    ctx = socket["typed_config"]
    assert ctx["@type"] == (
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
    )
    assert ctx["sni"] == "istiod.istio-system.svc"
    common = ctx["common_tls_context"]
    assert common["alpn_protocols"] == ["h2"]
    # The proxy's own certificate and the mesh root, both from the agent's SDS.
    (cert,) = common["tls_certificate_sds_secret_configs"]
    assert cert["name"] == "default"
    combined = common["combined_validation_context"]
    assert combined["validation_context_sds_secret_config"]["name"] == "ROOTCA"
    for sds in (cert, combined["validation_context_sds_secret_config"]):
        grpc_service = sds["sds_config"]["api_config_source"]["grpc_services"][0]
        assert grpc_service["envoy_grpc"]["cluster_name"] == "sds-grpc"
    # The control plane must prove it is istiod: its DNS SAN is checked.
    assert combined["default_validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "istiod.istio-system.svc"}}
    ]
    # Keys never appear in a bootstrap: only secret names.
    text = json.dumps(b)
    assert "inline_bytes" not in text and "PRIVATE KEY" not in text


def test_xds_tls_without_sds_is_refused() -> None:
    with pytest.raises(BootstrapError, match="xds over TLS needs the SDS socket"):
        render_bootstrap(opts(xds_tls=True))
