"""Istio's MeshConfig: the mesh-wide settings an operator gives istiod.

Istio reads it from the ``mesh`` key of the ``istio`` ConfigMap in
``istio-system`` (or ``meshConfig`` in an IstioOperator/Helm values file).
Mizzen reads the same YAML from a file (``mizzen up --mesh-config FILE``);
either the bare MeshConfig or a document with a top-level ``meshConfig``
key is accepted, so both habits work unchanged.

Only the fields Mizzen acts on are modelled; any other MeshConfig field is
reported back as ignored rather than silently dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from mizzen.api.validate_crd import parse_duration

DEFAULT_TRUST_DOMAIN = "cluster.local"
DEFAULT_ROOT_NAMESPACE = "istio-system"
# Istio's agent asks for 24 h certificates unless SECRET_TTL says otherwise.
DEFAULT_SECRET_TTL_S = 24 * 3600.0
SECRET_TTL = "SECRET_TTL"
PROXY_CONFIG_ANNOTATION = "proxy.istio.io/config"

_KNOWN = frozenset(
    {
        "trustDomain",
        "rootNamespace",
        "enableAutoMtls",
        "defaultConfig",
        "protocolDetectionTimeout",
        "h2UpgradePolicy",
        "extensionProviders",
    }
)
# extensionProviders kinds Mizzen acts on; the others (tracing, logging,
# metrics) are kept by name so that a policy naming one gets a clear error.
EXT_AUTHZ_KINDS = ("envoyExtAuthzHttp", "envoyExtAuthzGrpc")
H2_UPGRADE_POLICIES = ("DO_NOT_UPGRADE", "UPGRADE")
# Matched with fullmatch: ``$`` would also accept a trailing newline.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]+")


@dataclass(frozen=True)
class ExtAuthzProvider:
    """An ``envoyExtAuthzHttp``/``envoyExtAuthzGrpc`` extension provider: the
    external authorizer a CUSTOM AuthorizationPolicy names."""

    name: str
    kind: str  # one of EXT_AUTHZ_KINDS
    service: str  # a hostname of the mesh's registry (FQDN or short, as Istio)
    port: int
    timeout: float = 600.0  # Istio's default: 10 minutes
    path_prefix: str = ""
    fail_open: bool = False
    status_on_error: int = 403
    include_request_headers: tuple[str, ...] = ()
    include_additional_headers: Mapping[str, str] = field(default_factory=dict)
    headers_to_upstream_on_allow: tuple[str, ...] = ()
    headers_to_downstream_on_allow: tuple[str, ...] = ()
    headers_to_downstream_on_deny: tuple[str, ...] = ()
    max_request_bytes: int = 0  # includeRequestBodyInCheck; 0: the body is not sent
    allow_partial_message: bool = False
    pack_as_bytes: bool = False


class MeshConfigError(ValueError):
    """The mesh config cannot be used; the message names the file and field."""


@dataclass(frozen=True)
class MeshConfig:
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    root_namespace: str = DEFAULT_ROOT_NAMESPACE
    enable_auto_mtls: bool = True
    # Seconds a sidecar sniffs an undeclared port's first bytes; 0 waits.
    protocol_detection_timeout: float = 0.0
    h2_upgrade_policy: str = "DO_NOT_UPGRADE"
    # defaultConfig.proxyMetadata: environment of every proxy's agent.
    proxy_metadata: Mapping[str, str] = field(default_factory=dict)
    ext_authz: Mapping[str, ExtAuthzProvider] = field(default_factory=dict)
    # names of the other extension providers (tracing, logging...)
    other_providers: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()  # top-level fields read but not acted on


def load_mesh_config(path: str) -> MeshConfig:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise MeshConfigError(f"{path}: cannot read the mesh config: {e.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise MeshConfigError(f"{path}: not valid YAML: {e}") from None
    return parse_mesh_config(raw, path)


def parse_mesh_config(raw: Any, source: str = "mesh config") -> MeshConfig:
    if raw is None:
        return MeshConfig()
    if isinstance(raw, dict) and isinstance(raw.get("meshConfig"), dict):
        raw = raw["meshConfig"]
    if not isinstance(raw, dict):
        raise MeshConfigError(f"{source}: expected a MeshConfig mapping (trustDomain: ..., ...)")

    def fail(path: str, message: str) -> MeshConfigError:
        return MeshConfigError(f"{source}: {path}: {message}")

    trust_domain = raw.get("trustDomain", DEFAULT_TRUST_DOMAIN)
    if not isinstance(trust_domain, str) or not _TRUST_DOMAIN.fullmatch(trust_domain):
        raise fail(
            "trustDomain", f"must be a DNS-like name such as cluster.local, not {trust_domain!r}"
        )
    root = raw.get("rootNamespace", DEFAULT_ROOT_NAMESPACE)
    if not isinstance(root, str) or not _DNS_LABEL.fullmatch(root):
        raise fail("rootNamespace", f"must be a namespace name, not {root!r}")
    auto = raw.get("enableAutoMtls", True)
    if not isinstance(auto, bool):
        raise fail("enableAutoMtls", f"must be true or false, not {auto!r}")
    detection = raw.get("protocolDetectionTimeout", "0s")
    seconds = parse_duration(detection) if isinstance(detection, str) else None
    if seconds is None or seconds < 0:
        raise fail(
            "protocolDetectionTimeout", f"must be a duration such as 100ms or 0s, not {detection!r}"
        )
    upgrade = raw.get("h2UpgradePolicy", "DO_NOT_UPGRADE")
    if upgrade not in H2_UPGRADE_POLICIES:
        raise fail("h2UpgradePolicy", f"must be DO_NOT_UPGRADE or UPGRADE, not {upgrade!r}")
    metadata = _proxy_metadata(raw.get("defaultConfig"), "defaultConfig", fail)
    ext_authz, others = _extension_providers(raw.get("extensionProviders"), fail)
    return MeshConfig(
        trust_domain=trust_domain,
        root_namespace=root,
        enable_auto_mtls=auto,
        protocol_detection_timeout=seconds,
        h2_upgrade_policy=upgrade,
        proxy_metadata=metadata,
        ext_authz=ext_authz,
        other_providers=others,
        ignored=tuple(sorted(str(k) for k in raw if k not in _KNOWN)),
    )


def _extension_providers(
    raw: Any, fail: Any
) -> tuple[dict[str, ExtAuthzProvider], tuple[str, ...]]:
    if raw is None:
        return {}, ()
    if not isinstance(raw, list):
        raise fail("extensionProviders", "must be a list of providers")
    ext_authz: dict[str, ExtAuthzProvider] = {}
    others: list[str] = []
    for i, item in enumerate(raw):
        path = f"extensionProviders[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise fail(f"{path}.name", "required: the name policies use to refer to it")
        name = item["name"]
        if name in ext_authz or name in others:
            raise fail(f"{path}.name", f"duplicate provider name {name!r}")
        kinds = [k for k in item if k != "name"]
        if len(kinds) != 1:
            raise fail(path, "must set exactly one provider kind (such as envoyExtAuthzHttp)")
        kind = kinds[0]
        if kind in EXT_AUTHZ_KINDS:
            ext_authz[name] = _ext_authz(name, kind, item[kind], f"{path}.{kind}", fail)
        else:
            others.append(name)
    return ext_authz, tuple(others)


def _ext_authz(name: str, kind: str, raw: Any, path: str, fail: Any) -> ExtAuthzProvider:
    if not isinstance(raw, dict):
        raise fail(path, "must be a mapping with service and port")
    service = raw.get("service")
    if not isinstance(service, str) or not service:
        raise fail(
            f"{path}.service",
            "required: the authorizer's host, such as ext-authz.foo.svc.cluster.local",
        )
    port = raw.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise fail(f"{path}.port", f"must be a port number between 1 and 65535, not {port!r}")
    timeout = raw.get("timeout", "600s")
    seconds = parse_duration(timeout) if isinstance(timeout, str) else None
    if seconds is None or seconds <= 0:
        raise fail(f"{path}.timeout", f"must be a positive duration such as 1s, not {timeout!r}")
    status = raw.get("statusOnError", "403")
    if not str(status).isdigit() or not 100 <= int(status) <= 599:
        raise fail(f"{path}.statusOnError", f"must be an HTTP status code, not {status!r}")
    body = raw.get("includeRequestBodyInCheck") or {}
    if not isinstance(body, dict):
        raise fail(f"{path}.includeRequestBodyInCheck", "must be a mapping")

    def strings(key: str) -> tuple[str, ...]:
        value = raw.get(key) or []
        if not isinstance(value, list):
            raise fail(f"{path}.{key}", "must be a list of header names")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise fail(f"{path}.{key}[{i}]", f"must be a header name, not {item!r}")
        return tuple(value)

    max_bytes = body.get("maxRequestBytes", 0)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or not 0 <= max_bytes < 2**32:
        raise fail(
            f"{path}.includeRequestBodyInCheck.maxRequestBytes",
            f"must be a number of bytes from 0 to 4294967295, not {max_bytes!r}",
        )

    additional = raw.get("includeAdditionalHeadersInCheck") or {}
    if not isinstance(additional, dict):
        raise fail(f"{path}.includeAdditionalHeadersInCheck", "must be a map of header: value")
    return ExtAuthzProvider(
        name=name,
        kind=kind,
        service=service,
        port=port,
        timeout=seconds,
        path_prefix=str(raw.get("pathPrefix") or ""),
        fail_open=raw.get("failOpen") is True,
        status_on_error=int(status),
        include_request_headers=strings("includeRequestHeadersInCheck")
        or strings("includeHeadersInCheck"),
        include_additional_headers={str(k): str(v) for k, v in additional.items()},
        headers_to_upstream_on_allow=strings("headersToUpstreamOnAllow"),
        headers_to_downstream_on_allow=strings("headersToDownstreamOnAllow"),
        headers_to_downstream_on_deny=strings("headersToDownstreamOnDeny"),
        max_request_bytes=max_bytes,
        allow_partial_message=body.get("allowPartialMessage") is True,
        pack_as_bytes=body.get("packAsBytes") is True,
    )


def _proxy_metadata(raw: Any, path: str, fail: Any) -> dict[str, str]:
    """``path`` is where the ProxyConfig sits ("" when it is the whole document)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise fail(path, "must be a ProxyConfig mapping")
    where = f"{path}.proxyMetadata" if path else "proxyMetadata"
    metadata = raw.get("proxyMetadata") or {}
    if not isinstance(metadata, dict):
        raise fail(where, "must be a map of environment variables")
    out = {}
    for key, value in metadata.items():
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise fail(f"{where}.{key}", "must be a string")
        out[str(key)] = str(value)
    if SECRET_TTL in out:
        secret_ttl_seconds(out[SECRET_TTL], f"{where}.{SECRET_TTL}", fail)
    return out


