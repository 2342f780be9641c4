"""Environment and probes of a pod spec (mizzen.node.spec)."""

from __future__ import annotations

from typing import Any

import pytest

from mizzen.kube.images import PodContext
from mizzen.node.spec import (
    ProbeSpec,
    Sources,
    SpecError,
    container_env,
    field_value,
    named_ports,
    probe_spec,
    referenced_sources,
)
from mizzen.runtime.probes import HttpGetProbe, TcpSocketProbe

POD = PodContext(
    name="reviews-v1-7d9f",
    namespace="shop",
    ip="198.18.12.7",
    uid="5b2c1e7a-0000-4000-8000-000000000001",
    labels={"app": "reviews", "version": "v1"},
    annotations={"sidecar.istio.io/status": "{}"},
    service_account="bookinfo-reviews",
    node_name="mizzen-t",
    host_ip="198.18.12.1",
)

SOURCES: dict[tuple[str, str, str], dict[str, str]] = {
    ("ConfigMap", "shop", "reviews-config"): {"LOG_LEVEL": "debug", "COLOR": "blue"},
    ("Secret", "shop", "reviews-db"): {"DB_USER": "reviews", "DB_PASSWORD": "s3cret"},
    ("ConfigMap", "other", "elsewhere"): {"X": "1"},
}


def env_of(
    container: dict[str, Any], sources: Sources = SOURCES, kubernetes_ip: str = ""
) -> dict[str, str]:
    full = {"name": "reviews", "image": "shop/reviews:1", **container}
    return container_env(full, POD, sources, kubernetes_ip)


# -- envFrom and literal values ---------------------------------------------------------


def test_envfrom_configmap_with_prefix_and_secret() -> None:
    env = env_of(
        {
            "envFrom": [
                {"prefix": "CFG_", "configMapRef": {"name": "reviews-config"}},
                {"secretRef": {"name": "reviews-db"}},
            ]
        }
    )
    assert env["CFG_LOG_LEVEL"] == "debug"
    assert env["CFG_COLOR"] == "blue"
    assert "LOG_LEVEL" not in env
    assert env["DB_USER"] == "reviews"
    assert env["DB_PASSWORD"] == "s3cret"
    assert env["HOSTNAME"] == "reviews-v1-7d9f"


def test_env_overrides_envfrom() -> None:
    env = env_of(
        {
            "envFrom": [{"configMapRef": {"name": "reviews-config"}}],
            "env": [{"name": "COLOR", "value": "red"}],
        }
    )
    assert env["COLOR"] == "red"
    assert env["LOG_LEVEL"] == "debug"


def test_env_values_refer_to_earlier_variables_and_dollar_dollar_escapes() -> None:
    env = env_of(
        {
            "envFrom": [{"configMapRef": {"name": "reviews-config"}}],
            "env": [
                {"name": "A", "value": "alpha"},
                {"name": "B", "value": "$(A)-beta"},
                {"name": "C", "value": "$$(A) costs $$5"},
                {"name": "D", "value": "$(LATER) $(MISSING)"},
                {"name": "LATER", "value": "late"},
                {"name": "E", "value": "level=$(LOG_LEVEL)"},
                {"name": "F", "value": "$(B)/$(HOSTNAME)"},
            ],
        }
    )
    assert env["B"] == "alpha-beta"
    assert env["C"] == "$(A) costs $5"
    # Only earlier variables count; unknown references stay as written.
    assert env["D"] == "$(LATER) $(MISSING)"
    assert env["E"] == "level=debug"
    assert env["F"] == "alpha-beta/reviews-v1-7d9f"


def test_value_absent_is_empty_string() -> None:
    assert env_of({"env": [{"name": "EMPTY"}]})["EMPTY"] == ""


