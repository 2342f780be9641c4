from __future__ import annotations

from typing import Any

from google.protobuf.json_format import MessageToDict

from mizzen.model.snapshot import Endpoint
from mizzen.translate.endpoints import build_endpoints

from .factories import REVIEWS, REVIEWS_SUBSETS, bookinfo, service, sidecar, snapshot


def assignments(snap: Any) -> dict[str, dict[str, Any]]:
    return {c.cluster_name: MessageToDict(c) for c in build_endpoints(snap, sidecar())}


def addresses(assignment: dict[str, Any]) -> list[str]:
    return [
        lb["endpoint"]["address"]["socketAddress"]["address"]
        for group in assignment.get("endpoints", [])
        for lb in group["lbEndpoints"]
    ]


def test_one_assignment_per_eds_cluster_sorted() -> None:
    found = assignments(bookinfo(destination_rules=[REVIEWS_SUBSETS]))
    assert list(found) == sorted(found)
    assert addresses(found[f"outbound|9080||{REVIEWS}"]) == ["10.1.0.3", "10.1.0.4", "10.1.0.5"]


def test_subset_clusters_filter_by_labels() -> None:
    found = assignments(bookinfo(destination_rules=[REVIEWS_SUBSETS]))
    assert addresses(found[f"outbound|9080|v1|{REVIEWS}"]) == ["10.1.0.3"]
    assert addresses(found[f"outbound|9080|v2|{REVIEWS}"]) == ["10.1.0.4"]


def test_service_without_endpoints_gets_an_empty_assignment() -> None:
    found = assignments(snapshot([service("idle")]))
    assert found == {
        "outbound|9080||idle.default.svc.cluster.local": {
            "clusterName": "outbound|9080||idle.default.svc.cluster.local"
        }
    }


def test_endpoints_are_grouped_by_locality() -> None:
    svc = service("geo")
    snap = snapshot(
        [svc],
        {
            (svc.hostname, 9080): [
                Endpoint("10.1.0.2", 9080, locality="eu/west/a", weight=2),
                Endpoint("10.1.0.1", 9080, locality="eu/west/a"),
                Endpoint("10.1.0.3", 9080),
            ]
        },
    )
    groups = assignments(snap)[f"outbound|9080||{svc.hostname}"]["endpoints"]
    assert [g.get("locality") for g in groups] == [
        None,
        {"region": "eu", "zone": "west", "subZone": "a"},
    ]
    weights = [lb["loadBalancingWeight"] for lb in groups[1]["lbEndpoints"]]
    assert weights == [1, 2]
