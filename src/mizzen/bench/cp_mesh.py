"""The synthetic mesh of the control-plane benchmark, built in memory.

Both the control plane under test (``cp_server``) and the simulated proxies
(``adsclient``) derive everything from ``(services, proxies)`` with the
functions here, so they agree on pod names, addresses and labels without
exchanging them.

Shape, per service ``svc-<i>`` in namespace ``ns-<i % NAMESPACES>``: one HTTP
port 9080, two Deployments (``svc-<i>-v1`` and ``svc-<i>-v2``) that make up
``endpoints`` pods together, and on every third service a VirtualService
(90/10 split over subsets v1/v2, plus a ``/api`` prefix rule) and a
DestinationRule with the two subsets.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mizzen.api.resources import (
    Container,
    ContainerPort,
    Destination,
    DestinationRule,
    GroupVersionKind,
    HTTPMatchRequest,
    HTTPRoute,
    HTTPRouteDestination,
    Namespace,
    ObjectMeta,
    PodController,
    PodSpec,
    PodTemplate,
    Resource,
    Service,
    ServicePort,
    Source,
    Spec,
    StringMatch,
    Subset,
    VirtualService,
)
from mizzen.model.build import build_snapshot
from mizzen.model.proxy import node_id_for, node_metadata_for
from mizzen.model.snapshot import MeshSnapshot

__all__ = [
    "NAMESPACES",
    "BenchMesh",
    "ProxyIdentity",
    "bench_mesh",
    "proxy_identities",
]

NAMESPACES = 10
HTTP_PORT = 9080
ISTIO = "networking.istio.io"
_POD_BASE = int(ipaddress.IPv4Address("10.0.0.1"))
_MOVED_BASE = int(ipaddress.IPv4Address("10.128.0.1"))
_VIP_BASE = int(ipaddress.IPv4Address("10.96.0.10"))


def _res(obj: Spec, group: str = "", version: str = "v1") -> Resource:
    return Resource(GroupVersionKind(group, version, type(obj).__name__), Source("bench", 0), obj)


def _ip(base: int, offset: int) -> str:
    return str(ipaddress.IPv4Address(base + offset))


@dataclass(frozen=True)
class ProxyIdentity:
    """What one simulated sidecar tells the control plane about itself."""

    node_id: str
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class BenchMesh:
    services: int
    endpoints: int
    resources: tuple[Resource, ...]
    pod_ips: Mapping[tuple[str, str], str]
    vips: Mapping[str, str]
    # (namespace, pod) of every pod in creation order
    pods: tuple[tuple[str, str], ...] = ()
    pod_labels: Mapping[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)
    vs_flips: int = 0  # how many times change_vs ran
    moved: int = 0  # how many times change_endpoint ran

    def snapshot(self, version: str) -> MeshSnapshot:
        return build_snapshot(self.resources, self.pod_ips, self.vips, version)

    def change_endpoint(self) -> BenchMesh:
        """One pod (round robin) moves to a fresh address: an endpoint-only change."""
        pod = self.pods[self.moved % len(self.pods)]
        pod_ips = dict(self.pod_ips)
        pod_ips[pod] = _ip(_MOVED_BASE, self.moved)
        return replace(self, pod_ips=pod_ips, moved=self.moved + 1)

    def change_vs(self) -> BenchMesh:
        """The first VirtualService flips its split between 90/10 and 80/20."""
        flips = self.vs_flips + 1
        weights = (80, 20) if flips % 2 else (90, 10)
        resources = list(self.resources)
        for i, r in enumerate(resources):
            if isinstance(r.obj, VirtualService):
                resources[i] = replace(r, obj=_virtual_service(r.obj.meta, weights))
                break
        return replace(self, resources=tuple(resources), vs_flips=flips)


def _namespace(i: int) -> str:
    return f"ns-{i % NAMESPACES}"


def _virtual_service(meta: ObjectMeta, weights: tuple[int, int]) -> VirtualService:
    host = meta.name

    def to(subset: str, weight: int | None = None) -> HTTPRouteDestination:
        return HTTPRouteDestination(Destination(host, subset), weight)

    return VirtualService(
        meta,
        (host,),
        http=(
            HTTPRoute(
                name="api",
                match=(HTTPMatchRequest(uri=StringMatch("prefix", "/api")),),
                route=(to("v2"),),
            ),
            HTTPRoute(name="split", route=(to("v1", weights[0]), to("v2", weights[1]))),
        ),
    )


def bench_mesh(services: int, endpoints: int = 10) -> BenchMesh:
    resources: list[Resource] = [
        _res(Namespace(ObjectMeta(f"ns-{n}", "", {"istio-injection": "enabled"})))
        for n in range(min(NAMESPACES, services))
    ]
    pods: list[tuple[str, str]] = []
    labels_of: dict[tuple[str, str], Mapping[str, str]] = {}
    vips: dict[str, str] = {}
    for i in range(services):
        ns, name = _namespace(i), f"svc-{i}"
        vips[f"{name}.{ns}.svc.cluster.local"] = _ip(_VIP_BASE, i)
        resources.append(
            _res(Service(ObjectMeta(name, ns), (ServicePort(HTTP_PORT, "http"),), {"app": name}))
        )
        v1 = (endpoints + 1) // 2
        for version, replicas in (("v1", v1), ("v2", endpoints - v1)):
            if replicas <= 0:
                continue
            labels = {"app": name, "version": version}
            spec = PodSpec(
                (Container("app", ports=(ContainerPort(HTTP_PORT, name="http"),)),),
                service_account_name=name,
            )
            deployment = f"{name}-{version}"
            resources.append(
                _res(
                    PodController(
                        ObjectMeta(deployment, ns),
                        replicas,
                        labels,
                        PodTemplate(labels, {}, spec),
                    ),
                    group="apps",
                )
            )
            for r in range(replicas):
                pods.append((ns, f"{deployment}-{r}"))
                labels_of[(ns, f"{deployment}-{r}")] = labels
        if i % 3 == 0:
            meta = ObjectMeta(name, ns)
            resources.append(_res(_virtual_service(meta, (90, 10)), ISTIO))
            subsets = (Subset("v1", {"version": "v1"}), Subset("v2", {"version": "v2"}))
            resources.append(_res(DestinationRule(meta, name, subsets=subsets), ISTIO))
    pod_ips = {pod: _ip(_POD_BASE, n) for n, pod in enumerate(pods)}
    return BenchMesh(services, endpoints, tuple(resources), pod_ips, vips, tuple(pods), labels_of)


def proxy_identities(mesh: BenchMesh, count: int) -> list[ProxyIdentity]:
    """``count`` sidecars, one per pod in pod order; beyond the number of pods
    the list wraps around with distinct pod names (``<pod>-x<k>``) so that
    every stream has its own node id."""
    out = []
    for n in range(count):
        ns, pod = mesh.pods[n % len(mesh.pods)]
        labels = mesh.pod_labels[(ns, pod)]
        lap = n // len(mesh.pods)
        name = pod if lap == 0 else f"{pod}-x{lap}"
        ip = _ip(_POD_BASE, n) if lap == 0 else _ip(_MOVED_BASE + 0x100000, n)
        meta = node_metadata_for(
            name=name,
            namespace=ns,
            ips=[ip],
            labels={**labels, "security.istio.io/tlsMode": "istio"},
            service_account=labels["app"],
            ports=(ContainerPort(HTTP_PORT, name="http"),),
        )
        out.append(ProxyIdentity(node_id_for("sidecar", ip, name, ns), meta))
    return out