# -- downward API ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, value",
    [
        ("metadata.name", "reviews-v1-7d9f"),
        ("metadata.namespace", "shop"),
        ("metadata.uid", "5b2c1e7a-0000-4000-8000-000000000001"),
        ("metadata.labels['app']", "reviews"),
        ("metadata.labels['missing']", ""),
        ("metadata.annotations['sidecar.istio.io/status']", "{}"),
        ("status.podIP", "198.18.12.7"),
        ("status.hostIP", "198.18.12.1"),
        ("spec.nodeName", "mizzen-t"),
        ("spec.serviceAccountName", "bookinfo-reviews"),
    ],
)
def test_fieldref(path: str, value: str) -> None:
    env = env_of({"env": [{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": path}}}]})
    assert env["V"] == value


def test_fieldref_all_labels() -> None:
    assert field_value("metadata.labels", POD) == 'app="reviews"\nversion="v1"'


def test_fieldref_values_are_not_expanded() -> None:
    pod = PodContext(name="p", namespace="ns", labels={"x": "$(A)"})
    env = container_env(
        {
            "name": "c",
            "env": [
                {"name": "A", "value": "a"},
                {"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['x']"}}},
            ],
        },
        pod,
        {},
    )
    assert env["X"] == "$(A)"


def test_unsupported_fieldref_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match=r"metadata\.generateName"):
        field_value("metadata.generateName", POD)


def test_resource_field_ref_is_zero() -> None:
    env = env_of(
        {
            "env": [
                {
                    "name": "CPU",
                    "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}},
                }
            ]
        }
    )
    assert env["CPU"] == "0"


# -- ConfigMap and Secret keys ----------------------------------------------------------------


def test_configmap_key_ref_and_secret_key_ref() -> None:
    env = env_of(
        {
            "env": [
                {
                    "name": "LEVEL",
                    "valueFrom": {
                        "configMapKeyRef": {"name": "reviews-config", "key": "LOG_LEVEL"}
                    },
                },
                {
                    "name": "PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": "reviews-db", "key": "DB_PASSWORD"}},
                },
            ]
        }
    )
    assert env["LEVEL"] == "debug"
    assert env["PASSWORD"] == "s3cret"


def test_sources_are_looked_up_in_the_pods_namespace() -> None:
    with pytest.raises(SpecError, match="elsewhere"):
        env_of({"envFrom": [{"configMapRef": {"name": "elsewhere"}}]})


def test_missing_configmap_in_envfrom_is_a_spec_error_naming_it() -> None:
    with pytest.raises(SpecError, match="configmap 'reviews-flags' not found"):
        env_of({"envFrom": [{"configMapRef": {"name": "reviews-flags"}}]})


def test_missing_secret_key_ref_is_a_spec_error_naming_it() -> None:
    with pytest.raises(SpecError, match="secret 'reviews-tls' not found"):
        env_of(
            {
                "env": [
                    {
                        "name": "K",
                        "valueFrom": {"secretKeyRef": {"name": "reviews-tls", "key": "tls.key"}},
                    }
                ]
            }
        )


def test_missing_key_in_existing_configmap_is_a_spec_error_naming_both() -> None:
    with pytest.raises(SpecError, match="configmap 'reviews-config' has no key 'NOPE'"):
        env_of(
            {
                "env": [
                    {
                        "name": "K",
                        "valueFrom": {"configMapKeyRef": {"name": "reviews-config", "key": "NOPE"}},
                    }
                ]
            }
        )


def test_optional_missing_envfrom_sources_add_nothing() -> None:
    env = env_of(
        {
            "envFrom": [
                {"configMapRef": {"name": "reviews-flags", "optional": True}},
                {"secretRef": {"name": "reviews-tls", "optional": True}},
            ]
        }
    )
    assert env == {"HOSTNAME": "reviews-v1-7d9f"}


