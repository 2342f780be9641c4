"""Istio's sidecar injection for Kubernetes pods, as pure dict-to-dict functions.

The mutating webhook (``mizzen.kube.admission``) and ``mizzen kube-inject``
both end here. A pod (or a workload's pod template) goes in as the JSON the
API server holds; the same pod comes out with what Istio's injector adds, with
Istio's names and shapes, so that ``kubectl get pod -o yaml`` looks familiar:

* init container ``istio-init`` (image ``<hub>/proxyv2:<tag>``) running
  ``istio-iptables`` with the capture flags derived from the pod's
  ``traffic.sidecar.istio.io/*`` annotations (the Mizzen node runs it as
  ``mizzen capture --istio-iptables``; :func:`capture_config_from_iptables_args`
  reads those flags back into the same ``CaptureConfig``);
* container ``istio-proxy`` running ``proxy sidecar`` with Istio's env
  (identity via fieldRef, ``PROXY_CONFIG``, ``ISTIO_META_*``), readiness on
  15021, uid/gid 1337, and Istio's volumes;
* labels ``security.istio.io/tlsMode`` and the canonical service name and
  revision; annotations ``sidecar.istio.io/status``, ``istio.io/rev`` and
  ``kubectl.kubernetes.io/default-container``;
* app probes (httpGet, tcpSocket) rewritten to the agent's 15020
  ``/app-health/<container>/<readyz|livez|startupz>``, the originals recorded
  in ``ISTIO_KUBE_APP_PROBERS`` (the agent's own format,
  ``mizzen.agent.appprobes``).

Who gets a sidecar is decided by :func:`needs_injection`, on top of
``mizzen.registry.pods.sidecar_injected`` (the same rules the local runtime
applies), plus: pods that already carry ``istio-proxy`` or the status
annotation are left alone, and a namespace or pod ``istio.io/rev`` naming
another revision belongs to another injector.

Left out on purpose: gRPC and exec probes stay as they are (the agent runs
only HTTP and TCP probes); ``sidecar.istio.io/proxyImage``, ``userVolume*``
and the resource annotations are not read, and no ``prometheus.io/*``
annotations are added.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import yaml

from mizzen.agent.appprobes import AppProbe, app_health_path, probers_json
from mizzen.capture.rules import (
    ALWAYS_EXCLUDED_INBOUND_PORTS,
    ANNOTATION_EXCLUDE_INBOUND_PORTS,
    ANNOTATION_EXCLUDE_OUTBOUND_IP_RANGES,
    ANNOTATION_EXCLUDE_OUTBOUND_PORTS,
    ANNOTATION_INCLUDE_INBOUND_PORTS,
    ANNOTATION_INCLUDE_OUTBOUND_IP_RANGES,
    ANNOTATION_INCLUDE_OUTBOUND_PORTS,
    AnnotationError,
    CaptureConfig,
)
from mizzen.registry.pods import (
    CANONICAL_NAME,
    CANONICAL_REVISION,
    NAMESPACE_INJECTION,
    REVISION,
    TLS_MODE,
    sidecar_injected,
)
from mizzen.runtime.probes import HttpGetProbe, TcpSocketProbe

__all__ = [
    "INIT_CONTAINER",
    "POD_TEMPLATE_KINDS",
    "PROXY_CONTAINER",
    "STATUS_ANNOTATION",
    "InjectError",
    "InjectOptions",
    "Workload",
    "already_injected",
    "capture_config_from_iptables_args",
    "inject_pod",
    "iptables_args",
    "json_patch",
    "kube_inject_object",
    "needs_injection",
    "workload_for_object",
    "workload_for_pod",
]

INIT_CONTAINER: Final = "istio-init"
PROXY_CONTAINER: Final = "istio-proxy"
STATUS_ANNOTATION: Final = "sidecar.istio.io/status"
PROXY_CONFIG_ANNOTATION: Final = "proxy.istio.io/config"
REWRITE_PROBES_ANNOTATION: Final = "sidecar.istio.io/rewriteAppHTTPProbers"
DEFAULT_CONTAINER: Final = "kubectl.kubernetes.io/default-container"
DEFAULT_LOGS_CONTAINER: Final = "kubectl.kubernetes.io/default-logs-container"
HOLD_KEY: Final = "holdApplicationUntilProxyStarts"

PROXY_UID: Final = 1337
OUTBOUND_CAPTURE_PORT: Final = 15001
INBOUND_CAPTURE_PORT: Final = 15006
STATUS_PORT: Final = 15020
HEALTH_PORT: Final = 15021
PROMETHEUS_PORT: Final = 15090

# Kinds whose pods come from spec.template (CronJob: spec.jobTemplate.spec.template).
POD_TEMPLATE_KINDS: Final = frozenset(
    {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
)

# Volume names as Istio's injector adds them (and lists them in the status
# annotation), in that order.
VOLUME_NAMES: Final = (
    "istio-envoy",
    "istio-data",
    "istio-podinfo",
    "istio-token",
    "istiod-ca-cert",
)


class InjectError(ValueError):
    """The pod cannot be injected as asked (a bad annotation, no containers).

    Istio's injector refuses such pods too; the message names the culprit.
    """


@dataclass(frozen=True)
class InjectOptions:
    """Mesh-wide injection settings (Istio's injector values).

    ``hub``/``tag`` only name the images; the Mizzen node maps
    ``*/proxyv2:*`` to local commands (``mizzen.kube.images``).
    ``ca_address`` empty means the discovery address, as with istiod.
    """

    # The defaults of `mizzen install` (mizzen.kube.manifests), so that the
    # sidecar's image and the control plane's come from the same hub.
    hub: str = "docker.io/mizzen"
    tag: str = "0.1.0"
    discovery_address: str = "istiod.istio-system.svc:15012"
    ca_address: str = ""
    cluster_id: str = "Kubernetes"
    mesh_id: str = "cluster.local"
    trust_domain: str = "cluster.local"
    domain_suffix: str = "cluster.local"
    revision: str = "default"
    hold_application: bool = False
    rewrite_probes: bool = True

    @property
    def proxy_image(self) -> str:
        return f"{self.hub}/proxyv2:{self.tag}"


@dataclass(frozen=True)
class Workload:
    """What ``ISTIO_META_WORKLOAD_NAME`` and ``ISTIO_META_OWNER`` say."""

    name: str
    owner: str  # kubernetes://apis/apps/v1/namespaces/default/deployments/reviews-v1


# -- who gets a sidecar ------------------------------------------------------


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): "" if v is None else str(v) for k, v in _mapping(value).items()}


def _containers(spec: Mapping[str, Any], key: str = "containers") -> list[Any]:
    value = spec.get(key)
    return list(value) if isinstance(value, list) else []


def already_injected(pod: Mapping[str, Any]) -> bool:
    spec = _mapping(pod.get("spec"))
    annotations = _mapping(_mapping(pod.get("metadata")).get("annotations"))
    if STATUS_ANNOTATION in annotations:
        return True
    return any(_mapping(c).get("name") == PROXY_CONTAINER for c in _containers(spec))


def _other_revision(ns_labels: Mapping[str, str], pod_labels: Mapping[str, str], ours: str) -> bool:
    # istio-injection=enabled selects the default revision's webhook; an
    # istio.io/rev label (namespace first, then pod) selects that revision's.
    if NAMESPACE_INJECTION in ns_labels:
        return ours != "default"
    revision = ns_labels.get(REVISION) or pod_labels.get(REVISION)
    return revision is not None and revision != ours


def needs_injection(
    pod: Mapping[str, Any],
    namespace_labels: Mapping[str, str],
    options: InjectOptions,
    namespace: str | None = None,
) -> bool:
    """Whether Istio's webhook and injector together would add a sidecar.

    ``namespace`` overrides the pod's metadata.namespace (an admission
    request names it; the pod object often does not).
    """
    if already_injected(pod):
        return False
    meta = _mapping(pod.get("metadata"))
    spec = _mapping(pod.get("spec"))
    ns = namespace or str(meta.get("namespace") or "default")
    labels = _str_map(meta.get("labels"))
    if _other_revision(namespace_labels, labels, options.revision):
        return False
    return sidecar_injected(
        ns,
        namespace_labels,
        labels,
        _str_map(meta.get("annotations")),
        host_network=spec.get("hostNetwork") is True,
    )


# -- workload identity -------------------------------------------------------


def _owner_uri(api_version: str, kind: str, namespace: str, name: str) -> str:
    # Kubernetes resource names are the lower-case plural of the kind.
    return f"kubernetes://apis/{api_version}/namespaces/{namespace}/{kind.lower()}s/{name}"


def workload_for_object(doc: Mapping[str, Any]) -> Workload:
    """A manifest's Deployment, StatefulSet, ... or Pod, as the owner of its pods."""
    meta = _mapping(doc.get("metadata"))
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or "default")
    api_version = str(doc.get("apiVersion") or "v1")
    return Workload(name, _owner_uri(api_version, str(doc.get("kind") or "Pod"), namespace, name))


