"""Images to local commands (mizzen.kube.images), for the Mizzen node."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mizzen.agent.appprobes import parse_probers
from mizzen.capture.rules import CaptureConfig, render_commands
from mizzen.cli.agent import agent
from mizzen.cli.capture import capture
from mizzen.kube.images import (
    ImageError,
    PodContext,
    expand,
    load_image_map,
    local_argv,
)
from mizzen.kube.inject import InjectOptions, inject_pod
from mizzen.node.spec import container_env

POD = PodContext(
    name="reviews-v1-abc",
    namespace="shop",
    ip="198.18.0.7",
    labels={"app": "reviews", "version": "v1"},
    annotations={"note": "x"},
    service_account="bookinfo-reviews",
    node_name="node-1",
    netns="mz-k.shop.reviews-v1-abc",
)


def run_argv(container: dict[str, Any], pod: PodContext, image_map: Any) -> list[str]:
    """local_argv with the env the node resolves for the container."""
    return local_argv(container, pod, image_map, container_env(container, pod, {}))


# -- Kubernetes $(VAR) expansion -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "alpha"),
        ("x$(A)y$(B)z", "xalphaybetaz"),
        ("$(MISSING)", "$(MISSING)"),
        ("$$(A)", "$(A)"),  # escaped: literal
        ("$$$(A)", "$alpha"),
        ("$$", "$"),
        ("a$", "a$"),  # trailing operator stays
        ("$A", "$A"),  # not a reference
        ("$(A", "$(A"),  # unclosed reference
        ("$()", "$()"),
        ("$(A)$(A)", "alphaalpha"),
        ("$(A$(B))", "$(A$(B))"),
        ("", ""),
    ],
)
def test_expand(text: str, expected: str) -> None:
    assert expand(text, {"A": "alpha", "B": "beta"}) == expected


def test_env_expands_only_earlier_variables_and_resolves_field_refs() -> None:
    container = {
        "env": [
            {"name": "LATER_REF", "value": "$(B)"},  # B is defined after: stays
            {"name": "B", "value": "b"},
            {"name": "AB", "value": "a-$(B)-$$(B)"},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {
                "name": "SECRET",
                "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": True}},
            },
            {"name": "EMPTY"},
        ]
    }
    assert container_env(container, POD, {}) == {
        "HOSTNAME": "reviews-v1-abc",
        "LATER_REF": "$(B)",
        "B": "b",
        "AB": "a-b-$(B)",
        "NAME": "reviews-v1-abc",
        "IP": "198.18.0.7",
        "APP": "reviews",
        "EMPTY": "",
    }


# -- explicit commands and the user's image map ----------------------------------------


def test_command_and_args_run_as_written_after_expansion() -> None:
    container = {
        "name": "app",
        "image": "docker.io/istio/proxyv2:1.24.0",  # a command wins even over built-ins
        "command": ["python3", "server.py"],
        "args": ["--port", "$(PORT)", "--ns", "$(POD_NAMESPACE)"],
        "env": [
            {"name": "PORT", "value": "9080"},
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
        ],
    }
    assert run_argv(container, POD, {}) == [
        *("python3", "server.py", "--port", "9080", "--ns", "shop"),
    ]


IMAGE_MAP = """\
# image: entrypoint argv
docker.io/istio/examples-bookinfo-reviews-v1:1.20.3: [python3, /srv/reviews.py]
docker.io/istio/examples-bookinfo-*: [python3, /srv/generic.py]
docker.io/istio/examples-*: [/bin/false]
"""


def test_image_map_exact_then_longest_prefix_with_args_appended() -> None:
    image_map = load_image_map(IMAGE_MAP)
    reviews = {"name": "r", "image": "docker.io/istio/examples-bookinfo-reviews-v1:1.20.3"}
    assert run_argv(reviews, POD, image_map) == ["python3", "/srv/reviews.py"]
    ratings = {
        "name": "r",
        "image": "docker.io/istio/examples-bookinfo-ratings-v1:1.20.3",
        "args": ["--port", "9080"],
    }
    assert run_argv(ratings, POD, image_map) == ["python3", "/srv/generic.py", "--port", "9080"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[a, b]", "must be a mapping"),
        ("img: python3", "img: must be a non-empty list"),
        ("img: []", "img: must be a non-empty list"),
        ("img: [a, {b: c}]", "img: must be a non-empty list"),
        ("img: [a\n", "not valid YAML"),
    ],
)
def test_bad_image_map(text: str, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        load_image_map(text, "map.yaml")


def test_empty_image_map() -> None:
    assert load_image_map("") == {} == load_image_map("# nothing\n")


def test_unknown_image_names_pod_container_image_and_the_fix() -> None:
    container = {"name": "details", "image": "docker.io/istio/examples-bookinfo-details-v1:1.20.3"}
    with pytest.raises(ImageError) as info:
        run_argv(container, POD, {})
    message = str(info.value)
    assert "pod shop/reviews-v1-abc" in message
    assert "container details" in message
    assert "docker.io/istio/examples-bookinfo-details-v1:1.20.3" in message
    assert "image map" in message and "`command`" in message


# -- Mizzen's own images ------------------------------------------------------------


def injected_pod(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    pod = {
        "metadata": {"name": "reviews-v1-abc", "namespace": "shop", "annotations": annotations},
        "spec": {
            "containers": [
                {
                    "name": "reviews",
                    "image": "reviews:1",
                    "ports": [{"containerPort": 9080, "name": "http"}],
                    "readinessProbe": {"httpGet": {"path": "/health", "port": 9080}},
                }
            ]
        },
    }
    if annotations is None:
        del pod["metadata"]["annotations"]
    return inject_pod(pod, {"istio-injection": "enabled"}, InjectOptions())


def named(pod: dict[str, Any], name: str) -> dict[str, Any]:
    spec = pod["spec"]
    return next(c for c in spec["containers"] + spec["initContainers"] if c["name"] == name)


AKKA = {
    "traffic.sidecar.istio.io/includeInboundPorts": "8080",
    "traffic.sidecar.istio.io/excludeOutboundPorts": "2552,8558",
}


def test_istio_init_becomes_mizzen_capture_with_the_same_rules() -> None:
    init = named(injected_pod(AKKA), "istio-init")
    argv = run_argv(init, POD, {})
    assert argv[:6] == ["mizzen", "capture", "--netns", POD.netns, "--istio-iptables", "--"]
    assert argv[6:] == init["args"][1:]
    # The CLI accepts that argv and prints the rules the annotations give.
    result = CliRunner().invoke(capture, ["--dry-run", *argv[4:]])
    assert result.exit_code == 0, result.output
    expected = render_commands(CaptureConfig.from_annotations(AKKA))
    assert result.output.splitlines() == expected


def test_istio_init_needs_the_netns() -> None:
    init = named(injected_pod(), "istio-init")
    with pytest.raises(ImageError, match="network namespace"):
        run_argv(init, PodContext(name="p", namespace="shop"), {})


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_istio_proxy_becomes_mizzen_agent_with_options_from_its_env() -> None:
    proxy = named(injected_pod(), "istio-proxy")
    pod = dataclasses.replace(POD, agent_args=("--mesh", "k"))
    argv = run_argv(proxy, pod, {})
    assert argv[:2] == ["mizzen", "agent"]
    assert option(argv, "--type") == "sidecar"
    assert option(argv, "--xds-address") == "istiod.istio-system.svc:15012"
    assert option(argv, "--pod") == "reviews-v1-abc"
    assert option(argv, "--namespace") == "shop"
    assert option(argv, "--ip") == "198.18.0.7"
    assert option(argv, "--service-account") == "bookinfo-reviews"
    assert json.loads(option(argv, "--labels") or "") == dict(POD.labels)
    assert json.loads(option(argv, "--annotations") or "") == dict(POD.annotations)
    assert json.loads(option(argv, "--pod-ports") or "") == [
        {"name": "http", "containerPort": 9080, "protocol": "TCP"}
    ]
    assert option(argv, "--trust-domain") == "cluster.local"
    assert option(argv, "--envoy-log-level") == "warning"
    assert "/app-health/reviews/readyz" in parse_probers(option(argv, "--app-probes") or "")
    assert "--ca-address" not in argv  # the same as the discovery address
    assert "--ca-root" not in argv  # the node gave no volume paths
    assert argv[-2:] == ["--mesh", "k"]
    # `mizzen agent` parses every option it is given.
    result = CliRunner().invoke(agent, [*argv[2:], "--help"])
    assert result.exit_code == 0, result.output


def test_pod_volumes_give_identity_files_and_work_directory() -> None:
    proxy = named(injected_pod(), "istio-proxy")
    volumes = {
        "istiod-ca-cert": "/run/k/ca/",
        "istio-token": "/run/k/token",
        "istio-envoy": "/run/k/envoy",
    }
    pod = dataclasses.replace(POD, volume_paths=volumes)
    argv = run_argv(proxy, pod, {})
    assert option(argv, "--ca-root") == "/run/k/ca/root-cert.pem"
    assert option(argv, "--token-file") == "/run/k/token/istio-token"
    assert option(argv, "--workdir") == "/run/k/envoy"


def test_proxy_config_discovery_address_wins_over_ca_addr() -> None:
    config = "discoveryAddress: mizzen-cp.mizzen-system.svc:15012\n"
    proxy = named(injected_pod({"proxy.istio.io/config": config}), "istio-proxy")
    argv = run_argv(proxy, POD, {})
    assert option(argv, "--xds-address") == "mizzen-cp.mizzen-system.svc:15012"
    assert option(argv, "--ca-address") == "istiod.istio-system.svc:15012"


def test_gateway_and_discovery_images() -> None:
    gateway = {
        "name": "istio-proxy",
        "image": "gcr.io/istio-release/proxyv2:1.24.0@sha256:abc",
        "args": ["proxy", "router", "--domain", "$(POD_NAMESPACE).svc.cluster.local"],
        "env": [{"name": "CA_ADDR", "value": "istiod.istio-system.svc:15012"}],
    }
    argv = run_argv(gateway, POD, {})
    assert option(argv, "--type") == "router"
    assert option(argv, "--pod") == POD.name  # no env: from the pod itself
    pilot = {
        "name": "discovery",
        "image": "docker.io/istio/pilot:1.24.0",
        "args": ["discovery", "--monitoringAddr=:15014", "--domain", "cluster.local"],
    }
    assert run_argv(pilot, POD, {}) == [
        *("mizzen", "discovery", "--monitoringAddr=:15014", "--domain", "cluster.local"),
    ]


def test_proxyv2_with_other_args_is_not_builtin() -> None:
    odd = {"name": "x", "image": "docker.io/istio/proxyv2:1.24.0", "args": ["version"]}
    with pytest.raises(ImageError, match="no image map"):
        run_argv(odd, POD, {})
    assert run_argv(odd, POD, {"docker.io/istio/proxyv2:*": ["/bin/echo"]}) == [
        "/bin/echo",
        "version",
    ]


def test_proxy_without_any_discovery_address_is_an_error() -> None:
    proxy = {"name": "istio-proxy", "image": "istio/proxyv2:1", "args": ["proxy", "sidecar"]}
    with pytest.raises(ImageError, match="no discovery address"):
        run_argv(proxy, POD, {})


def test_cluster_up_refuses_a_malformed_image_map(tmp_path: Path) -> None:
    from mizzen.cli.cluster import up

    bad = tmp_path / "images.yaml"
    bad.write_text("docker.io/library/nginx:1.27: /usr/sbin/nginx\n")
    result = CliRunner().invoke(up, ["--name", "never-started", "--image-map", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}: docker.io/library/nginx:1.27: must be a non-empty list" in result.output
