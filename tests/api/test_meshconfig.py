"""MeshConfig: defaults, both YAML habits, precise errors, the pod's SECRET_TTL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mizzen.api.meshconfig import (
    DEFAULT_SECRET_TTL_S,
    PROXY_CONFIG_ANNOTATION,
    MeshConfig,
    MeshConfigError,
    load_mesh_config,
    parse_mesh_config,
    pod_secret_ttl,
    secret_ttl_seconds,
)


def test_defaults_are_istios() -> None:
    for mesh in (MeshConfig(), parse_mesh_config(None), parse_mesh_config({})):
        assert mesh.trust_domain == "cluster.local"
        assert mesh.root_namespace == "istio-system"
        assert mesh.enable_auto_mtls is True
        assert mesh.protocol_detection_timeout == 0.0
        assert mesh.h2_upgrade_policy == "DO_NOT_UPGRADE"
        assert dict(mesh.proxy_metadata) == {}
        assert mesh.ignored == ()


BARE = """\
trustDomain: example.org
rootNamespace: mesh-root
enableAutoMtls: false
protocolDetectionTimeout: 250ms
h2UpgradePolicy: UPGRADE
defaultConfig:
  proxyMetadata:
    SECRET_TTL: 2m
    OTHER: 7
accessLogFile: /dev/stdout
outboundTrafficPolicy:
  mode: REGISTRY_ONLY
