"""The mesh as a cluster shows it: watched Kubernetes and Istio objects in,
the same ``MeshSnapshot`` the local runtime builds out.

Pure: no IO. The control plane feeds every watch event to
:meth:`ClusterConfig.update` and calls :meth:`ClusterConfig.snapshot` to
push. The objects go through the very parser and validator `mizzen apply`
uses, so a resource means the same thing from a file and from the API.

- Pods are taken as the API server holds them (the webhook already injected
  them); Deployments are not expanded, the controllers made the pods.
- A pod is an endpoint when an EndpointSlice lists it ready, as Istio's
  registry reads readiness from EndpointSlices.
- Order is creation order (``creationTimestamp``, then name), which Istio
  uses to break ties such as two VirtualServices for one host.
- An object that does not validate (made before the validating webhook
  ran, or with it bypassed) is reported once and its last valid version
  keeps serving, as a bad file does not undo a good apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mizzen.api.errors import ConfigError
from mizzen.api.meshconfig import MeshConfig
from mizzen.api.parse import parse_document
from mizzen.api.resources import Resource, Source
from mizzen.kube.crds import CRD_SPECS
from mizzen.model.build import build_snapshot
from mizzen.model.snapshot import DEFAULT_DOMAIN_SUFFIX, MeshSnapshot

__all__ = ["WATCHED", "ClusterConfig", "Watched", "ready_pod_addresses"]

Json = dict[str, Any]
ENDPOINT_SLICE = ("discovery.k8s.io/v1", "EndpointSlice")


@dataclass(frozen=True)
class Watched:
    """One kind the control plane lists and watches."""

    api_version: str
    kind: str
    plural: str

    @property
    def path(self) -> str:
        prefix = "/api" if "/" not in self.api_version else "/apis"
        return f"{prefix}/{self.api_version}/{self.plural}"


def _watched() -> tuple[Watched, ...]:
    core = (
        Watched("v1", "Namespace", "namespaces"),
        Watched("v1", "ServiceAccount", "serviceaccounts"),
        Watched("v1", "Service", "services"),
        Watched("v1", "Pod", "pods"),
        Watched(*ENDPOINT_SLICE, "endpointslices"),
    )
    istio = tuple(
        Watched(f"{s.group}/{s.versions[0]}", s.kind, s.plural)
        for s in sorted(CRD_SPECS, key=lambda s: (s.group, s.kind))
    )
    return core + istio


WATCHED = _watched()


def ready_pod_addresses(slices: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """(namespace, pod) -> address of every endpoint an EndpointSlice marks
    ready. ``ready`` unset counts as ready, as the API documents."""
    out: dict[tuple[str, str], str] = {}
    for eps in slices:
        for endpoint in eps.get("endpoints") or []:
            ref = endpoint.get("targetRef") or {}
            addresses = endpoint.get("addresses") or []
            if ref.get("kind") != "Pod" or not addresses:
                continue
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            namespace = ref.get("namespace") or (eps.get("metadata") or {}).get("namespace", "")
            out[(namespace, ref.get("name", ""))] = addresses[0]
    return out


def _key(kind: str, obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return (kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _order(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    created = str(meta.get("creationTimestamp") or "")
    return (created, str(meta.get("namespace") or ""), str(meta.get("name") or ""))


@dataclass
class ClusterConfig:
    """The accepted resources of a cluster, kept current by watch events."""

    resources: dict[tuple[str, str, str], tuple[tuple[str, str, str], Resource]] = field(
        default_factory=dict
    )
    slices: dict[tuple[str, str], Json] = field(default_factory=dict)
    # Objects whose current version is invalid: key -> the errors.
    rejected: dict[tuple[str, str, str], tuple[ConfigError, ...]] = field(default_factory=dict)

    def update(self, watched: Watched, event: str, obj: Json) -> tuple[ConfigError, ...]:
        """Apply one watch event; returns the errors of an invalid object
        (empty when it was accepted, deleted, or not one Mizzen reads)."""
        key = _key(watched.kind, obj)
        if watched.kind == ENDPOINT_SLICE[1]:
            if event == "DELETED":
                self.slices.pop(key[1:], None)
            else:
                self.slices[key[1:]] = obj
            return ()
        if event == "DELETED":
            self.resources.pop(key, None)
            self.rejected.pop(key, None)
            return ()
        # Lists leave apiVersion and kind out of their items.
        body = {**obj, "apiVersion": watched.api_version, "kind": watched.kind}
        where = f"kubernetes:{watched.plural}/{key[1] + '/' if key[1] else ''}{key[2]}"
        outcome = parse_document(body, Source(where, 0))
        if outcome.errors:
            self.rejected[key] = outcome.errors
            return outcome.errors
        self.rejected.pop(key, None)
        for resource in outcome.resources:
            self.resources[key] = (_order(obj), resource)
        return ()

    def snapshot(
        self, version: str, mesh: MeshConfig, domain_suffix: str = DEFAULT_DOMAIN_SUFFIX
    ) -> MeshSnapshot:
        ordered = tuple(r for _, r in sorted(self.resources.values(), key=lambda item: item[0]))
        pod_ips = ready_pod_addresses(self.slices.values())
        # Services carry their ClusterIPs; there is nothing to allocate.
        return build_snapshot(ordered, pod_ips, {}, version, domain_suffix, mesh)
