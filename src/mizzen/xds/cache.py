"""Shared, serialized translation output: build once, send to many proxies.

``ConfigCache.config(snapshot, proxy)`` returns what
``build_resources(snapshot, proxy)`` would, serialized (a ``PreparedConfig``
for ``XdsServer``), but each part of it is built once per snapshot for all
proxies whose inputs to that part are equal, and the very same ``TypeConfig``
objects (bytes, digest, encoded payload) are handed to every such proxy.
Translation stays a pure function; the cache only decides when calling it
again would give the same answer. What each part reads of a sidecar:

==================  ==========================================================
part                proxy inputs (key)
==================  ==========================================================
outbound clusters   visibility: the namespace, only if some service has a
                    restrictive ``exportTo``
EDS                 visibility (as above)
inbound clusters,   "inbound key": namespace, labels, pod ports and the
virtualInbound      workload's named container ports (labels also pick the
                    workload's PeerAuthentication)
outbound listeners, namespace (short names, ``sourceNamespace``), labels only
routes              if some VirtualService match has ``sourceLabels``
fixed clusters,     proxy type
virtualOutbound
==================  ==========================================================

Routers (gateways, a handful) are built whole, keyed by everything they read.

Across snapshots, each part is carried over when none of the snapshot fields
it reads (``_DEPENDS``) changed, and each ClusterLoadAssignment is rebuilt
only when its endpoints changed. An endpoint change thus costs the changed
assignments and one (incremental) EDS response per proxy; a VirtualService
change rebuilds listeners and routes once per namespace and keeps clusters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

from mizzen.api.resources import VirtualService
from mizzen.model.snapshot import Endpoint, MeshSnapshot, Proxy, Workload
from mizzen.translate import CLUSTER, ENDPOINT, LISTENER, ROUTE, build_resources
from mizzen.translate.clusters import (
    fixed_clusters,
    inbound_clusters,
    outbound_cluster,
    outbound_clusters,
)
from mizzen.translate.endpoints import load_assignment
from mizzen.translate.listeners import (
    outbound_listeners,
    virtual_inbound_listener,
    virtual_outbound_listener,
)
from mizzen.translate.routes import build_routes
from mizzen.xds.protocol import PreparedConfig, TypeConfig

__all__ = ["ConfigCache", "changed_fields", "same_config"]

Bodies = dict[str, bytes]

# Snapshot fields that translation reads, apart from endpoints and workloads
# (workloads only through the inbound key, which holds what is read of them).
_CONFIG_FIELDS = (
    "services",
    "virtual_services",
    "destination_rules",
    "gateways",
    "domain_suffix",
    "mesh_vs_by_host",
    "vs_by_gateway",
    "dr_by_host",
    "peer_authentications",
    "root_namespace",
    "trust_domain",
    "auto_mtls",
    "service_accounts",
    "protocol_detection_timeout",
    "h2_upgrade",
    "authorization_policies",
    "request_authentications",
    "ext_authz_providers",
)


def _ser(messages: Iterable[Any], name: Callable[[Any], str]) -> Bodies:
    return {name(m): m.SerializeToString(deterministic=True) for m in messages}


def _by_name(m: Any) -> str:
    return str(m.name)


def _by_cluster_name(m: Any) -> str:
    return str(m.cluster_name)


def _frozen(mapping: Mapping[str, Any]) -> frozenset[tuple[str, Any]]:
    return frozenset(mapping.items())


def _cluster_endpoints(snapshot: MeshSnapshot) -> dict[tuple[str, int], tuple[Endpoint, ...]]:
    """Endpoints that clusters (not EDS) read: those of DNS services (their
    targets) and of headless ones (whether every pod has a sidecar)."""
    services = snapshot.services
    return {
        key: eps
        for key, eps in snapshot.endpoints.items()
        if (svc := services.get(key[0])) is not None and svc.resolution in ("DNS", "NONE")
    }


def _has_source_labels(vs: VirtualService) -> bool:
    return (
        any(m.source_labels for r in vs.http for m in r.match)
        or any(m.source_labels for r in vs.tcp for m in r.match)
        or any(m.source_labels for r in vs.tls for m in r.match)
    )


def changed_fields(old: MeshSnapshot, new: MeshSnapshot) -> frozenset[str]:
    """The config fields (and ``cluster_endpoints``) that differ between snapshots."""
    changed = {
        name
        for name in _CONFIG_FIELDS
        if (a := getattr(old, name)) is not (b := getattr(new, name)) and a != b
    }
    if _cluster_endpoints(old) != _cluster_endpoints(new):
        changed.add("cluster_endpoints")
    return frozenset(changed)


def same_config(old: MeshSnapshot, new: MeshSnapshot) -> bool:
    """Whether every translation output but EDS is the same for both snapshots."""
    return not changed_fields(old, new)


# What each part (and each composed type) reads of the snapshot, beyond the
# proxy inputs in its key; a part is carried over to the next snapshot when
# none of these changed. Anything not listed here is never carried over.
_ALL = frozenset(_CONFIG_FIELDS) | {"cluster_endpoints"}
# Peer authentication and identities: what upstream TLS (clusters) and the
# inbound chains' mTLS modes read.
_MTLS = frozenset({"peer_authentications", "root_namespace"})
_CLUSTERS = (
    frozenset({"services", "destination_rules", "dr_by_host", "domain_suffix", "h2_upgrade"})
    | {"cluster_endpoints", "auto_mtls", "service_accounts"}  # identities carry the trust domain
    | _MTLS
)
# Authorization: the RBAC, JWT and ext_authz filters of inbound chains
# (principals carry the trust domain).
_AUTHZ = frozenset(
    {"authorization_policies", "request_authentications", "ext_authz_providers", "trust_domain"}
)
_INBOUND = frozenset({"services", "domain_suffix", "protocol_detection_timeout"}) | _MTLS | _AUTHZ
_DEPENDS: dict[str, frozenset[str]] = {
    "cds-out": _CLUSTERS,  # visible services, DestinationRule subsets, DNS targets
    "cds-in": _INBOUND,  # services selecting the pod (+ the workload, in the key)
    "cds-fixed": frozenset(),
    "lds-out": _ALL,
    "lds-in": _INBOUND,
    CLUSTER: _CLUSTERS,
    LISTENER: _ALL,
    ROUTE: _ALL,
}


class _SnapshotCache:
    """Everything built for one snapshot, keyed by part and proxy inputs."""

    def __init__(self, snapshot: MeshSnapshot, previous: _SnapshotCache | None) -> None:
        self.snapshot = snapshot
        self.restricted = any(
            s.export_to and "*" not in s.export_to for s in snapshot.services.values()
        )
        self.sourced = any(_has_source_labels(vs) for vs in snapshot.virtual_services)
        self._workloads: dict[tuple[str, str], Workload] | None = None
        self.parts: dict[tuple[Any, ...], Bodies] = {}
        self.types: dict[tuple[Any, ...], TypeConfig] = {}
        self.configs: dict[Hashable, PreparedConfig] = {}
        # (cluster name, subset labels) -> (endpoints, serialized assignment);
        # valid across snapshots: the name fixes host and port.
        self.assignments: dict[Hashable, tuple[tuple[Endpoint, ...], bytes]] = {}
        self._previous_assignments: Mapping[Hashable, tuple[tuple[Endpoint, ...], bytes]] = {}
        self.changed: frozenset[str] = _ALL
        if previous is not None:
            # Read from, never written: clusters that are gone drop out.
            self._previous_assignments = previous.assignments
            self.changed = changed = changed_fields(previous.snapshot, snapshot)
            self.parts = {k: v for k, v in previous.parts.items() if _keeps(k[0], changed)}
            self.types = {k: v for k, v in previous.types.items() if _keeps(k[0], changed)}

    # -- keys ----------------------------------------------------------------

    @property
    def reused(self) -> bool:
        return not self.changed

    def workload(self, proxy: Proxy) -> Workload | None:
        if self._workloads is None:
            self._workloads = {}
            for w in self.snapshot.workloads:
                self._workloads.setdefault((w.namespace, w.name), w)
        return self._workloads.get((proxy.namespace, proxy.name))

    def inbound_key(self, proxy: Proxy) -> Hashable:
        workload = self.workload(proxy)
        ports = None if workload is None else _frozen(workload.container_ports)
        return (proxy.namespace, _frozen(proxy.labels), proxy.ports, ports)

    # -- parts -----------------------------------------------------------------

    def part(self, key: tuple[Any, ...], build: Callable[[], Bodies]) -> Bodies:
        found = self.parts.get(key)
        if found is None:
            found = self.parts[key] = build()
        return found

    def type_config(self, key: tuple[Any, ...], build: Callable[[], Bodies]) -> TypeConfig:
        found = self.types.get(key)
        if found is None:
            found = self.types[key] = TypeConfig(key[0], build())
        return found

    def inbound_view(self, proxy: Proxy) -> MeshSnapshot:
        """The snapshot as the inbound builders see it: they read only the
        proxy's own workload (``lookup.workload_of``), so the others are left
        out rather than scanned once per proxy."""
        workload = self.workload(proxy)
        return dataclasses.replace(self.snapshot, workloads=(workload,) if workload else ())

    def eds(self, proxy: Proxy) -> Bodies:
        out: Bodies = {}
        snapshot = self.snapshot
        for spec in outbound_clusters(snapshot, proxy):
            if spec.discovery != "EDS":
                continue
            endpoints = snapshot.endpoints_of(spec.service.hostname, spec.port.port)
            key = (spec.name, _frozen(spec.subset_labels))
            cached = self.assignments.get(key) or self._previous_assignments.get(key)
            if cached is None or (cached[0] is not endpoints and cached[0] != endpoints):
                body = load_assignment(snapshot, spec).SerializeToString(deterministic=True)
                cached = (endpoints, body)
            self.assignments[key] = cached
            out[spec.name] = cached[1]
        return out

    # -- a proxy's config -------------------------------------------------------

    def config(self, proxy: Proxy) -> PreparedConfig:
        if proxy.type != "sidecar":
            return self._router(proxy)
        visibility = proxy.namespace if self.restricted else ""
        labels = _frozen(proxy.labels) if self.sourced else None
        inbound = self.inbound_key(proxy)
        key = (visibility, proxy.namespace, labels, inbound)
        found = self.configs.get(key)
        if found is not None:
            return found
        snapshot = self.snapshot

        def clusters() -> Bodies:
            out = self.part(
                ("cds-out", visibility),
                lambda: _ser(
                    (outbound_cluster(snapshot, s) for s in outbound_clusters(snapshot, proxy)),
                    _by_name,
                ),
            )
            inb = self.part(
                ("cds-in", inbound),
                lambda: _ser(inbound_clusters(self.inbound_view(proxy), proxy), _by_name),
            )
            fixed = self.part(
                ("cds-fixed", proxy.type), lambda: _ser(fixed_clusters(proxy), _by_name)
            )
            return {**out, **inb, **fixed}

        def listeners() -> Bodies:
            out = self.part(
                ("lds-out", proxy.namespace, labels),
                lambda: _ser(
                    [virtual_outbound_listener(), *outbound_listeners(snapshot, proxy)], _by_name
                ),
            )
            inb = self.part(
                ("lds-in", inbound),
                lambda: _ser([virtual_inbound_listener(self.inbound_view(proxy), proxy)], _by_name),
            )
            return {**out, **inb}

        types = {
            CLUSTER: self.type_config((CLUSTER, visibility, inbound), clusters),
            ENDPOINT: self.type_config(
                (ENDPOINT, visibility),
                lambda: self.part(("eds", visibility), lambda: self.eds(proxy)),
            ),
            LISTENER: self.type_config((LISTENER, proxy.namespace, labels, inbound), listeners),
            ROUTE: self.type_config(
                (ROUTE, proxy.namespace, labels),
                lambda: _ser(build_routes(snapshot, proxy), _by_name),
            ),
        }
        found = self.configs[key] = PreparedConfig(types)
        return found

    def _router(self, proxy: Proxy) -> PreparedConfig:
        key = (
            "router",
            proxy.type,
            proxy.namespace,
            proxy.name,
            _frozen(proxy.labels),
            _frozen(proxy.annotations),
            proxy.ports,
        )
        found = self.configs.get(key)
        if found is None:
            resources = build_resources(self.snapshot, proxy)
            found = self.configs[key] = PreparedConfig(
                {t: TypeConfig(t, _ser_named(t, by_name)) for t, by_name in resources.items()}
            )
        return found


def _keeps(kind: str, changed: frozenset[str]) -> bool:
    depends = _DEPENDS.get(kind)
    return depends is not None and not depends & changed


def _ser_named(type_url: str, by_name: Mapping[str, Any]) -> Bodies:
    return {name: m.SerializeToString(deterministic=True) for name, m in by_name.items()}


class ConfigCache:
    """Memoizes the serialized output of translation per (snapshot, inputs).

    Use from one thread (the xDS server's loop). Holds the latest snapshot's
    parts only, plus what the next snapshot may reuse of them.
    """

    def __init__(self) -> None:
        self._current: _SnapshotCache | None = None

    def config(self, snapshot: MeshSnapshot, proxy: Proxy) -> PreparedConfig:
        """``build_resources(snapshot, proxy)``, serialized and shared."""
        return self._for(snapshot).config(proxy)

    def generator(self, snapshot: Callable[[], MeshSnapshot]) -> Callable[[Proxy], PreparedConfig]:
        """An ``XdsServer`` ``generate`` that reads the current snapshot."""
        return lambda proxy: self.config(snapshot(), proxy)

    def _for(self, snapshot: MeshSnapshot) -> _SnapshotCache:
        current = self._current
        if current is None or current.snapshot is not snapshot:
            current = self._current = _SnapshotCache(snapshot, current)
        return current

    @property
    def reused_config(self) -> bool:
        """Whether the current snapshot reuses every non-EDS part of the previous one."""
        return self._current is not None and self._current.reused

    @property
    def changed(self) -> frozenset[str]:
        """Snapshot fields that changed at the last new snapshot (all on the first)."""
        return _ALL if self._current is None else self._current.changed