def workload_for_pod(pod: Mapping[str, Any], namespace: str) -> Workload:
    """The workload a pod the API server created belongs to, from its
    controller ownerReference; a ReplicaSet made by a Deployment stands for
    the Deployment (its name minus the ``pod-template-hash`` suffix)."""
    meta = _mapping(pod.get("metadata"))
    owners = [o for o in meta.get("ownerReferences") or [] if isinstance(o, Mapping)]
    owner = next((o for o in owners if o.get("controller") is True), owners[0] if owners else None)
    if owner is None:
        name = str(meta.get("name") or meta.get("generateName") or "")
        return Workload(name, _owner_uri("v1", "Pod", namespace, name))
    kind = str(owner.get("kind") or "")
    name = str(owner.get("name") or "")
    api_version = str(owner.get("apiVersion") or "v1")
    template_hash = _str_map(meta.get("labels")).get("pod-template-hash", "")
    if kind == "ReplicaSet" and template_hash and name.endswith(f"-{template_hash}"):
        deployment = name.removesuffix(f"-{template_hash}")
        return Workload(deployment, _owner_uri("apps/v1", "Deployment", namespace, deployment))
    return Workload(name, _owner_uri(api_version, kind, namespace, name))


# -- the injection itself ----------------------------------------------------


def inject_pod(
    pod: Mapping[str, Any],
    namespace_labels: Mapping[str, str],
    options: InjectOptions,
    *,
    namespace: str | None = None,
    workload: Workload | None = None,
) -> dict[str, Any]:
    """The pod as Istio's injection webhook would leave it: a new dict, the
    input untouched. Pods that need no sidecar (:func:`needs_injection`,
    already injected ones included) come back as an unchanged copy, so
    injecting twice is injecting once. Raises InjectError."""
    if not needs_injection(pod, namespace_labels, options, namespace):
        return copy.deepcopy(dict(pod))
    meta = _mapping(pod.get("metadata"))
    ns = namespace or str(meta.get("namespace") or "default")
    if workload is None:
        workload = workload_for_pod(pod, ns)
    return _inject(pod, ns, workload, options)


