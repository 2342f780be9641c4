"""ConfigCache: the shared, serialized output equals translation's, is shared
exactly when the inputs are the same, and changes when they change."""

from __future__ import annotations

from dataclasses import fields as fields_of
from dataclasses import replace
from typing import Any

import pytest

from mizzen.api.resources import (
    Destination,
    Gateway,
    GatewayPort,
    GroupVersionKind,
    HTTPMatchRequest,
    HTTPRoute,
    HTTPRouteDestination,
    ObjectMeta,
    Resource,
    Server,
    Service,
    ServiceEntry,
    ServiceEntryPort,
    ServicePort,
    Source,
    Spec,
    VirtualService,
)
from mizzen.bench.cp_mesh import BenchMesh, bench_mesh, proxy_identities
from mizzen.model.build import build_snapshot, indexed_endpoints
from mizzen.model.proxy import proxy_from_node
from mizzen.model.snapshot import MeshSnapshot, Proxy
from mizzen.registry.endpoints import service_endpoints, workloads
from mizzen.registry.pods import plan_pods
from mizzen.registry.services import mesh_services
from mizzen.translate import CLUSTER, ENDPOINT, LISTENER, ROUTE, build_resources
from mizzen.xds import cache as cache_module
from mizzen.xds.cache import ConfigCache, changed_fields
from mizzen.xds.protocol import PreparedConfig, serialize

ISTIO = "networking.istio.io"


def _res(obj: Spec, group: str = "", version: str = "v1") -> Resource:
    return Resource(GroupVersionKind(group, version, type(obj).__name__), Source("t", 0), obj)


def _extras(source_labels: bool = True) -> list[Resource]:
    """Features that split or restrict sharing: exportTo, sourceLabels, a DNS
    ServiceEntry, a gateway with a VirtualService bound to it, and a port
    with no declared protocol (detected per connection)."""
    out = [
        _res(Service(ObjectMeta("undeclared", "ns-0"), (ServicePort(7000, ""),), {"app": "none"})),
        _res(
            Service(
                ObjectMeta("private", "ns-1", annotations={"networking.istio.io/exportTo": "."}),
                (ServicePort(8080, "http"),),
                {"app": "svc-1"},
            )
        ),
        _res(
            ServiceEntry(
                ObjectMeta("ext", "ns-0"),
                ("ext.example.com",),
                (ServiceEntryPort(443, "TLS", "tls"),),
                resolution="DNS",
            ),
            ISTIO,
        ),
        _res(
            Gateway(
                ObjectMeta("gw", "istio-system"),
                (Server(GatewayPort(8080, "HTTP", "http"), ("*",)),),
                {"istio": "ingressgateway"},
            ),
            ISTIO,
        ),
        _res(
            VirtualService(
                ObjectMeta("edge", "istio-system"),
                ("*",),
                gateways=("gw",),
                http=(HTTPRoute(route=(HTTPRouteDestination(Destination("svc-0.ns-0")),)),),
            ),
            ISTIO,
        ),
    ]
    if source_labels:
        match = HTTPMatchRequest(source_labels={"app": "svc-0"})
        out.append(
            _res(
                VirtualService(
                    ObjectMeta("from-svc-0", "ns-1"),
                    ("svc-1",),
                    http=(
                        HTTPRoute(
                            match=(match,),
                            route=(HTTPRouteDestination(Destination("svc-1", "v2")),),
                        ),
                        HTTPRoute(route=(HTTPRouteDestination(Destination("svc-1", "v1")),)),
                    ),
                ),
                ISTIO,
            )
        )
    return out


def _mesh(services: int = 6, source_labels: bool = True) -> BenchMesh:
    base = bench_mesh(services, endpoints=4)
    # The bench mesh's own VS on svc-0 stays; svc-1 gets the sourceLabels one.
    return replace(base, resources=(*base.resources, *_extras(source_labels)))


