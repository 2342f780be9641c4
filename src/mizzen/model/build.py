"""Build the immutable ``MeshSnapshot`` of one push from the accepted
resources and the runtime's facts (pod addresses, service VIPs).

Pure: same inputs, same snapshot. Every index keeps resource order (the
order the config store first saw each object), which stands in for
Kubernetes creation time: Istio lets the oldest VirtualService win when
several bind the same host to the mesh.

Host names in VirtualService ``hosts`` and DestinationRule ``host`` are
resolved to FQDNs relative to the namespace of the resource that names them:

* a ServiceEntry host, or any name with a dot, is taken as written;
* ``reviews`` -> ``reviews.<ns>.svc.<suffix>`` (see ``mizzen.model.hosts``);
* a wildcard (``*``, ``*.example.com``) is indexed under every known service
  hostname it covers, after the exact-host matches for that hostname, most
  specific wildcard first, so that translation can take the first entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from mizzen.api.meshconfig import MeshConfig
from mizzen.api.resources import (
    AuthorizationPolicy,
    DestinationRule,
    Gateway,
    LegacyAuthenticationPolicy,
    MixerListChecker,
    MixerListEntry,
    MixerRule,
    PeerAuthentication,
    RequestAuthentication,
    Resource,
    Service,
    ServiceEntry,
    VirtualService,
)
from mizzen.ca.identity import spiffe_id
from mizzen.model.hosts import qualify_host
from mizzen.model.legacy_authn import to_peer_authentications
from mizzen.model.legacy_mixer import MixerTranslation, translate_mixer
from mizzen.model.legacy_origins import origins_to_modern
from mizzen.model.snapshot import (
    DEFAULT_DOMAIN_SUFFIX,
    Endpoint,
    MeshService,
    MeshSnapshot,
    Workload,
)
from mizzen.registry.endpoints import service_endpoints, workloads
from mizzen.registry.labels import selector_matches
from mizzen.registry.pods import PodPlan, plan_pods
from mizzen.registry.services import mesh_services

__all__ = [
    "build_snapshot",
    "gateway_key",
    "host_matches",
    "is_wildcard",
    "resolve_host",
]

MESH_GATEWAY = "mesh"

T = TypeVar("T", VirtualService, DestinationRule)
K = TypeVar("K")


def build_snapshot(
    resources: Sequence[Resource],
    pod_ips: Mapping[tuple[str, str], str],
    vips: Mapping[str, str],
    version: str,
    domain_suffix: str = DEFAULT_DOMAIN_SUFFIX,
    mesh: MeshConfig | None = None,
) -> MeshSnapshot:
    mesh = mesh or MeshConfig()
    services = mesh_services(resources, vips, domain_suffix)
    plans = plan_pods(resources)
    pods = workloads(plans, pod_ips)
    virtual_services = _objects(resources, VirtualService)
    destination_rules = _objects(resources, DestinationRule)
    se_hosts = frozenset(
        host for r in resources if isinstance(r.obj, ServiceEntry) for host in r.obj.hosts
    )
    known = tuple(services)
    policies, authentications = security_policies(resources, plans, mesh)
    return MeshSnapshot(
        version=version,
        services=services,
        endpoints=indexed_endpoints(resources, services, pods),
        workloads=pods,
        virtual_services=virtual_services,
        destination_rules=destination_rules,
        gateways=_objects(resources, Gateway),
        domain_suffix=domain_suffix,
        mesh_vs_by_host=_index_by_host(
            [(vs, vs.meta.namespace, vs.hosts) for vs in virtual_services if _binds_mesh(vs)],
            known,
            se_hosts,
            domain_suffix,
        ),
        vs_by_gateway=_vs_by_gateway(virtual_services),
        dr_by_host=_index_by_host(
            [(dr, dr.meta.namespace, (dr.host,)) for dr in destination_rules],
            known,
            se_hosts,
            domain_suffix,
        ),
        peer_authentications=peer_authentications(resources, mesh.root_namespace),
        authorization_policies=policies,
        request_authentications=authentications,
        ext_authz_providers=mesh.ext_authz,
        root_namespace=mesh.root_namespace,
        trust_domain=mesh.trust_domain,
        auto_mtls=mesh.enable_auto_mtls,
        protocol_detection_timeout=mesh.protocol_detection_timeout,
        h2_upgrade=mesh.h2_upgrade_policy == "UPGRADE",
        service_accounts=service_identities(resources, services, plans, mesh.trust_domain),
    )


def peer_authentications(
    resources: Sequence[Resource], root_namespace: str
) -> tuple[PeerAuthentication, ...]:
    """PeerAuthentications in apply order, each legacy MeshPolicy or Policy
    replaced in place by its modern equivalents."""
    kube_services = _objects(resources, Service)
    out: list[PeerAuthentication] = []
    for r in resources:
        if isinstance(r.obj, PeerAuthentication):
            out.append(r.obj)
        elif isinstance(r.obj, LegacyAuthenticationPolicy):
            converted, _notes = to_peer_authentications(r.obj, kube_services, root_namespace)
            out.extend(converted)
    return tuple(out)


def mixer_translations(
    resources: Sequence[Resource], plans: Sequence[PodPlan], mesh: MeshConfig
) -> tuple[MixerTranslation, ...]:
    """What every Mixer ``rule`` (seed 004's whitelists) means today."""
    return translate_mixer(
        _objects(resources, MixerListChecker),
        _objects(resources, MixerListEntry),
        _objects(resources, MixerRule),
        plans,
        trust_domain=mesh.trust_domain,
        root_namespace=mesh.root_namespace,
    )


def _origins(
    resources: Sequence[Resource], root_namespace: str
) -> dict[int, tuple[RequestAuthentication | AuthorizationPolicy, ...]]:
    """id(legacy policy) -> the modern resources its ``origins`` became."""
    services = _objects(resources, Service)
    out = {}
    for r in resources:
        if isinstance(r.obj, LegacyAuthenticationPolicy) and r.obj.origins:
            out[id(r.obj)] = origins_to_modern(r.obj, services, root_namespace)[0]
    return out


def security_policies(
    resources: Sequence[Resource], plans: Sequence[PodPlan], mesh: MeshConfig
) -> tuple[tuple[AuthorizationPolicy, ...], tuple[RequestAuthentication, ...]]:
    """AuthorizationPolicies and RequestAuthentications in apply order, each
    Mixer rule and legacy JWT origin replaced in place by its modern
    equivalents."""
    translated: dict[int, tuple[AuthorizationPolicy | RequestAuthentication, ...]] = {
        id(t.rule): t.policies for t in mixer_translations(resources, plans, mesh)
    }
    translated.update(_origins(resources, mesh.root_namespace))
    policies: list[AuthorizationPolicy] = []
    authentications: list[RequestAuthentication] = []
    for r in resources:
        for obj in translated.get(id(r.obj), (r.obj,)):
            if isinstance(obj, AuthorizationPolicy):
                policies.append(obj)
            elif isinstance(obj, RequestAuthentication):
                authentications.append(obj)
    return tuple(policies), tuple(authentications)


def service_identities(
    resources: Sequence[Resource],
    services: Mapping[str, MeshService],
    plans: Sequence[PodPlan],
    trust_domain: str,
) -> dict[str, tuple[str, ...]]:
    """hostname -> sorted SPIFFE identities of the workloads behind it.

    Every planned pod counts, ready or not, so that readiness changes never
    touch the clusters that verify these names. A ServiceEntry adds its own
    ``subjectAltNames`` and its endpoints' service accounts."""
    by_label: dict[tuple[str, str, str], list[PodPlan]] = {}
    for plan in plans:
        for key, value in plan.labels.items():
            by_label.setdefault((plan.namespace, key, value), []).append(plan)
    entries = {
        (r.meta.namespace, r.meta.name): r.obj for r in resources if isinstance(r.obj, ServiceEntry)
    }
    out: dict[str, tuple[str, ...]] = {}
    for hostname, service in services.items():
        names: set[str] = set()
        selector = service.selector
        entry = None
        if service.origin == "serviceentry":
            entry = entries.get((service.namespace, service.name))
            selector = entry.workload_selector if entry is not None else None
        if selector:
            first = next(iter(selector.items()))
            for plan in by_label.get((service.namespace, *first), ()):
                if selector_matches(selector, plan.labels):
                    names.add(_identity(service.namespace, plan.service_account, trust_domain))
        if entry is not None:
            names.update(entry.subject_alt_names)
            names.update(
                _identity(service.namespace, e.service_account, trust_domain)
                for e in entry.endpoints
                if e.service_account
            )
        if names:
            out[hostname] = tuple(sorted(names))
    return out


def _identity(namespace: str, service_account: str, trust_domain: str) -> str:
    return str(spiffe_id(namespace, service_account, trust_domain))


def indexed_endpoints(
    resources: Sequence[Resource],
    services: Mapping[str, MeshService],
    pods: Sequence[Workload],
) -> dict[tuple[str, int], tuple[Endpoint, ...]]:
    """``service_endpoints`` with the pods each service can select looked up
    in an index instead of scanned: the registry still decides, but for
    every service it sees only the pods of its namespace (Kubernetes
    services: only those carrying the first pair of its selector), in their
    original order. Same result, O(pods + endpoints) instead of
    O(services x pods)."""
    own: dict[tuple[str, str, str], Resource] = {}
    for r in resources:
        if isinstance(r.obj, Service | ServiceEntry):
            # Later wins, as in service_endpoints' own lookup tables.
            own[(type(r.obj).__name__, r.meta.namespace, r.meta.name)] = r
    by_namespace: dict[str, list[Workload]] = {}
    by_label: dict[tuple[str, str, str], list[Workload]] = {}
    for pod in pods:
        by_namespace.setdefault(pod.namespace, []).append(pod)
        for key, value in pod.labels.items():
            by_label.setdefault((pod.namespace, key, value), []).append(pod)
    out: dict[tuple[str, int], tuple[Endpoint, ...]] = {}
    for hostname, service in services.items():
        candidates: Sequence[Workload]
        if service.origin == "kubernetes":
            found = own.get(("Service", service.namespace, service.name))
            first = next(iter(service.selector.items()), None) if service.selector else None
            candidates = () if first is None else by_label.get((service.namespace, *first), [])
        else:
            found = own.get(("ServiceEntry", service.namespace, service.name))
            candidates = by_namespace.get(service.namespace, [])
        mine = [found] if found is not None else []
        out.update(service_endpoints(mine, {hostname: service}, candidates))
    return out


def resolve_host(
    host: str,
    namespace: str,
    domain_suffix: str = DEFAULT_DOMAIN_SUFFIX,
    service_entry_hosts: Iterable[str] = (),
) -> str:
    """FQDN of a host named by a resource in ``namespace`` (rules above);
    wildcards are returned unchanged."""
    if host in service_entry_hosts:
        return host
    return qualify_host(host, namespace, domain_suffix)


def is_wildcard(host: str) -> bool:
    return host.startswith("*")


def host_matches(pattern: str, hostname: str) -> bool:
    """Whether ``pattern`` (exact or ``*``/``*.suffix``) covers ``hostname``.
    A wildcard hostname (a ServiceEntry's ``*.example.com``) is covered by an
    equal or wider wildcard."""
    if pattern == "*":
        return True
    if not is_wildcard(pattern):
        return pattern == hostname
    suffix = pattern[1:]  # ".example.com"
    if is_wildcard(hostname):
        return hostname[1:].endswith(suffix)
    return hostname.endswith(suffix) and len(hostname) > len(suffix)


def gateway_key(reference: str, namespace: str) -> str:
    """ "ns/name" of a Gateway referenced from a VirtualService in ``namespace``:
    ``name`` is relative to it, ``ns/name`` explicit, and the older
    ``name.ns[.svc...]`` form is still understood."""
    if "/" in reference:
        return reference
    if "." in reference:
        name, ns = reference.split(".")[:2]
        return f"{ns}/{name}"
    return f"{namespace}/{reference}"


def _objects(resources: Sequence[Resource], kind: type[K]) -> tuple[K, ...]:
    return tuple(r.obj for r in resources if isinstance(r.obj, kind))


def _binds_mesh(vs: VirtualService) -> bool:
    return not vs.gateways or MESH_GATEWAY in vs.gateways


def _vs_by_gateway(
    virtual_services: Sequence[VirtualService],
) -> dict[str, tuple[VirtualService, ...]]:
    index: dict[str, list[VirtualService]] = {}
    for vs in virtual_services:
        keys = dict.fromkeys(
            gateway_key(ref, vs.meta.namespace) for ref in vs.gateways if ref != MESH_GATEWAY
        )
        for key in keys:
            index.setdefault(key, []).append(vs)
    return {key: tuple(items) for key, items in index.items()}


def _index_by_host(
    entries: Sequence[tuple[T, str, tuple[str, ...]]],
    known: Sequence[str],
    se_hosts: frozenset[str],
    domain_suffix: str,
) -> dict[str, tuple[T, ...]]:
    """hostname -> objects naming it: exact names first (resource order), then
    wildcards covering it, narrowest first."""
    exact: dict[str, list[T]] = {}
    wild: dict[str, list[tuple[int, int, T]]] = {}
    for position, (obj, namespace, hosts) in enumerate(entries):
        resolved = (resolve_host(h, namespace, domain_suffix, se_hosts) for h in hosts)
        for hostname in dict.fromkeys(resolved):
            if not is_wildcard(hostname):
                _append_once(exact.setdefault(hostname, []), obj)
                continue
            for target in known:
                if target == hostname:  # a ServiceEntry's own wildcard host
                    _append_once(exact.setdefault(target, []), obj)
                elif host_matches(hostname, target):
                    wild.setdefault(target, []).append((-len(hostname), position, obj))
    index: dict[str, tuple[T, ...]] = {}
    for hostname in dict.fromkeys([*exact, *wild]):
        ordered = list(exact.get(hostname, []))
        for _, _, obj in sorted(wild.get(hostname, []), key=lambda item: item[:2]):
            _append_once(ordered, obj)
        index[hostname] = tuple(ordered)
    return index


def _append_once(items: list[T], obj: T) -> None:
    # Identity, not equality: two distinct but equal objects are both kept.
    if not any(existing is obj for existing in items):
        items.append(obj)