def test_optional_key_refs_do_not_fail() -> None:
    env = env_of(
        {
            "env": [
                {
                    "name": "NO_MAP",
                    "valueFrom": {
                        "configMapKeyRef": {"name": "nope", "key": "k", "optional": True}
                    },
                },
                {
                    "name": "NO_KEY",
                    "valueFrom": {
                        "secretKeyRef": {"name": "reviews-db", "key": "nope", "optional": True}
                    },
                },
            ]
        }
    )
    # Kubernetes leaves these unset; an empty value is the closest a caller
    # could mistake for it. Either way there is no error and no value.
    assert env.get("NO_MAP", "") == ""
    assert env.get("NO_KEY", "") == ""


def test_optional_missing_key_ref_leaves_the_variable_unset_like_kubelet() -> None:
    env = env_of(
        {
            "env": [
                {
                    "name": "NO_MAP",
                    "valueFrom": {
                        "configMapKeyRef": {"name": "nope", "key": "k", "optional": True}
                    },
                },
                {
                    "name": "NO_KEY",
                    "valueFrom": {
                        "secretKeyRef": {"name": "reviews-db", "key": "nope", "optional": True}
                    },
                },
            ]
        }
    )
    assert "NO_MAP" not in env
    assert "NO_KEY" not in env


def test_optional_missing_key_ref_keeps_the_envfrom_value() -> None:
    env = env_of(
        {
            "envFrom": [{"configMapRef": {"name": "reviews-config"}}],
            "env": [
                {
                    "name": "COLOR",
                    "valueFrom": {
                        "configMapKeyRef": {"name": "overrides", "key": "COLOR", "optional": True}
                    },
                }
            ],
        }
    )
    assert env["COLOR"] == "blue"


def test_unsupported_value_from_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="'X'"):
        env_of({"env": [{"name": "X", "valueFrom": {"fileKeyRef": {"path": "a"}}}]})


# -- KUBERNETES_SERVICE_* -------------------------------------------------------------------


def test_kubernetes_service_variables_when_kubernetes_ip_given() -> None:
    env = env_of({}, kubernetes_ip="198.19.12.1")
    assert env["KUBERNETES_SERVICE_HOST"] == "198.19.12.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"


def test_no_kubernetes_service_variables_without_kubernetes_ip() -> None:
    env = env_of({})
    assert not any(k.startswith("KUBERNETES_") for k in env)


def test_env_can_refer_to_kubernetes_service_variables() -> None:
    env = env_of(
        {"env": [{"name": "API", "value": "https://$(KUBERNETES_SERVICE_HOST):443"}]},
        kubernetes_ip="198.19.12.1",
    )
    assert env["API"] == "https://198.19.12.1:443"


# -- referenced_sources -------------------------------------------------------------------------


def test_referenced_sources_covers_init_and_app_containers_env_and_envfrom() -> None:
    pod = {
        "metadata": {"name": "reviews-v1-7d9f", "namespace": "shop"},
        "spec": {
            "initContainers": [
                {
                    "name": "migrate",
                    "envFrom": [{"secretRef": {"name": "db-admin"}}],
                    "env": [
                        {
                            "name": "SCHEMA",
                            "valueFrom": {"configMapKeyRef": {"name": "schema", "key": "v"}},
                        }
                    ],
                }
            ],
            "containers": [
                {
                    "name": "reviews",
                    "envFrom": [
                        {"configMapRef": {"name": "reviews-config"}},
                        {"prefix": "DB_", "secretRef": {"name": "reviews-db", "optional": True}},
                    ],
                    "env": [
                        {"name": "PLAIN", "value": "x"},
                        {
                            "name": "TOKEN",
                            "valueFrom": {"secretKeyRef": {"name": "api-token", "key": "t"}},
                        },
                        {
                            "name": "NAME",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                        },
                    ],
                },
                {"name": "istio-proxy", "image": "istio/proxyv2"},
            ],
        },
    }
    assert referenced_sources(pod) == {
        ("Secret", "db-admin"),
        ("ConfigMap", "schema"),
        ("ConfigMap", "reviews-config"),
        ("Secret", "reviews-db"),
        ("Secret", "api-token"),
    }