def secret_ttl_seconds(value: str, path: str = SECRET_TTL, fail: Any = None) -> float:
    """A Go duration (``24h``, ``2m``) as seconds; it must be positive."""
    seconds = parse_duration(value)
    if seconds is None or seconds <= 0:
        message = f"must be a positive duration such as 24h or 2m, not {value!r}"
        if fail is not None:
            raise fail(path, message)
        raise MeshConfigError(f"{path}: {message}")
    return seconds


def pod_secret_ttl(annotations: Mapping[str, str], mesh: MeshConfig) -> float:
    """The workload certificate lifetime a pod's agent asks for: the pod's
    ``proxy.istio.io/config`` proxyMetadata first, then the mesh default.

    Raises MeshConfigError naming the annotation when it cannot be read.
    """
    value = mesh.proxy_metadata.get(SECRET_TTL)
    raw = annotations.get(PROXY_CONFIG_ANNOTATION)
    if raw:
        where = f"annotation {PROXY_CONFIG_ANNOTATION}"
        try:
            parsed = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise MeshConfigError(f"{where}: not valid YAML: {e}") from None

        def fail(path: str, message: str) -> MeshConfigError:
            return MeshConfigError(f"{where}: {path}: {message}")

        if parsed is not None and not isinstance(parsed, dict):
            raise MeshConfigError(
                f"{where}: must be a ProxyConfig mapping (proxyMetadata: ...), "
                f"not {type(parsed).__name__}"
            )
        own = _proxy_metadata(parsed, "", fail) if parsed is not None else {}
        value = own.get(SECRET_TTL, value)
    if value is None:
        return DEFAULT_SECRET_TTL_S
    return secret_ttl_seconds(value)
