"""What ``apply`` tells the user beyond accepted and refused: how a legacy
policy reads today, and settings that are accepted but not acted on.

Pure: the applied resources and the whole store in, sentences out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from mizzen.api.meshconfig import MeshConfig
from mizzen.api.parse import resource_label
from mizzen.api.resources import (
    DestinationRule,
    LegacyAuthenticationPolicy,
    Resource,
    Service,
    TrafficPolicy,
)
from mizzen.model.legacy_authn import modern_yaml, to_peer_authentications

_NOT_BUILT_TLS = ("SIMPLE", "MUTUAL")


def apply_notes(
    applied: Sequence[Resource], stored: Sequence[Resource], mesh: MeshConfig
) -> list[str]:
    services = [r.obj for r in stored if isinstance(r.obj, Service)]
    notes: list[str] = []
    for r in applied:
        if isinstance(r.obj, LegacyAuthenticationPolicy):
            notes.extend(_legacy(r, r.obj, services, mesh.root_namespace))
        elif isinstance(r.obj, DestinationRule):
            notes.extend(_origination(r, r.obj))
    return notes


def _label(r: Resource) -> str:
    return f"{r.source}: {resource_label(r.gvk.kind, r.meta.namespace, r.meta.name)}"


def _legacy(
    r: Resource, policy: LegacyAuthenticationPolicy, services: Sequence[Service], root: str
) -> list[str]:
    equivalents, notes = to_peer_authentications(policy, services, root)
    out = [f"{_label(r)}: {note}" for note in notes]
    if equivalents:
        out.append(
            f"{_label(r)}: enforced as this PeerAuthentication; write it instead:\n"
            + modern_yaml(equivalents).rstrip()
        )
    return out


def _tls_settings(rule: DestinationRule) -> Iterator[tuple[str, Mapping[str, Any]]]:
    policies: list[tuple[str, TrafficPolicy | None]] = [("spec.trafficPolicy", rule.traffic_policy)]
    policies += [
        (f"spec.subsets[{i}].trafficPolicy", s.traffic_policy) for i, s in enumerate(rule.subsets)
    ]
    for path, policy in policies:
        if policy is None:
            continue
        if policy.tls is not None:
            yield f"{path}.tls", policy.tls
        for i, settings in enumerate(policy.port_level_settings):
            if settings.get("tls") is not None:
                yield f"{path}.portLevelSettings[{i}].tls", settings["tls"]


def _origination(r: Resource, rule: DestinationRule) -> list[str]:
    return [
        f"{_label(r)}: {path}.mode: {tls.get('mode')} (TLS origination with your own "
        "certificates) is not built yet: this traffic is sent without TLS; use "
        "ISTIO_MUTUAL inside the mesh"
        for path, tls in _tls_settings(rule)
        if tls.get("mode") in _NOT_BUILT_TLS
    ]