def _inject(
    pod: Mapping[str, Any], namespace: str, workload: Workload, options: InjectOptions
) -> dict[str, Any]:
    out: dict[str, Any] = copy.deepcopy(dict(pod))
    meta = out["metadata"] = dict(_mapping(out.get("metadata")))
    spec = out["spec"] = dict(_mapping(out.get("spec")))
    labels = _str_map(meta.get("labels"))
    annotations = _str_map(meta.get("annotations"))
    apps = [c for c in _containers(spec) if isinstance(c, Mapping)]
    if not apps:
        raise InjectError("spec.containers: a pod needs at least one container")
    try:
        CaptureConfig.from_annotations(annotations)
    except AnnotationError as exc:
        raise InjectError(str(exc)) from None
    proxy_config = _proxy_config(annotations, options)
    hold = proxy_config.get(HOLD_KEY) is True

    probers: dict[str, tuple[AppProbe, float]] = {}
    if _rewrites_probes(annotations, options):
        apps = [_rewrite_probes(c, probers) for c in apps]
    else:
        apps = [dict(c) for c in apps]
    proxy = _proxy_container(apps, proxy_config, probers, workload, options)
    if hold:
        proxy["lifecycle"] = {"postStart": {"exec": {"command": ["pilot-agent", "wait"]}}}
    # Istio puts the proxy last (so kubectl exec/logs default to the app),
    # or first when the app must wait for it; istio-init goes last among the
    # init containers so that earlier ones still have an uncaptured network.
    spec["containers"] = [proxy, *apps] if hold else [*apps, proxy]
    init = _init_container(annotations, options)
    spec["initContainers"] = [*_containers(spec, "initContainers"), init]
    spec["volumes"] = [*_containers(spec, "volumes"), *_volumes()]

    meta["labels"] = _injected_labels(labels, workload.name)
    meta["annotations"] = _injected_annotations(annotations, str(apps[0].get("name", "")), options)
    return out