def _router() -> Proxy:
    return Proxy(
        id="router~127.0.0.1~gw-0.istio-system~istio-system.svc.cluster.local",
        type="router",
        ip="127.0.0.1",
        name="gw-0",
        namespace="istio-system",
        labels={"istio": "ingressgateway"},
        annotations={"mizzen.io/listen-address": "127.0.0.1"},
    )


def _proxies(mesh: BenchMesh, count: int = 30) -> list[Proxy]:
    sidecars = [proxy_from_node(i.node_id, i.metadata) for i in proxy_identities(mesh, count)]
    return [*sidecars, _router()]


def _bodies(config: PreparedConfig) -> dict[str, dict[str, bytes]]:
    return {t: dict(tc.bodies) for t, tc in config.types.items()}


def _assert_equal_to_translation(cache: ConfigCache, snap: MeshSnapshot, proxies: Any) -> None:
    for proxy in proxies:
        assert _bodies(cache.config(snap, proxy)) == serialize(build_resources(snap, proxy)), proxy


def _by_name(proxies: list[Proxy], name: str) -> Proxy:
    return next(p for p in proxies if p.name == name)


def test_cached_output_is_translation_serialized_across_changes() -> None:
    mesh = _mesh()
    proxies = _proxies(mesh, count=len(mesh.pods) + 3)  # a few without a workload
    cache = ConfigCache()
    steps = [BenchMesh.change_endpoint, BenchMesh.change_vs, BenchMesh.change_endpoint]
    for n, step in enumerate([None, *steps]):
        if step is not None:
            mesh = step(mesh)
        _assert_equal_to_translation(cache, mesh.snapshot(str(n)), proxies)


def test_replicas_share_one_config_and_namespaces_share_endpoints() -> None:
    mesh = _mesh(source_labels=False)
    proxies = _proxies(mesh)
    snap = mesh.snapshot("1")
    cache = ConfigCache()
    a = cache.config(snap, _by_name(proxies, "svc-0-v1-0"))
    b = cache.config(snap, _by_name(proxies, "svc-0-v1-1"))
    assert a is b  # same inputs: the very same objects, bytes and payloads
    other_ns = cache.config(snap, _by_name(proxies, "svc-2-v1-0"))
    assert other_ns.types[ROUTE] is not a.types[ROUTE]  # short names differ by namespace
    assert _bodies(other_ns)[ROUTE] != _bodies(a)[ROUTE]


def test_export_to_makes_visibility_part_of_the_key() -> None:
    mesh = _mesh()
    proxies = _proxies(mesh)
    snap = mesh.snapshot("1")
    cache = ConfigCache()
    inside = cache.config(snap, _by_name(proxies, "svc-1-v1-0"))  # ns-1
    outside = cache.config(snap, _by_name(proxies, "svc-0-v1-0"))  # ns-0
    private = "outbound|8080||private.ns-1.svc.cluster.local"
    assert private in inside.types[CLUSTER].bodies
    assert private not in outside.types[CLUSTER].bodies
    assert inside.types[ENDPOINT] is not outside.types[ENDPOINT]


def test_source_labels_split_routes_only_when_used() -> None:
    for used in (True, False):
        mesh = _mesh(source_labels=used)
        proxies = _proxies(mesh)
        snap = mesh.snapshot("1")
        cache = ConfigCache()
        # svc-1 (ns-1) and svc-11 ... only svc-1 lives in ns-1 here: compare
        # its v1 and v2 pods, whose labels differ.
        v1 = cache.config(snap, _by_name(proxies, "svc-1-v1-0"))
        v2 = cache.config(snap, _by_name(proxies, "svc-1-v2-0"))
        assert (v1.types[ROUTE] is v2.types[ROUTE]) is not used
        _assert_equal_to_translation(cache, snap, proxies)


