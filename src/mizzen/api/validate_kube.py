"""Checks for the Kubernetes kinds Mizzen reads, the subset of the API
server's validation that matters to a mesh (names, ports, containers,
selectors). Paths start at the document root (``spec.ports[0].port``)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any

from mizzen.api.validate_crd import Problems, index, join, key, type_name
from mizzen.api.validate_names import (
    check_labels,
    dns_label_problem,
    dns_subdomain_problem,
)

Doc = Mapping[str, Any]


def _obj(value: Any, path: str, out: Problems) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        out.append((path, f"must be an object, got {type_name(value)}"))
        return {}
    return value


def _list(value: Any, path: str, out: Problems) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        out.append((path, f"must be a list, got {type_name(value)}"))
        return []
    return value


def _str_map(value: Any, path: str, out: Problems) -> None:
    for k, v in _obj(value, path, out).items():
        if not isinstance(v, str):
            out.append((key(path, str(k)), f"must be a string, got {type_name(v)}"))


def _string(value: Any, path: str, out: Problems) -> None:
    if value is not None and not isinstance(value, str):
        out.append((path, f"must be a string, got {type_name(value)}"))


def _bool(value: Any, path: str, out: Problems) -> None:
    if value is not None and not isinstance(value, bool):
        out.append((path, f"must be true or false, got {type_name(value)}"))


def _port(value: Any, path: str, out: Problems, *, required: bool = True) -> None:
    if value is None:
        if required:
            out.append((path, "required"))
        return
    if isinstance(value, bool) or not isinstance(value, int):
        out.append((path, f"must be an integer, got {type_name(value)}"))
    elif not 1 <= value <= 65535:
        out.append((path, f"must be between 1 and 65535, got {value}"))


def _int_or_name_port(value: Any, path: str, out: Problems) -> None:
    if value is None:
        return
    if isinstance(value, str):
        problem = dns_label_problem(value) if not value.isdigit() else None
        if problem or len(value) > 15:
            out.append((path, f"named port {value!r} must be a DNS label of at most 15 characters"))
        return
    _port(value, path, out)


def check_metadata(doc: Doc, *, namespaced: bool, out: Problems) -> None:
    meta = _obj(doc.get("metadata"), "metadata", out)
    name = meta.get("name")
    if name is None or name == "":
        out.append(("metadata.name", "required"))
    elif not isinstance(name, str):
        out.append(("metadata.name", f"must be a string, got {type_name(name)}"))
    else:
        problem = dns_subdomain_problem(name)
        if problem:
            out.append(("metadata.name", problem))
    ns = meta.get("namespace")
    if ns is not None:
        if not isinstance(ns, str):
            out.append(("metadata.namespace", f"must be a string, got {type_name(ns)}"))
        elif namespaced and ns:
            problem = dns_label_problem(ns)
            if problem:
                out.append(("metadata.namespace", problem))
    _str_map(meta.get("labels"), "metadata.labels", out)
    if not [p for p in out if p[0].startswith("metadata.labels")]:
        check_labels(meta.get("labels"), "metadata.labels", out)
    _str_map(meta.get("annotations"), "metadata.annotations", out)


def _check_pod_spec(spec: Mapping[str, Any], path: str, out: Problems) -> None:
    containers = _list(spec.get("containers"), join(path, "containers"), out)
    if not containers and "containers" not in spec:
        out.append((join(path, "containers"), "required"))
    elif not containers:
        out.append((join(path, "containers"), "must have at least one container"))
    names: set[str] = set()  # unique across init containers and containers
    inits = _list(spec.get("initContainers"), join(path, "initContainers"), out)
    _check_containers(inits, join(path, "initContainers"), names, out)
    _check_containers(containers, join(path, "containers"), names, out)
    grace = spec.get("terminationGracePeriodSeconds")
    _count(grace, join(path, "terminationGracePeriodSeconds"), out)
    _pod_spec_fields(spec, path, out)


def _check_containers(containers: list[Any], path: str, names: set[str], out: Problems) -> None:
    for i, raw in enumerate(containers):
        where = index(path, i)
        c = _obj(raw, where, out)
        name = c.get("name")
        if not name:
            out.append((join(where, "name"), "required"))
        elif not isinstance(name, str) or dns_label_problem(name):
            out.append((join(where, "name"), f"{name!r} is not a valid DNS label"))
        elif name in names:
            out.append((join(where, "name"), f"duplicate container name {name!r}"))
        else:
            names.add(name)
        for field in ("image", "workingDir"):
            _string(c.get(field), join(where, field), out)
        for field in ("command", "args"):
            for j, arg in enumerate(_list(c.get(field), join(where, field), out)):
                if not isinstance(arg, str):
                    out.append(
                        (index(join(where, field), j), f"must be a string, got {type_name(arg)}")
                    )
        for j, env in enumerate(_list(c.get("env"), join(where, "env"), out)):
            e = _obj(env, index(join(where, "env"), j), out)
            if not e.get("name"):
                out.append((join(index(join(where, "env"), j), "name"), "required"))
            value = e.get("value")
            if value is not None and not isinstance(value, str):
                out.append(
                    (
                        join(index(join(where, "env"), j), "value"),
                        f"must be a string, got {type_name(value)}",
                    )
                )
        for j, p in enumerate(_list(c.get("ports"), join(where, "ports"), out)):
            pw = index(join(where, "ports"), j)
            _port(_obj(p, pw, out).get("containerPort"), join(pw, "containerPort"), out)
        for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = _obj(c.get(probe_name), join(where, probe_name), out)
            http_get = _obj(probe.get("httpGet"), join(join(where, probe_name), "httpGet"), out)
            if probe.get("httpGet") is not None:
                port = http_get.get("port")
                if port is None:
                    out.append((join(join(join(where, probe_name), "httpGet"), "port"), "required"))
                _int_or_name_port(port, join(join(join(where, probe_name), "httpGet"), "port"), out)


def _pod_spec_fields(spec: Mapping[str, Any], path: str, out: Problems) -> None:
    _bool(spec.get("hostNetwork"), join(path, "hostNetwork"), out)
    restart = spec.get("restartPolicy")
    if restart is not None and restart not in ("Always", "OnFailure", "Never"):
        out.append(
            (join(path, "restartPolicy"), f"must be Always, OnFailure or Never, got {restart!r}")
        )
    for field in ("hostname", "subdomain"):
        value = spec.get(field)
        if value is not None and (not isinstance(value, str) or dns_label_problem(value)):
            out.append((join(path, field), f"{value!r} is not a valid DNS label"))
    sa = spec.get("serviceAccountName")
    if sa is not None and (not isinstance(sa, str) or dns_subdomain_problem(sa)):
        out.append((join(path, "serviceAccountName"), f"{sa!r} is not a valid name"))


def check_pod(doc: Doc) -> Problems:
    out: Problems = []
    spec = _obj(doc.get("spec"), "spec", out)
    if doc.get("spec") is None:
        out.append(("spec", "required"))
        return out
    _check_pod_spec(spec, "spec", out)
    return out


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _count(value: Any, path: str, out: Problems) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        out.append((path, f"must be a non-negative integer, got {value!r}"))


def check_controller(kind: str) -> Callable[[Doc], Problems]:
    """A Deployment, ReplicaSet, StatefulSet, DaemonSet or Job."""

    def check(doc: Doc) -> Problems:
        out = _check_template_owner(doc, selector_required=kind != "Job")
        spec = _mapping(doc.get("spec"))
        for field in ("replicas", "completions", "parallelism", "backoffLimit"):
            _count(spec.get(field), f"spec.{field}", out)
        _string(spec.get("serviceName"), "spec.serviceName", out)
        policy = spec.get("podManagementPolicy")
        if policy is not None and policy not in ("OrderedReady", "Parallel"):
            out.append(
                ("spec.podManagementPolicy", f"must be OrderedReady or Parallel, got {policy!r}")
            )
        pod = _mapping(_mapping(spec.get("template")).get("spec"))
        restart = pod.get("restartPolicy", "Always" if kind != "Job" else None)
        allowed = ("OnFailure", "Never") if kind == "Job" else ("Always",)
        if restart not in allowed:
            out.append(
                (
                    "spec.template.spec.restartPolicy",
                    f"{kind} pods need {' or '.join(allowed)}, got {restart!r}",
                )
            )
        return out

    return check


def _check_template_owner(doc: Doc, *, selector_required: bool) -> Problems:
    out: Problems = []
    if doc.get("spec") is None:
        return [("spec", "required")]
    spec = _obj(doc.get("spec"), "spec", out)
    selector = _obj(spec.get("selector"), "spec.selector", out)
    match_labels = _obj(selector.get("matchLabels"), "spec.selector.matchLabels", out)
    if selector_required and not match_labels and not selector.get("matchExpressions"):
        out.append(("spec.selector", "required: set matchLabels to the pod template's labels"))
    check_labels(match_labels, "spec.selector.matchLabels", out)
    template = _obj(spec.get("template"), "spec.template", out)
    tmeta = _obj(template.get("metadata"), "spec.template.metadata", out)
    labels = _obj(tmeta.get("labels"), "spec.template.metadata.labels", out)
    _str_map(labels, "spec.template.metadata.labels", out)
    _str_map(tmeta.get("annotations"), "spec.template.metadata.annotations", out)
    for k, v in match_labels.items():
        if labels.get(k) != v:
            out.append(
                (
                    "spec.selector.matchLabels",
                    f"selector {k}={v} does not match the template labels",
                )
            )
            break
    if spec.get("template") is None:
        out.append(("spec.template", "required"))
    else:
        _check_pod_spec(
            _obj(template.get("spec"), "spec.template.spec", out), "spec.template.spec", out
        )
    return out


def check_service(doc: Doc) -> Problems:
    out: Problems = []
    spec = _obj(doc.get("spec"), "spec", out)
    svc_type = spec.get("type", "ClusterIP")
    if svc_type not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        out.append(
            (
                "spec.type",
                f"must be one of ClusterIP, NodePort, LoadBalancer, ExternalName; got {svc_type!r}",
            )
        )
    ports = _list(spec.get("ports"), "spec.ports", out)
    if not ports and svc_type != "ExternalName" and spec.get("clusterIP") != "None":
        out.append(("spec.ports", "at least one port is required"))
    names: set[str] = set()
    for i, raw in enumerate(ports):
        where = index("spec.ports", i)
        p = _obj(raw, where, out)
        _port(p.get("port"), join(where, "port"), out)
        _int_or_name_port(p.get("targetPort"), join(where, "targetPort"), out)
        name = p.get("name")
        if name:
            if not isinstance(name, str) or dns_label_problem(name):
                out.append((join(where, "name"), f"{name!r} is not a valid DNS label"))
            elif name in names:
                out.append((join(where, "name"), f"duplicate port name {name!r}"))
            names.add(str(name))
        elif len(ports) > 1:
            out.append((join(where, "name"), "required when a Service has more than one port"))
        _string(p.get("appProtocol"), join(where, "appProtocol"), out)
        protocol = p.get("protocol", "TCP")
        if protocol not in ("TCP", "UDP", "SCTP"):
            out.append((join(where, "protocol"), f"must be TCP, UDP or SCTP, got {protocol!r}"))
    _str_map(spec.get("selector"), "spec.selector", out)
    for field in ("clusterIP", "externalName"):
        _string(spec.get(field), join("spec", field), out)
    if svc_type == "ExternalName" and not spec.get("externalName"):
        out.append(("spec.externalName", "required for type ExternalName"))
    return out


def check_secret(doc: Doc) -> Problems:
    out: Problems = []
    for k, v in _obj(doc.get("data"), "data", out).items():
        if not isinstance(v, str):
            out.append((key("data", str(k)), f"must be a base64 string, got {type_name(v)}"))
            continue
        try:
            base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            out.append((key("data", str(k)), "must be base64 encoded"))
    _str_map(doc.get("stringData"), "stringData", out)
    return out


def check_config_map(doc: Doc) -> Problems:
    out: Problems = []
    for k, v in _obj(doc.get("data"), "data", out).items():
        if not isinstance(v, str):
            out.append((key("data", str(k)), f"must be a string, got {type_name(v)}"))
    for k, v in _obj(doc.get("binaryData"), "binaryData", out).items():
        try:
            base64.b64decode(v if isinstance(v, str) else b"!", validate=True)
        except (binascii.Error, ValueError):
            out.append((key("binaryData", str(k)), "must be base64 encoded"))
    return out


def check_nothing(doc: Doc) -> Problems:
    return []


CHECKS: Mapping[str, Callable[[Doc], Problems]] = {
    "Namespace": check_nothing,
    "ServiceAccount": check_nothing,
    "Secret": check_secret,
    "Service": check_service,
    "Pod": check_pod,
    "ConfigMap": check_config_map,
    **{
        kind: check_controller(kind)
        for kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job")
    },
}
