"""Legacy authentication policy (``authentication.istio.io/v1alpha1``) to
its modern equivalent, PeerAuthentication (``security.istio.io/v1``).

Pure: Services in, PeerAuthentications and notes for the user out. The
mapping follows what the legacy policy meant in Istio 1.x:

- MeshPolicy -> PeerAuthentication ``default`` in the root namespace,
  without a selector (mesh-wide);
- Policy without targets -> a namespace-wide PeerAuthentication of the same
  name in the same namespace;
- Policy with targets -> per target Service, a PeerAuthentication named
  ``<policy>-<service>`` selecting the Service's pods (its ``selector``).
  Legacy ``ports`` name *Service* ports, PeerAuthentication's
  ``portLevelMtls`` keys *workload* ports: each Service port becomes its
  ``targetPort``, and the workload-level mode stays UNSET so that the other
  ports keep inheriting, as they did.

What cannot be mapped (a missing Service, one without selector, a port the
Service does not have, a named targetPort that only pods could resolve)
becomes a note, never a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from mizzen.api.resources import (
    LegacyAuthenticationPolicy,
    MtlsMode,
    ObjectMeta,
    PeerAuthentication,
    Service,
)

__all__ = ["modern_yaml", "to_peer_authentications"]

API_VERSION = "security.istio.io/v1"


def to_peer_authentications(
    policy: LegacyAuthenticationPolicy,
    services: Sequence[Service],
    root_namespace: str = "istio-system",
) -> tuple[tuple[PeerAuthentication, ...], tuple[str, ...]]:
    """The PeerAuthentications equivalent to ``policy``, and notes on what
    could not be carried over (full sentences, meant for the user)."""
    if policy.kind == "MeshPolicy":
        meta = ObjectMeta("default", root_namespace)
        return (PeerAuthentication(meta, mode=policy.mode),), ()
    if not policy.targets:
        meta = ObjectMeta(policy.meta.name, policy.meta.namespace)
        return (PeerAuthentication(meta, mode=policy.mode),), ()
    return _targeted(policy, services)


@dataclass
class _Workload:
    """What the targets naming one Service add up to."""

    service: Service
    whole: bool = False  # some target names the Service without ports
    ports: dict[int, MtlsMode] = field(default_factory=dict)


def _targeted(
    policy: LegacyAuthenticationPolicy, services: Sequence[Service]
) -> tuple[tuple[PeerAuthentication, ...], tuple[str, ...]]:
    ns = policy.meta.namespace
    where = f"Policy {ns}/{policy.meta.name}"
    by_name = {s.meta.name: s for s in services if s.meta.namespace == ns}
    notes: list[str] = []
    # Targets naming the same Service merge into one PeerAuthentication.
    workloads: dict[str, _Workload] = {}
    for target in policy.targets:
        service = by_name.get(target.name)
        if service is None:
            notes.append(
                f"{where} targets Service {ns}/{target.name}, which does not exist; no"
                " PeerAuthentication was made for it. Create the Service or remove the target."
            )
            continue
        if not service.selector:
            notes.append(
                f"{where} targets Service {ns}/{target.name}, which has no selector, so its"
                " workloads cannot be told apart; no PeerAuthentication was made for it. Write"
                " a PeerAuthentication with a selector matching those workloads' labels."
            )
            continue
        workload = workloads.setdefault(target.name, _Workload(service))
        if not target.ports:
            workload.whole = True
        for ref in target.ports:
            port = _resolve_port(service, ref, where, notes)
            if port is not None:
                workload.ports[port] = policy.mode
    out = []
    for name, workload in workloads.items():
        if not workload.whole and not workload.ports:
            notes.append(
                f"{where}: none of the ports listed for Service {ns}/{name} could be mapped to"
                " a workload port, so no PeerAuthentication was made for it."
            )
            continue
        out.append(
            PeerAuthentication(
                ObjectMeta(f"{policy.meta.name}-{name}", ns),
                selector=dict(workload.service.selector or {}),
                mode=policy.mode if workload.whole else "UNSET",
                port_level_mtls=workload.ports,
            )
        )
    return tuple(out), tuple(notes)


def _resolve_port(service: Service, ref: int | str, where: str, notes: list[str]) -> int | None:
    """The workload port behind Service port ``ref`` (number or name)."""
    found = workload_port(service, ref)
    if isinstance(found, int):
        return found
    if "named container port" in found:
        notes.append(
            f"{where} {found}, so that port was left out. Add portLevelMtls for that"
            " container port number by hand."
        )
    else:
        notes.append(f"{where} {found}; that port was left out.")
    return None


def workload_port(service: Service, ref: int | str) -> int | str:
    """The workload port behind Service port ``ref`` (number or name), or
    why it cannot be known, as a sentence part ("targets port ...")."""
    svc = f"{service.meta.namespace}/{service.meta.name}"
    port = next(
        (p for p in service.ports if (p.port if isinstance(ref, int) else p.name) == ref), None
    )
    if port is None:
        listed = ", ".join(str(p.port) + (f" ({p.name})" if p.name else "") for p in service.ports)
        what = f"port {ref}" if isinstance(ref, int) else f"port named {ref!r}"
        return (
            f"targets {what} of Service {svc}, which has no such port (it has: {listed or 'none'})"
        )
    target = port.port if port.target_port is None else port.target_port
    if isinstance(target, str):
        return (
            f"targets port {port.port} of Service {svc}, whose targetPort is the named"
            f" container port {target!r}; its number is known only from the pods"
        )
    return target


def modern_yaml(pas: Sequence[PeerAuthentication]) -> str:
    """``pas`` as security.istio.io/v1 YAML, one document each."""
    return "---\n".join(
        yaml.safe_dump(_document(pa), sort_keys=False, default_flow_style=False) for pa in pas
    )


def _document(pa: PeerAuthentication) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if pa.selector:
        spec["selector"] = {"matchLabels": dict(pa.selector)}
    if pa.mode != "UNSET":
        spec["mtls"] = {"mode": pa.mode}
    if pa.port_level_mtls:
        spec["portLevelMtls"] = {
            port: {"mode": mode} for port, mode in sorted(pa.port_level_mtls.items())
        }
    return {
        "apiVersion": API_VERSION,
        "kind": "PeerAuthentication",
        "metadata": {"name": pa.meta.name, "namespace": pa.meta.namespace},
        "spec": spec,
    }
