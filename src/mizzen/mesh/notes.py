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
    AuthorizationPolicy,
    DestinationRule,
    LegacyAuthenticationPolicy,
    MixerRule,
    RequestAuthentication,
    Resource,
    ResourceKey,
    Service,
    TrafficPolicy,
)
from mizzen.model.build import mixer_translations
from mizzen.model.legacy_authn import modern_yaml, to_peer_authentications
from mizzen.model.legacy_mixer import MixerTranslation, modern_documents
from mizzen.model.legacy_origins import origins_to_modern
from mizzen.model.snapshot import MeshSnapshot
from mizzen.registry.pods import plan_pods
from mizzen.registry.services import mesh_services
from mizzen.translate.ext_authz import provider_cluster
from mizzen.translate.jwt_authn import jwks_cluster

_NOT_BUILT_TLS = ("SIMPLE", "MUTUAL")


def apply_notes(
    applied: Sequence[Resource], stored: Sequence[Resource], mesh: MeshConfig
) -> list[str]:
    services = [r.obj for r in stored if isinstance(r.obj, Service)]
    notes: list[str] = []
    translations = {}
    if any(isinstance(r.obj, MixerRule) for r in applied):
        translations = {
            (t.rule.meta.namespace, t.rule.meta.name): t
            for t in mixer_translations(stored, plan_pods(stored), mesh)
        }
    registry: MeshSnapshot | None = None
    for r in applied:
        if isinstance(r.obj, LegacyAuthenticationPolicy):
            notes.extend(_legacy(r, r.obj, services, mesh.root_namespace))
            notes.extend(_origins(r, r.obj, services, mesh.root_namespace))
        elif isinstance(r.obj, MixerRule):
            found = translations.get((r.meta.namespace, r.meta.name))
            notes.extend(_mixer(r, found) if found is not None else [])
        elif isinstance(r.obj, DestinationRule):
            notes.extend(_origination(r, r.obj))
        elif isinstance(r.obj, AuthorizationPolicy | RequestAuthentication):
            # The services, built once and only when a policy needs them.
            registry = registry or MeshSnapshot("notes", mesh_services(stored, {}), {}, ())
            said = (
                _authorization(r.obj, mesh, registry)
                if isinstance(r.obj, AuthorizationPolicy)
                else _jwks(r.obj, registry)
            )
            notes.extend(f"{_label(r)}: {n}" for n in said)
    return notes


_NO_TARGET_REFS = (
    "targetRef(s) bind waypoints and Gateway API gateways, which the local runtime does not"
    " run, so this policy applies to no workload; select workloads with selector.matchLabels"
)


def _authorization(
    policy: AuthorizationPolicy, mesh: MeshConfig, registry: MeshSnapshot
) -> list[str]:
    if policy.target_refs:
        return [f"spec.targetRef: {_NO_TARGET_REFS}"]
    if policy.action != "CUSTOM":
        return []
    provider = mesh.ext_authz.get(policy.provider)
    declared = ", ".join(sorted(mesh.ext_authz)) or "none"
    if provider is None:
        kind = (
            "is not an ext_authz provider"
            if policy.provider in mesh.other_providers
            else ("is not declared")
        )
        return [
            f"spec.provider.name: {policy.provider!r} {kind} in the mesh config's"
            f" extensionProviders (ext_authz providers: {declared}), so what this policy's rules"
            " match is denied; declare it with envoyExtAuthzHttp or envoyExtAuthzGrpc"
        ]
    if provider_cluster(registry, provider) is None:
        return [
            f"spec.provider.name: provider {provider.name!r} names {provider.service} port"
            f" {provider.port}, which no Service or ServiceEntry serves yet; until one does,"
            " what this policy's rules match is denied"
        ]
    return []


def _jwks(ra: RequestAuthentication, registry: MeshSnapshot) -> list[str]:
    notes = []
    for i, rule in enumerate(ra.jwt_rules):
        where = f"spec.jwtRules[{i}]"
        if rule.jwks:
            continue
        if not rule.jwks_uri:
            notes.append(
                f"{where}: no jwks or jwksUri, and the issuer's OpenID discovery is not done"
                " by Mizzen: every token of this issuer is refused with 401; set jwksUri"
            )
        elif jwks_cluster(registry, rule.jwks_uri) is None:
            notes.append(
                f"{where}.jwksUri: no Service or ServiceEntry of the mesh serves"
                f" {rule.jwks_uri}, so the sidecars cannot fetch the keys: every token of"
                " this issuer is refused with 401 until one does (add a ServiceEntry for its"
                " host and port, or inline the keys with jwks)"
            )
        elif rule.jwks_uri.startswith("https:"):
            notes.append(
                f"{where}.jwksUri: fetched from the mesh's cluster for its host without TLS"
                " (TLS origination is not built yet): serve the keys over http inside the"
                " mesh, or inline them with jwks"
            )
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