"""


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())


@pytest.mark.parametrize("form", ["bare", "meshConfig"])
def test_bare_and_wrapped_forms_read_the_same(form: str, tmp_path: Path) -> None:
    text = BARE if form == "bare" else "meshConfig:\n" + _indent(BARE)
    path = tmp_path / "mesh.yaml"
    path.write_text(text)
    mesh = load_mesh_config(str(path))
    assert mesh.trust_domain == "example.org"
    assert mesh.root_namespace == "mesh-root"
    assert mesh.enable_auto_mtls is False
    assert mesh.protocol_detection_timeout == 0.25
    assert mesh.h2_upgrade_policy == "UPGRADE"
    assert dict(mesh.proxy_metadata) == {"SECRET_TTL": "2m", "OTHER": "7"}
    # Read but not acted on: listed, sorted, never silently dropped.
    assert mesh.ignored == ("accessLogFile", "outboundTrafficPolicy")


@pytest.mark.parametrize(
    ("raw", "field", "value"),
    [
        ({"trustDomain": "Cluster.Local"}, "trustDomain", "'Cluster.Local'"),
        ({"trustDomain": "a/b"}, "trustDomain", "'a/b'"),
        ({"trustDomain": ""}, "trustDomain", "''"),
        ({"trustDomain": 5}, "trustDomain", "5"),
        # A trailing newline (a YAML block scalar) is not a valid name either.
        ({"trustDomain": "cluster.local\n"}, "trustDomain", "'cluster.local\\n'"),
        ({"rootNamespace": "Istio_System"}, "rootNamespace", "'Istio_System'"),
        ({"rootNamespace": "istio-system\n"}, "rootNamespace", "'istio-system\\n'"),
        ({"rootNamespace": "a" * 64}, "rootNamespace", "'" + "a" * 64 + "'"),
        ({"rootNamespace": "-x"}, "rootNamespace", "'-x'"),
        ({"enableAutoMtls": "yes please"}, "enableAutoMtls", "'yes please'"),
        ({"enableAutoMtls": 1}, "enableAutoMtls", "1"),
        ({"protocolDetectionTimeout": "soon"}, "protocolDetectionTimeout", "'soon'"),
        ({"protocolDetectionTimeout": "-1s"}, "protocolDetectionTimeout", "'-1s'"),
        ({"protocolDetectionTimeout": 5}, "protocolDetectionTimeout", "5"),
        ({"h2UpgradePolicy": "upgrade"}, "h2UpgradePolicy", "'upgrade'"),
    ],
)
def test_bad_fields_name_source_field_and_value(
    raw: dict[str, Any], field: str, value: str
) -> None:
    with pytest.raises(MeshConfigError) as info:
        parse_mesh_config(raw, "mesh.yaml")
    message = str(info.value)
    assert message.startswith(f"mesh.yaml: {field}: "), message
    assert value in message


def test_longest_namespace_name_is_accepted() -> None:
    assert parse_mesh_config({"rootNamespace": "a" * 63}).root_namespace == "a" * 63


@pytest.mark.parametrize(
    ("default_config", "field"),
    [
        ("nope", "defaultConfig"),
        ({"proxyMetadata": ["SECRET_TTL=1h"]}, "defaultConfig.proxyMetadata"),
        ({"proxyMetadata": {"SECRET_TTL": True}}, "defaultConfig.proxyMetadata.SECRET_TTL"),
        ({"proxyMetadata": {"X": {"a": 1}}}, "defaultConfig.proxyMetadata.X"),
        ({"proxyMetadata": {"SECRET_TTL": "soon"}}, "defaultConfig.proxyMetadata.SECRET_TTL"),
        ({"proxyMetadata": {"SECRET_TTL": "0s"}}, "defaultConfig.proxyMetadata.SECRET_TTL"),
        ({"proxyMetadata": {"SECRET_TTL": "-1h"}}, "defaultConfig.proxyMetadata.SECRET_TTL"),
    ],
)
def test_bad_default_config_names_the_field(default_config: Any, field: str) -> None:
    with pytest.raises(MeshConfigError) as info:
        parse_mesh_config({"defaultConfig": default_config}, "mesh.yaml")
    assert str(info.value).startswith(f"mesh.yaml: {field}: "), str(info.value)


def test_secret_ttl_message_shows_the_value() -> None:
    with pytest.raises(MeshConfigError, match=r"positive duration such as 24h or 2m, not 'soon'"):
        parse_mesh_config({"defaultConfig": {"proxyMetadata": {"SECRET_TTL": "soon"}}})


@pytest.mark.parametrize("raw", [["trustDomain: x"], "trustDomain", 3])
def test_not_a_mapping(raw: Any) -> None:
    with pytest.raises(MeshConfigError, match=r"^mesh.yaml: expected a MeshConfig mapping"):
        parse_mesh_config(raw, "mesh.yaml")


def test_unreadable_and_invalid_files_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(MeshConfigError, match=rf"^{missing}: cannot read the mesh config"):
        load_mesh_config(str(missing))
    broken = tmp_path / "broken.yaml"
    broken.write_text("trustDomain: [unclosed\n")
    with pytest.raises(MeshConfigError, match=rf"^{broken}: not valid YAML"):
        load_mesh_config(str(broken))
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_mesh_config(str(empty)) == MeshConfig()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("24h", 86400.0), ("2m", 120.0), ("1h30m", 5400.0), ("90s", 90.0), ("1.5h", 5400.0)],
)
def test_secret_ttl_seconds(text: str, seconds: float) -> None:
    assert secret_ttl_seconds(text) == seconds


@pytest.mark.parametrize("text", ["0", "0s", "-5m", "5", "five minutes", ""])
def test_secret_ttl_must_be_a_positive_duration(text: str) -> None:
    with pytest.raises(MeshConfigError, match=r"^SECRET_TTL: must be a positive duration"):
        secret_ttl_seconds(text)


# -- pod_secret_ttl: annotation over mesh default over 24 h ---------------------------


def _mesh(ttl: str | None) -> MeshConfig:
    if ttl is None:
        return parse_mesh_config({})
    return parse_mesh_config({"defaultConfig": {"proxyMetadata": {"SECRET_TTL": ttl}}})


def _annotated(config: str) -> dict[str, str]:
    return {PROXY_CONFIG_ANNOTATION: config}


def test_pod_secret_ttl_defaults_to_24_hours() -> None:
    assert pod_secret_ttl({}, MeshConfig()) == DEFAULT_SECRET_TTL_S == 24 * 3600.0


def test_pod_secret_ttl_mesh_default() -> None:
    assert pod_secret_ttl({}, _mesh("2h")) == 7200.0


def test_pod_secret_ttl_annotation_wins_over_mesh_default() -> None:
    pod = _annotated("proxyMetadata:\n  SECRET_TTL: 10m\n")
    assert pod_secret_ttl(pod, _mesh("2h")) == 600.0
    assert pod_secret_ttl(pod, MeshConfig()) == 600.0
    # JSON is YAML too, as Istio's users write it either way.
    assert pod_secret_ttl(_annotated('{"proxyMetadata": {"SECRET_TTL": "3m"}}'), _mesh("2h")) == 180


@pytest.mark.parametrize(
    "config",
    [
        "",
        "proxyMetadata:\n  OTHER: x\n",
        "concurrency: 2\n",
        "proxyMetadata: {}\n",
        "null",
    ],
)
def test_pod_annotation_without_secret_ttl_falls_back(config: str) -> None:
    assert pod_secret_ttl(_annotated(config), _mesh("2h")) == 7200.0
    assert pod_secret_ttl(_annotated(config), MeshConfig()) == DEFAULT_SECRET_TTL_S


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            "proxyMetadata:\n  SECRET_TTL: never\n",
            "annotation proxy.istio.io/config: proxyMetadata.SECRET_TTL: must be a positive "
            "duration such as 24h or 2m, not 'never'",
        ),
        (
            "proxyMetadata: [SECRET_TTL]\n",
            "annotation proxy.istio.io/config: proxyMetadata: must be a map of environment "
            "variables",
        ),
        (
            "- proxyMetadata\n",
            "annotation proxy.istio.io/config: must be a ProxyConfig mapping",
        ),
        ("proxyMetadata: {SECRET_TTL: [\n", "annotation proxy.istio.io/config: not valid YAML"),
    ],
)
def test_bad_annotation_is_named(config: str, expected: str) -> None:
    with pytest.raises(MeshConfigError) as info:
        pod_secret_ttl(_annotated(config), MeshConfig())
    assert str(info.value).startswith(expected), str(info.value)


PROVIDERS = """\
extensionProviders:
- name: http-authz
  envoyExtAuthzHttp:
    service: ext-authz.foo.svc.cluster.local
    port: 8000
    timeout: 2s
    pathPrefix: /check
    failOpen: true
    statusOnError: "503"
    includeRequestHeadersInCheck: [x-ext-authz]
    includeAdditionalHeadersInCheck: {x-from: mesh}
    headersToUpstreamOnAllow: [x-user]
    includeRequestBodyInCheck: {maxRequestBytes: 1024, allowPartialMessage: true}