def _proxy_config(annotations: Mapping[str, str], options: InjectOptions) -> dict[str, Any]:
    """PROXY_CONFIG: mesh-wide values, overridden by ``proxy.istio.io/config``."""
    config: dict[str, Any] = {"discoveryAddress": options.discovery_address}
    if options.hold_application:
        config[HOLD_KEY] = True
    text = annotations.get(PROXY_CONFIG_ANNOTATION)
    if text is None or not text.strip():
        return config
    try:
        override = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InjectError(f"annotation {PROXY_CONFIG_ANNOTATION}: not valid YAML: {exc}") from None
    if not isinstance(override, dict):
        raise InjectError(f"annotation {PROXY_CONFIG_ANNOTATION}: must be a ProxyConfig mapping")
    hold = override.get(HOLD_KEY, config.get(HOLD_KEY, False))
    if not isinstance(hold, bool):
        raise InjectError(f"annotation {PROXY_CONFIG_ANNOTATION}: {HOLD_KEY} must be true or false")
    config.update(override)
    return config


def _rewrites_probes(annotations: Mapping[str, str], options: InjectOptions) -> bool:
    value = annotations.get(REWRITE_PROBES_ANNOTATION)
    if value is None or not value.strip():
        return options.rewrite_probes
    return value.strip().lower() != "false"


# -- probes --------------------------------------------------------------------

_PROBES: Final = (
    ("readinessProbe", "readyz"),
    ("livenessProbe", "livez"),
    ("startupProbe", "startupz"),
)


def _named_ports(container: Mapping[str, Any]) -> dict[str, int]:
    ports = [p for p in container.get("ports") or [] if isinstance(p, Mapping)]
    return {
        str(p["name"]): p["containerPort"]
        for p in ports
        if p.get("name") and isinstance(p.get("containerPort"), int)
    }


def _resolve_port(value: Any, named: Mapping[str, int]) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = int(value) if value.isdigit() else named.get(value)
    return value if isinstance(value, int) and 0 < value < 65536 else None


def _app_probe(probe: Mapping[str, Any], named: Mapping[str, int]) -> AppProbe | None:
    http = probe.get("httpGet")
    if isinstance(http, Mapping):
        port = _resolve_port(http.get("port"), named)
        if port is None:
            return None
        headers = {
            str(h.get("name")): str(h.get("value", ""))
            for h in http.get("httpHeaders") or []
            if isinstance(h, Mapping) and h.get("name")
        }
        scheme = str(http.get("scheme") or "HTTP").upper()
        return HttpGetProbe(port, str(http.get("path") or "/"), scheme, headers)
    tcp = probe.get("tcpSocket")
    if isinstance(tcp, Mapping):
        port = _resolve_port(tcp.get("port"), named)
        return None if port is None else TcpSocketProbe(port)
    return None  # exec and grpc probes are left to the kubelet


