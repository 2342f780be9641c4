"""Endpoints (EDS): one ClusterLoadAssignment per EDS cluster, even when empty,
so that Envoy finishes warming the cluster instead of waiting for one."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import groupby
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from mizzen.model.snapshot import Endpoint, MeshSnapshot, Proxy
from mizzen.translate import tls
from mizzen.translate.clusters import OutboundCluster, outbound_clusters, socket_address
from mizzen.translate.lookup import labels_match


def locality(name: str) -> Any:
    region, zone, sub_zone = ([*name.split("/"), "", ""])[:3]
    return base_pb2.Locality(region=region, zone=zone, sub_zone=sub_zone)


def lb_endpoint(e: Endpoint) -> Any:
    out = endpoint_components_pb2.LbEndpoint(
        endpoint={"address": socket_address(e.address, e.port)},
        load_balancing_weight={"value": max(e.weight, 1)},
    )
    tls_mode = e.labels.get(tls.TLS_MODE_LABEL)
    if tls_mode:
        # Selects the cluster's matching transport socket (auto mTLS).
        match = out.metadata.filter_metadata[tls.TRANSPORT_SOCKET_MATCH]
        match.fields[tls.TLS_MODE_KEY].string_value = tls_mode
    return out


def _locality_group(name: str, endpoints: Iterable[Endpoint]) -> Any:
    lb_endpoints = [lb_endpoint(e) for e in endpoints]
    group = endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lb_endpoints)
    if name:
        group.locality.CopyFrom(locality(name))
    return group


def load_assignment(snapshot: MeshSnapshot, spec: OutboundCluster) -> Any:
    chosen = sorted(
        (
            e
            for e in snapshot.endpoints_of(spec.service.hostname, spec.port.port)
            if labels_match(spec.subset_labels, e.labels)
        ),
        key=lambda e: (e.locality, e.address, e.port),
    )
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=spec.name,
        endpoints=[
            _locality_group(name, group)
            for name, group in groupby(chosen, key=lambda e: e.locality)
        ],
    )


def build_endpoints(snapshot: MeshSnapshot, proxy: Proxy) -> list[Any]:
    """Load assignments of every EDS cluster of the proxy, sorted by cluster name."""
    out = [
        load_assignment(snapshot, spec)
        for spec in outbound_clusters(snapshot, proxy)
        if spec.discovery == "EDS"
    ]
    return sorted(out, key=lambda c: c.cluster_name)
