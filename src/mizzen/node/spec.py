"""What a pod spec asks the node to run (pure): environment, probes, timing.

The environment follows Kubernetes' rules: ``env`` entries in order, each
value able to refer to earlier ones as ``$(NAME)`` (``$$`` escapes), after
``envFrom``; ``valueFrom`` reads the pod's own fields, ConfigMaps and
Secrets; and the ``KUBERNETES_SERVICE_*`` variables in-cluster clients look
for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mizzen.kube.images import PodContext, expand
from mizzen.runtime.probes import HttpGetProbe, Probe, TcpSocketProbe

_INDEXED = re.compile(r"metadata\.(labels|annotations)\['([^']+)'\]")


class SpecError(Exception):
    """The pod asks for something the node cannot provide (said to the user
    through the container's waiting message)."""


def field_value(path: str, pod: PodContext) -> str:
    """The value of a downward-API fieldRef."""
    simple = {
        "metadata.name": pod.name,
        "metadata.namespace": pod.namespace,
        "metadata.uid": pod.uid,
        "spec.nodeName": pod.node_name,
        "spec.serviceAccountName": pod.service_account,
        "status.hostIP": pod.host_ip,
        "status.hostIPs": pod.host_ip,
        "status.podIP": pod.ip,
        "status.podIPs": pod.ip,
    }
    if path in simple:
        return simple[path]
    maps = {"metadata.labels": pod.labels, "metadata.annotations": pod.annotations}
    m = _INDEXED.fullmatch(path)
    if m:
        return maps[f"metadata.{m.group(1)}"].get(m.group(2), "")
    if path in maps:
        return "\n".join(f'{k}="{v}"' for k, v in sorted(maps[path].items()))
    raise SpecError(f"fieldRef {path!r} is not supported")


# (kind, namespace, name) -> data; Secret data already base64-decoded.
Sources = Mapping[tuple[str, str, str], Mapping[str, str]]


def referenced_sources(pod: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(kind, name) of every ConfigMap and Secret the pod's env reads."""
    found: set[tuple[str, str]] = set()
    spec = pod.get("spec") or {}
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for e in c.get("envFrom") or []:
            if "configMapRef" in e:
                found.add(("ConfigMap", e["configMapRef"]["name"]))
            if "secretRef" in e:
                found.add(("Secret", e["secretRef"]["name"]))
        for e in c.get("env") or []:
            ref = e.get("valueFrom") or {}
            if "configMapKeyRef" in ref:
                found.add(("ConfigMap", ref["configMapKeyRef"]["name"]))
            if "secretKeyRef" in ref:
                found.add(("Secret", ref["secretKeyRef"]["name"]))
    return found


def _source(
    sources: Sources, kind: str, namespace: str, ref: Mapping[str, Any]
) -> Mapping[str, str] | None:
    data = sources.get((kind, namespace, ref["name"]))
    if data is None and not ref.get("optional"):
        raise SpecError(f"{kind.lower()} {ref['name']!r} not found")
    return data


def container_env(
    container: Mapping[str, Any], pod: PodContext, sources: Sources, kubernetes_ip: str = ""
) -> dict[str, str]:
    """The container's environment as the kubelet sets it."""
    namespace = pod.namespace
    env: dict[str, str] = {"HOSTNAME": pod.name}
    if kubernetes_ip:
        env |= {
            "KUBERNETES_SERVICE_HOST": kubernetes_ip,
            "KUBERNETES_SERVICE_PORT": "443",
            "KUBERNETES_SERVICE_PORT_HTTPS": "443",
        }
    for e in container.get("envFrom") or []:
        prefix = e.get("prefix", "")
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if key in e:
                data = _source(sources, kind, namespace, e[key]) or {}
                env.update({f"{prefix}{k}": v for k, v in data.items()})
    for e in container.get("env") or []:
        value = _env_value(e, env, pod, sources, namespace)
        if value is not None:  # an optional reference to nothing sets nothing
            env[e["name"]] = value
    return env


def _env_value(
    e: Mapping[str, Any], env: Mapping[str, str], pod: PodContext, sources: Sources, ns: str
) -> str | None:
    if "valueFrom" not in e:
        return expand(str(e.get("value", "")), env)
    ref = e["valueFrom"]
    if "fieldRef" in ref:
        return field_value(ref["fieldRef"]["fieldPath"], pod)
    if "resourceFieldRef" in ref:
        # The node enforces no limits; Kubernetes then reports the node's
        # allocatable, and Istio's ISTIO_CPU_LIMIT reads 0 as "no limit".
        return "0"
    for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
        if key in ref:
            data = _source(sources, kind, ns, ref[key])
            if data is None:
                return None
            if ref[key]["key"] not in data:
                if ref[key].get("optional"):
                    return None
                raise SpecError(
                    f"{kind.lower()} {ref[key]['name']!r} has no key {ref[key]['key']!r}"
                )
            return data[ref[key]["key"]]
    raise SpecError(f"env {e['name']!r}: unsupported valueFrom")


def named_ports(container: Mapping[str, Any]) -> dict[str, int]:
    """A container's named ports: a probe's port name refers to its own
    container's ports, as in Kubernetes."""
    return {
        p["name"]: int(p["containerPort"]) for p in container.get("ports") or [] if p.get("name")
    }


def _port(value: Any, named: Mapping[str, int]) -> int:
    if isinstance(value, int):
        return value
    if str(value).isdigit():
        return int(value)
    if value in named:
        return named[value]
    raise SpecError(f"probe port {value!r} names no container port")


@dataclass(frozen=True)
class ProbeSpec:
    check: Probe | tuple[str, ...]  # an exec probe is its command
    initial_delay: float = 0
    period: float = 10
    timeout: float = 1
    failure_threshold: int = 3
    success_threshold: int = 1


def probe_spec(raw: Mapping[str, Any] | None, named: Mapping[str, int]) -> ProbeSpec | None:
    if not raw:
        return None
    check: Probe | tuple[str, ...]
    if "httpGet" in raw:
        h = raw["httpGet"]
        headers = {x["name"]: x["value"] for x in h.get("httpHeaders") or []}
        check = HttpGetProbe(
            _port(h["port"], named), h.get("path", "/"), h.get("scheme", "HTTP"), headers
        )
    elif "tcpSocket" in raw:
        check = TcpSocketProbe(_port(raw["tcpSocket"]["port"], named))
    elif "exec" in raw:
        check = tuple(raw["exec"].get("command") or ())
    else:
        raise SpecError("probe has no httpGet, tcpSocket or exec")
    return ProbeSpec(
        check=check,
        initial_delay=float(raw.get("initialDelaySeconds", 0)),
        period=float(raw.get("periodSeconds", 10)),
        timeout=float(raw.get("timeoutSeconds", 1)),
        failure_threshold=int(raw.get("failureThreshold", 3)),
        success_threshold=int(raw.get("successThreshold", 1)),
    )