def _timeout(probe: Mapping[str, Any]) -> int:
    value = probe.get("timeoutSeconds")
    # Kubernetes defaults an unset timeout to 1 s.
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def _rewrite_probes(
    container: Mapping[str, Any], probers: dict[str, tuple[AppProbe, float]]
) -> dict[str, Any]:
    """The container with its HTTP/TCP probes pointed at the agent; each
    original is added to ``probers`` under its ``/app-health/...`` path."""
    out = dict(container)
    named = _named_ports(container)
    for key, kind in _PROBES:
        probe = container.get(key)
        if not isinstance(probe, Mapping):
            continue
        target = _app_probe(probe, named)
        if target is None:
            continue
        path = app_health_path(str(container.get("name", "")), kind)
        probers[path] = (target, _timeout(probe))
        rewritten = {k: v for k, v in probe.items() if k not in ("httpGet", "tcpSocket")}
        rewritten["httpGet"] = {"path": path, "port": STATUS_PORT, "scheme": "HTTP"}
        out[key] = rewritten
    return out


# -- containers, volumes, metadata -------------------------------------------


def _annotation_or(annotations: Mapping[str, str], key: str, default: str) -> str:
    value = annotations.get(key)
    return default if value is None else value.strip()


def iptables_args(annotations: Mapping[str, str]) -> list[str]:
    """istio-init's arguments for these pod annotations (Istio's flags:
    -p outbound capture port, -z inbound capture port, -u proxy uid,
    -m mode, -i/-x include/exclude outbound CIDRs, -b/-d include/exclude
    inbound ports, -o/-q exclude/include outbound ports)."""
    excluded = ",".join(str(p) for p in ALWAYS_EXCLUDED_INBOUND_PORTS)
    user_excluded = _annotation_or(annotations, ANNOTATION_EXCLUDE_INBOUND_PORTS, "")
    args = [
        "istio-iptables",
        *("-p", str(OUTBOUND_CAPTURE_PORT)),
        *("-z", str(INBOUND_CAPTURE_PORT)),
        *("-u", str(PROXY_UID)),
        *("-m", "REDIRECT"),
        *("-i", _annotation_or(annotations, ANNOTATION_INCLUDE_OUTBOUND_IP_RANGES, "*")),
        *("-x", _annotation_or(annotations, ANNOTATION_EXCLUDE_OUTBOUND_IP_RANGES, "")),
        *("-b", _annotation_or(annotations, ANNOTATION_INCLUDE_INBOUND_PORTS, "*")),
        *("-d", f"{excluded},{user_excluded}" if user_excluded else excluded),
    ]
    if ANNOTATION_EXCLUDE_OUTBOUND_PORTS in annotations:
        args += ["-o", _annotation_or(annotations, ANNOTATION_EXCLUDE_OUTBOUND_PORTS, "")]
    if ANNOTATION_INCLUDE_OUTBOUND_PORTS in annotations:
        args += ["-q", _annotation_or(annotations, ANNOTATION_INCLUDE_OUTBOUND_PORTS, "")]
    return args


