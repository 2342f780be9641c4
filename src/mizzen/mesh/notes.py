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
    MixerRule,
    Resource,
    ResourceKey,
    Service,
    TrafficPolicy,
)
from mizzen.model.build import mixer_translations
from mizzen.model.legacy_authn import modern_yaml, to_peer_authentications
from mizzen.model.legacy_mixer import MixerTranslation, modern_documents
from mizzen.model.legacy_origins import origins_to_modern
from mizzen.registry.pods import plan_pods

_NOT_BUILT_TLS = ("SIMPLE", "MUTUAL")


def apply_notes(
    applied: Sequence[Resource], stored: Sequence[Resource], mesh: MeshConfig
) -> list[str]:
    services = [r.obj for r in stored if isinstance(r.obj, Service)]
    notes: list[str] = []
    translations = {
        (t.rule.meta.namespace, t.rule.meta.name): t
        for t in mixer_translations(stored, plan_pods(stored), mesh)
    }
    for r in applied:
        if isinstance(r.obj, LegacyAuthenticationPolicy):
            notes.extend(_legacy(r, r.obj, services, mesh.root_namespace))
            notes.extend(_origins(r, r.obj, services, mesh.root_namespace))
        elif isinstance(r.obj, MixerRule):
            found = translations.get((r.meta.namespace, r.meta.name))
            notes.extend(_mixer(r, found) if found is not None else [])
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


def _origins(
    r: Resource, policy: LegacyAuthenticationPolicy, services: Sequence[Service], root: str
) -> list[str]:
    if not policy.origins:
        return []
    equivalents, notes = origins_to_modern(policy, services, root)
    out = [f"{_label(r)}: {note}" for note in notes]
    if equivalents:
        out.append(
            f"{_label(r)}: origins (end-user JWT) enforced as these; write them instead:\n"
            + modern_documents(equivalents).rstrip()
        )
    return out


def _mixer(r: Resource, translation: MixerTranslation) -> list[str]:
    out = [f"{_label(r)}: {note}" for note in translation.notes]
    if translation.policies:
        out.append(
            f"{_label(r)}: enforced as this AuthorizationPolicy; write it instead:\n"
            + modern_documents(translation.policies).rstrip()
        )
    return out


def mixer_refusals(
    applied: Sequence[Resource], stored: Sequence[Resource], mesh: MeshConfig
) -> dict[ResourceKey, str]:
    """Mixer rules of ``applied`` that cannot be enforced faithfully together
    with what is ``stored`` (the workloads they name share identities with
    others, say), by key, with the reason. Such a rule is refused whole."""
    rules = {id(r.obj): r for r in applied if isinstance(r.obj, MixerRule)}
    if not rules:
        return {}
    keys = {r.key for r in applied}
    merged = [r for r in stored if r.key not in keys] + list(applied)
    return {
        rules[id(t.rule)].key: t.refusal
        for t in mixer_translations(merged, plan_pods(merged), mesh)
        if t.refusal and id(t.rule) in rules
    }


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