def test_referenced_sources_of_a_pod_without_env() -> None:
    assert referenced_sources({"spec": {"containers": [{"name": "c"}]}}) == set()
    assert referenced_sources({}) == set()


# -- probes ---------------------------------------------------------------------------------------

POD_WITH_PORTS = {
    "spec": {
        "containers": [
            {
                "name": "reviews",
                "ports": [
                    {"name": "http", "containerPort": 9080},
                    {"containerPort": 9443},
                    {"name": "grpc", "containerPort": "9090"},
                ],
            },
            {"name": "istio-proxy", "ports": [{"name": "http-envoy-prom", "containerPort": 15090}]},
        ]
    }
}
NAMED = named_ports(POD_WITH_PORTS["spec"]["containers"][0])


def test_named_ports_collects_named_container_ports() -> None:
    assert NAMED == {"http": 9080, "grpc": 9090}


def test_no_probe_is_none() -> None:
    assert probe_spec(None, NAMED) is None
    assert probe_spec({}, NAMED) is None


def test_http_get_with_a_named_port_and_defaults() -> None:
    spec = probe_spec({"httpGet": {"path": "/health", "port": "http"}}, NAMED)
    assert spec == ProbeSpec(check=HttpGetProbe(9080, "/health", "HTTP", {}))
    assert (spec.initial_delay, spec.period, spec.timeout) == (0, 10, 1)
    assert (spec.failure_threshold, spec.success_threshold) == (3, 1)


def test_http_get_with_scheme_headers_and_timings() -> None:
    spec = probe_spec(
        {
            "httpGet": {
                "port": 8443,
                "scheme": "HTTPS",
                "httpHeaders": [{"name": "X-Probe", "value": "kubelet"}],
            },
            "initialDelaySeconds": 5,
            "periodSeconds": 2,
            "timeoutSeconds": 3,
            "failureThreshold": 7,
            "successThreshold": 2,
        },
        NAMED,
    )
    assert spec == ProbeSpec(
        check=HttpGetProbe(8443, "/", "HTTPS", {"X-Probe": "kubelet"}),
        initial_delay=5,
        period=2,
        timeout=3,
        failure_threshold=7,
        success_threshold=2,
    )


def test_http_get_with_a_numeric_string_port() -> None:
    spec = probe_spec({"httpGet": {"port": "9080"}}, {})
    assert spec is not None
    assert spec.check == HttpGetProbe(9080)


def test_tcp_socket_probe_with_number_and_name() -> None:
    assert probe_spec({"tcpSocket": {"port": 9080}}, NAMED) == ProbeSpec(TcpSocketProbe(9080))
    assert probe_spec({"tcpSocket": {"port": "grpc"}}, NAMED) == ProbeSpec(TcpSocketProbe(9090))


def test_exec_probe_is_its_command() -> None:
    spec = probe_spec({"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 5}, NAMED)
    assert spec == ProbeSpec(check=("cat", "/tmp/healthy"), period=5)


def test_unknown_named_port_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="'metrics'"):
        probe_spec({"httpGet": {"path": "/", "port": "metrics"}}, NAMED)
    with pytest.raises(SpecError, match="'metrics'"):
        probe_spec({"tcpSocket": {"port": "metrics"}}, NAMED)


def test_probe_without_a_handler_is_a_spec_error() -> None:
    with pytest.raises(SpecError):
        probe_spec({"grpc": {"port": 9090}}, NAMED)


def test_named_probe_port_resolves_in_the_probes_own_container() -> None:
    pod: dict[str, Any] = {
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
                },
                {"name": "admin", "ports": [{"name": "http", "containerPort": 9901}]},
            ]
        }
    }
    app = pod["spec"]["containers"][0]
    spec = probe_spec(app["readinessProbe"], named_ports(app))
    assert spec is not None
    assert spec.check == HttpGetProbe(8080, "/ready")