def _init_container(annotations: Mapping[str, str], options: InjectOptions) -> dict[str, Any]:
    return {
        "name": INIT_CONTAINER,
        "image": options.proxy_image,
        "imagePullPolicy": "IfNotPresent",
        "args": [*iptables_args(annotations), "--log_output_level=default:info"],
        "resources": {
            "limits": {"cpu": "2", "memory": "1Gi"},
            "requests": {"cpu": "10m", "memory": "40Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
            "privileged": False,
            "readOnlyRootFilesystem": False,
            "runAsGroup": 0,
            "runAsNonRoot": False,
            "runAsUser": 0,
        },
    }


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def _pod_ports(apps: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    # protocol defaults to TCP, as the API server fills it in.
    return [
        {
            **({"name": p["name"]} if "name" in p else {}),
            "containerPort": p.get("containerPort"),
            "protocol": p.get("protocol") or "TCP",
        }
        for c in apps
        for p in c.get("ports") or []
        if isinstance(p, Mapping)
    ]


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _proxy_env(
    apps: Sequence[Mapping[str, Any]],
    proxy_config: Mapping[str, Any],
    probers: Mapping[str, tuple[AppProbe, float]],
    workload: Workload,
    options: InjectOptions,
) -> list[dict[str, Any]]:
    def plain(name: str, value: str) -> dict[str, Any]:
        return {"name": name, "value": value}

    env = [
        plain("JWT_POLICY", "third-party-jwt"),
        plain("PILOT_CERT_PROVIDER", "istiod"),
        plain("CA_ADDR", options.ca_address or options.discovery_address),
        _field_env("POD_NAME", "metadata.name"),
        _field_env("POD_NAMESPACE", "metadata.namespace"),
        _field_env("INSTANCE_IP", "status.podIP"),
        _field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        _field_env("HOST_IP", "status.hostIP"),
        plain("PROXY_CONFIG", _compact(proxy_config)),
        plain("ISTIO_META_POD_PORTS", _compact(_pod_ports(apps))),
        plain("ISTIO_META_APP_CONTAINERS", ",".join(str(c.get("name", "")) for c in apps)),
        plain("ISTIO_META_CLUSTER_ID", options.cluster_id),
        _field_env("ISTIO_META_NODE_NAME", "spec.nodeName"),
        plain("ISTIO_META_INTERCEPTION_MODE", "REDIRECT"),
        plain("ISTIO_META_WORKLOAD_NAME", workload.name),
        plain("ISTIO_META_OWNER", workload.owner),
        plain("ISTIO_META_MESH_ID", options.mesh_id),
        plain("TRUST_DOMAIN", options.trust_domain),
    ]
    if probers:
        env.append(plain("ISTIO_KUBE_APP_PROBERS", probers_json(probers)))
    return env


def _health_probe(**timing: int) -> dict[str, Any]:
    return {"httpGet": {"path": "/healthz/ready", "port": HEALTH_PORT}, **timing}


def _proxy_container(
    apps: Sequence[Mapping[str, Any]],
    proxy_config: Mapping[str, Any],
    probers: Mapping[str, tuple[AppProbe, float]],
    workload: Workload,
    options: InjectOptions,
) -> dict[str, Any]:
    mounts = {
        "istiod-ca-cert": "/var/run/secrets/istio",
        "istio-data": "/var/lib/istio/data",
        "istio-envoy": "/etc/istio/proxy",
        "istio-token": "/var/run/secrets/tokens",
        "istio-podinfo": "/etc/istio/pod",
    }
    return {
        "name": PROXY_CONTAINER,
        "image": options.proxy_image,
        "imagePullPolicy": "IfNotPresent",
        "args": [
            *("proxy", "sidecar"),
            *("--domain", f"$(POD_NAMESPACE).svc.{options.domain_suffix}"),
            "--proxyLogLevel=warning",
            "--proxyComponentLogLevel=misc:error",
            "--log_output_level=default:info",
        ],
        "env": _proxy_env(apps, proxy_config, probers, workload, options),
        "ports": [{"containerPort": PROMETHEUS_PORT, "name": "http-envoy-prom", "protocol": "TCP"}],
        "readinessProbe": _health_probe(
            initialDelaySeconds=0, periodSeconds=15, timeoutSeconds=3, failureThreshold=4
        ),
        "startupProbe": _health_probe(
            initialDelaySeconds=0, periodSeconds=1, timeoutSeconds=3, failureThreshold=600
        ),
        "resources": {
            "limits": {"cpu": "2", "memory": "1Gi"},
            "requests": {"cpu": "100m", "memory": "128Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsGroup": PROXY_UID,
            "runAsNonRoot": True,
            "runAsUser": PROXY_UID,
        },
        "volumeMounts": [{"mountPath": path, "name": name} for name, path in mounts.items()],
    }


def _volumes() -> list[dict[str, Any]]:
    return [
        {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}},
        {"name": "istio-data", "emptyDir": {}},
        {
            "name": "istio-podinfo",
            "downwardAPI": {
                "items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                ]
            },
        },
        {
            "name": "istio-token",
            "projected": {
                "sources": [
                    {
                        "serviceAccountToken": {
                            "audience": "istio-ca",
                            "expirationSeconds": 43200,
                            "path": "istio-token",
                        }
                    }
                ]
            },
        },
        {"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}},
    ]


def _first(labels: Mapping[str, str], keys: Iterable[str], default: str) -> str:
    return next((labels[k] for k in keys if labels.get(k)), default)


def _injected_labels(labels: Mapping[str, str], workload: str) -> dict[str, str]:
    out = dict(labels)
    out.setdefault(TLS_MODE, "istio")
    out.setdefault(CANONICAL_NAME, _first(labels, ("app.kubernetes.io/name", "app"), workload))
    out.setdefault(
        CANONICAL_REVISION, _first(labels, ("app.kubernetes.io/version", "version"), "latest")
    )
    return out


def _injected_annotations(
    annotations: Mapping[str, str], first_app: str, options: InjectOptions
) -> dict[str, str]:
    out = dict(annotations)
    out.setdefault(DEFAULT_CONTAINER, first_app)
    out.setdefault(DEFAULT_LOGS_CONTAINER, first_app)
    out.setdefault(REVISION, options.revision)
    # Go's encoding/json order and spacing, as istiod writes it.
    status = {
        "initContainers": [INIT_CONTAINER],
        "containers": [PROXY_CONTAINER],
        "volumes": list(VOLUME_NAMES),
        "imagePullSecrets": None,
        "revision": options.revision,
    }
    out[STATUS_ANNOTATION] = _compact(status)
    return out


# -- kube-inject: manifests --------------------------------------------------


def _template_path(kind: str) -> tuple[str, ...] | None:
    if kind == "Pod":
        return ()
    if kind in POD_TEMPLATE_KINDS:
        return ("spec", "template")
    if kind == "CronJob":
        return ("spec", "jobTemplate", "spec", "template")
    return None


def kube_inject_object(doc: Mapping[str, Any], options: InjectOptions) -> dict[str, Any]:
    """``istioctl kube-inject`` for one manifest object: the pod (template) of
    a Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob gets
    a sidecar unless it opts out (``sidecar.istio.io/inject: "false"``, label
    or annotation) or uses the host network; namespace labels are not
    consulted. Other objects come back unchanged. Raises InjectError with the
    field path for a malformed object."""
    out: dict[str, Any] = copy.deepcopy(dict(doc))
    path = _template_path(str(doc.get("kind") or ""))
    if path is None:
        return out
    parent: dict[str, Any] = out
    for depth, key in enumerate(path):
        child = parent.get(key)
        if not isinstance(child, dict):
            raise InjectError(f"{'.'.join(path[: depth + 1])}: must be a mapping")
        parent = child
    template = parent
    meta = _mapping(doc.get("metadata"))
    namespace = str(meta.get("namespace") or "default")
    workload = workload_for_object(doc)
    enabled = {NAMESPACE_INJECTION: "enabled"}
    injected = inject_pod(template, enabled, options, namespace=namespace, workload=workload)
    if not path:
        return injected
    template.clear()
    template.update(injected)
    return out


# -- istio-iptables flags back to a CaptureConfig -----------------------------

_FLAG_ANNOTATIONS: Final = {
    "-i": ANNOTATION_INCLUDE_OUTBOUND_IP_RANGES,
    "-x": ANNOTATION_EXCLUDE_OUTBOUND_IP_RANGES,
    "-b": ANNOTATION_INCLUDE_INBOUND_PORTS,
    "-d": ANNOTATION_EXCLUDE_INBOUND_PORTS,
    "-o": ANNOTATION_EXCLUDE_OUTBOUND_PORTS,
    "-q": ANNOTATION_INCLUDE_OUTBOUND_PORTS,
}
_FLAG_NUMBERS: Final = ("-p", "-z", "-u", "-g")
_LONG_FLAGS: Final = {
    "--envoy-port": "-p",
    "--inbound-capture-port": "-z",
    "--proxy-uid": "-u",
    "--proxy-gid": "-g",
    "--istio-inbound-interception-mode": "-m",
    "--istio-service-cidr": "-i",
    "--istio-service-exclude-cidr": "-x",
    "--istio-inbound-ports": "-b",
    "--istio-local-exclude-ports": "-d",
    "--istio-local-outbound-ports-exclude": "-o",
    "--istio-include-outbound-ports": "-q",
}
# Flags that change only istio-iptables' own logging.
_IGNORED_PREFIXES: Final = ("--log_output_level", "--log_as_json")


def _flag_pairs(args: Sequence[str]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    rest = list(args)
    if rest and rest[0] == "istio-iptables":
        rest = rest[1:]
    while rest:
        arg = rest.pop(0)
        if arg.startswith(_IGNORED_PREFIXES):
            continue
        flag, eq, inline = arg.partition("=")
        flag = _LONG_FLAGS.get(flag, flag)
        if flag not in _FLAG_ANNOTATIONS and flag not in _FLAG_NUMBERS and flag != "-m":
            raise ValueError(f"istio-iptables: unsupported flag {arg!r}")
        if eq:
            pairs.append((flag, inline))
        elif rest:
            pairs.append((flag, rest.pop(0)))
        else:
            raise ValueError(f"istio-iptables: flag {arg} needs a value")
    return pairs


def capture_config_from_iptables_args(args: Sequence[str]) -> CaptureConfig:
    """Istio's istio-iptables flags (as :func:`iptables_args` writes them,
    long forms accepted) as the CaptureConfig the same annotations give.
    Raises ValueError naming the flag."""
    annotations: dict[str, str] = {}
    numbers: dict[str, int] = {}
    for flag, value in _flag_pairs(args):
        if flag == "-m":
            if value != "REDIRECT":
                raise ValueError(f"istio-iptables -m {value}: only REDIRECT is supported")
        elif flag in _FLAG_NUMBERS:
            if not value.isdigit():
                raise ValueError(f"istio-iptables {flag} {value!r}: not a number")
            numbers[flag] = int(value)
        else:
            annotations[_FLAG_ANNOTATIONS[flag]] = value
    try:
        config = CaptureConfig.from_annotations(annotations)
        uid = numbers.get("-u", config.proxy_uid)
        return dataclasses.replace(
            config,
            outbound_port=numbers.get("-p", config.outbound_port),
            inbound_port=numbers.get("-z", config.inbound_port),
            proxy_uid=uid,
            # istio-iptables defaults the gid to the uid.
            proxy_gid=numbers.get("-g", uid),
        )
    except AnnotationError as exc:
        flag = next(f for f, a in _FLAG_ANNOTATIONS.items() if a == exc.annotation)
        message = f"istio-iptables {flag}: invalid item {exc.item!r}: {exc.reason}"
        raise ValueError(message) from None


# -- RFC 6902 patch for the admission response --------------------------------

_MISSING: Final = object()


def _pointer(*keys: str) -> str:
    return "".join("/" + k.replace("~", "~0").replace("/", "~1") for k in keys)


def _ordered_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    return [*before, *(k for k in after if k not in before)]


def _op(path: str, before: Any, after: Any) -> list[dict[str, Any]]:
    if after is _MISSING:
        return [] if before is _MISSING else [{"op": "remove", "path": path}]
    if before is _MISSING:
        return [{"op": "add", "path": path, "value": after}]
    return [] if before == after else [{"op": "replace", "path": path, "value": after}]


def json_patch(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """RFC 6902 operations turning ``before`` into ``after``, whole fields
    two levels down (``/spec/containers``, ``/metadata/annotations``):
    coarse, but exact and easy for the API server to apply."""
    ops: list[dict[str, Any]] = []
    for top in _ordered_keys(before, after):
        b, a = before.get(top, _MISSING), after.get(top, _MISSING)
        if isinstance(b, Mapping) and isinstance(a, Mapping):
            for key in _ordered_keys(b, a):
                ops += _op(_pointer(top, key), b.get(key, _MISSING), a.get(key, _MISSING))
        else:
            ops += _op(_pointer(top), b, a)
    return ops