- name: grpc-authz
  envoyExtAuthzGrpc:
    service: foo/ext-authz.foo.svc.cluster.local
    port: 9000
- name: zipkin
  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
"""


def test_extension_providers_declare_external_authorizers() -> None:
    import yaml

    mesh = parse_mesh_config(yaml.safe_load(PROVIDERS))
    http, grpc = mesh.ext_authz["http-authz"], mesh.ext_authz["grpc-authz"]
    assert (http.kind, http.port, http.timeout, http.path_prefix) == (
        "envoyExtAuthzHttp",
        8000,
        2.0,
        "/check",
    )
    assert http.fail_open and http.status_on_error == 503
    assert http.include_request_headers == ("x-ext-authz",)
    assert dict(http.include_additional_headers) == {"x-from": "mesh"}
    assert (http.max_request_bytes, http.allow_partial_message) == (1024, True)
    assert (grpc.kind, grpc.timeout, grpc.status_on_error) == ("envoyExtAuthzGrpc", 600.0, 403)
    assert mesh.other_providers == ("zipkin",)
    assert mesh.ignored == ()


@pytest.mark.parametrize(
    ("provider", "field"),
    [
        ({"envoyExtAuthzHttp": {"service": "a", "port": 8000}}, "extensionProviders[0].name"),
        ({"name": "p", "envoyExtAuthzHttp": {"port": 80}}, "envoyExtAuthzHttp.service"),
        ({"name": "p", "envoyExtAuthzHttp": {"service": "a", "port": 0}}, "envoyExtAuthzHttp.port"),
        (
            {"name": "p", "envoyExtAuthzGrpc": {"service": "a", "port": 1, "timeout": "soon"}},
            "envoyExtAuthzGrpc.timeout",
        ),
        (
            {"name": "p", "envoyExtAuthzHttp": {"service": "a", "port": 1, "statusOnError": "x"}},
            "statusOnError",
        ),
        (
            {
                "name": "p",
                "envoyExtAuthzHttp": {
                    "service": "a",
                    "port": 1,
                    "includeRequestHeadersInCheck": ["ok", ""],
                },
            },
            "includeRequestHeadersInCheck[1]",
        ),
        (
            {
                "name": "p",
                "envoyExtAuthzHttp": {
                    "service": "a",
                    "port": 1,
                    "includeRequestBodyInCheck": {"maxRequestBytes": -1},
                },
            },
            "maxRequestBytes",
        ),
        ({"name": "p"}, "extensionProviders[0]: must set exactly one provider kind"),
    ],
)
def test_bad_extension_providers_name_the_field(provider: dict[str, Any], field: str) -> None:
    with pytest.raises(MeshConfigError) as caught:
        parse_mesh_config({"extensionProviders": [provider]}, "mesh.yaml")
    assert str(caught.value).startswith("mesh.yaml: ") and field in str(caught.value)


def test_duplicate_provider_names_are_refused() -> None:
    twice = [{"name": "p", "zipkin": {}}, {"name": "p", "zipkin": {}}]
    with pytest.raises(MeshConfigError, match="duplicate provider name 'p'"):
        parse_mesh_config({"extensionProviders": twice})
