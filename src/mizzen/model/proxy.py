"""The ``Proxy`` model, parsed from what an Envoy tells the xDS server about
itself: its node id and node metadata, in Istio's formats.

Node id: ``<type>~<ip>~<pod>.<namespace>~<namespace>.svc.<suffix>``, with
type ``sidecar`` or ``router``. Metadata keys are Istio's: ``NAME``,
``NAMESPACE``, ``INSTANCE_IPS`` (comma-separated), ``LABELS``,
``ANNOTATIONS``, ``SERVICE_ACCOUNT`` and ``POD_PORTS`` (a JSON array of
Kubernetes ContainerPorts). Metadata wins over the id; the id fills gaps, so
a bare Envoy with only a node id still gets a usable ``Proxy``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from mizzen.api.resources import ContainerPort
from mizzen.model.snapshot import DEFAULT_DOMAIN_SUFFIX, Proxy

__all__ = ["ProxyType", "node_id_for", "node_metadata_for", "parse_node_id", "proxy_from_node"]

ProxyType = Literal["sidecar", "router"]

_TYPES: tuple[ProxyType, ...] = ("sidecar", "router")


def node_id_for(
    type: ProxyType,
    ip: str,
    pod: str,
    namespace: str,
    suffix: str = DEFAULT_DOMAIN_SUFFIX,
) -> str:
    return f"{type}~{ip}~{pod}.{namespace}~{namespace}.svc.{suffix}"


def node_metadata_for(
    *,
    name: str,
    namespace: str,
    ips: Iterable[str],
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    service_account: str = "default",
    ports: Iterable[ContainerPort] = (),
) -> dict[str, Any]:
    """Node metadata in Istio's keys, ready for an Envoy bootstrap."""
    return {
        "NAME": name,
        "NAMESPACE": namespace,
        "INSTANCE_IPS": ",".join(ips),
        "LABELS": dict(labels or {}),
        "ANNOTATIONS": dict(annotations or {}),
        "SERVICE_ACCOUNT": service_account,
        "POD_PORTS": json.dumps([_port_json(p) for p in ports], separators=(",", ":")),
    }


def proxy_from_node(node_id: str, metadata: Mapping[str, Any]) -> Proxy:
    """Raises ``ValueError`` naming the problem when the id or the metadata
    cannot describe a proxy."""
    proxy_type, id_ip, id_pod, id_namespace = parse_node_id(node_id)
    name = _str(metadata, "NAME") or id_pod
    namespace = _str(metadata, "NAMESPACE") or id_namespace
    ips = [ip.strip() for ip in _str(metadata, "INSTANCE_IPS").split(",") if ip.strip()]
    ip = id_ip or (ips[0] if ips else "")
    if not (name and namespace and ip):
        raise ValueError(
            f"node {node_id!r}: pod name, namespace and IP are required "
            "(from the node id or the NAME, NAMESPACE, INSTANCE_IPS metadata)"
        )
    return Proxy(
        id=node_id,
        type=proxy_type,
        ip=ip,
        name=name,
        namespace=namespace,
        labels=_str_map(metadata, "LABELS"),
        annotations=_str_map(metadata, "ANNOTATIONS"),
        service_account=_str(metadata, "SERVICE_ACCOUNT") or "default",
        ports=_pod_ports(node_id, metadata.get("POD_PORTS")),
    )


def parse_node_id(node_id: str) -> tuple[ProxyType, str, str, str]:
    """(type, ip, pod, namespace); pod and namespace may be "" when the id
    leaves them out, for metadata to supply."""
    parts = node_id.split("~")
    if len(parts) != 4:
        raise ValueError(
            f"malformed node id {node_id!r}: expected 'TYPE~IP~POD.NAMESPACE~DOMAIN' "
            f"(4 parts separated by '~', got {len(parts)})"
        )
    raw_type, ip, workload, domain = parts
    if raw_type not in _TYPES:
        raise ValueError(
            f"malformed node id {node_id!r}: type {raw_type!r} is not one of {', '.join(_TYPES)}"
        )
    # Namespaces are DNS labels (no dots); pod names may contain dots, so the
    # namespace is what follows the last dot.
    pod, _, namespace = workload.rpartition(".")
    if not pod:
        pod, namespace = workload, ""
    namespace = namespace or domain.split(".", 1)[0]
    return raw_type, ip, pod, namespace


def _port_json(port: ContainerPort) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if port.name:
        out["name"] = port.name
    out["containerPort"] = port.container_port
    out["protocol"] = port.protocol
    return out


def _pod_ports(node_id: str, raw: object) -> tuple[int, ...]:
    if raw is None or raw == "":
        return ()
    try:
        items = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(items, list):
            raise TypeError("not a list")
        numbers = (int(item["containerPort"]) for item in items)
        return tuple(dict.fromkeys(numbers))
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(
            f"node {node_id!r}: POD_PORTS must be a JSON list of "
            f"{{'containerPort': N, ...}} objects: {err}"
        ) from err


def _str(metadata: Mapping[str, Any], key: str) -> str:
    value = metadata.get(key)
    return value if isinstance(value, str) else ""


def _str_map(metadata: Mapping[str, Any], key: str) -> dict[str, str]:
    value = metadata.get(key)
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}