def test_endpoint_change_rebuilds_only_the_changed_assignment() -> None:
    mesh = _mesh()
    proxies = _proxies(mesh)
    cache = ConfigCache()
    proxy = _by_name(proxies, "svc-3-v1-0")
    before = cache.config(mesh.snapshot("1"), proxy)
    moved = mesh.change_endpoint()  # svc-0-v1-0 gets a new address
    after = cache.config(moved.snapshot("2"), proxy)
    assert cache.changed == frozenset()
    for t in (CLUSTER, LISTENER, ROUTE):
        assert after.types[t] is before.types[t]  # unchanged inputs: shared as is
    old, new = before.types[ENDPOINT].bodies, after.types[ENDPOINT].bodies
    changed = {name for name in new if new[name] != old[name]}
    assert changed == {
        "outbound|9080||svc-0.ns-0.svc.cluster.local",
        "outbound|9080|v1|svc-0.ns-0.svc.cluster.local",
    }
    # Assignments of untouched service ports are reused as they are (the
    # other subsets of svc-0 are rebuilt, to the same bytes).
    assert all(new[n] is old[n] for n in new if "svc-0." not in n)
    assert all(new[n] == old[n] for n in new if n not in changed)


def test_vs_change_keeps_clusters_and_rebuilds_routes() -> None:
    mesh = _mesh()
    proxies = _proxies(mesh)
    cache = ConfigCache()
    proxy = _by_name(proxies, "svc-3-v1-0")
    before = cache.config(mesh.snapshot("1"), proxy)
    flipped = mesh.change_vs()
    after = cache.config(flipped.snapshot("2"), proxy)
    assert "virtual_services" in cache.changed
    assert after.types[CLUSTER] is before.types[CLUSTER]
    assert after.types[ROUTE] is not before.types[ROUTE]
    assert _bodies(after)[ROUTE] != _bodies(before)[ROUTE]
    _assert_equal_to_translation(cache, flipped.snapshot("2"), proxies)


def test_changed_fields_names_what_differs() -> None:
    mesh = _mesh()
    s1, s2 = mesh.snapshot("1"), mesh.snapshot("2")
    assert changed_fields(s1, s2) == frozenset()
    assert changed_fields(s1, mesh.change_vs().snapshot("3")) >= {"virtual_services"}


def test_router_is_built_whole_and_matches() -> None:
    mesh = _mesh()
    snap = mesh.snapshot("1")
    cache = ConfigCache()
    router = _router()
    config = cache.config(snap, router)
    assert config is cache.config(snap, router)
    assert config.types[LISTENER].bodies  # the gateway listener exists
    _assert_equal_to_translation(cache, snap, [router])


@pytest.mark.parametrize("services", [1, 7, 25])
def test_indexed_endpoints_equal_the_registry_scan(services: int) -> None:
    # model.build's index must not change what the registry decides.
    mesh = _mesh(services)
    svcs = mesh_services(mesh.resources, mesh.vips, "cluster.local")
    pods = workloads(plan_pods(mesh.resources), mesh.pod_ips)
    indexed = indexed_endpoints(mesh.resources, svcs, pods)
    scanned = service_endpoints(mesh.resources, svcs, pods)
    assert indexed == scanned
    assert list(indexed) == list(scanned)
    snap = build_snapshot(mesh.resources, mesh.pod_ips, mesh.vips, "1")
    assert snap.endpoints == scanned


def test_every_snapshot_field_translation_reads_invalidates_the_cache() -> None:
    """A snapshot field the cache does not watch would let a proxy keep stale
    config: each field is either watched or known to be read another way."""
    read_otherwise = {"version", "endpoints", "workloads"}  # EDS, keys, inbound key
    fields = {f.name for f in fields_of(MeshSnapshot)}
    assert fields - read_otherwise == set(cache_module._CONFIG_FIELDS)


def test_mesh_settings_are_config_fields() -> None:
    mesh = _mesh()
    s1 = mesh.snapshot("1")
    upgraded = replace(s1, h2_upgrade=True)
    assert changed_fields(s1, upgraded) == {"h2_upgrade"}
    timed = replace(s1, protocol_detection_timeout=1.0)
    assert changed_fields(s1, timed) == {"protocol_detection_timeout"}
