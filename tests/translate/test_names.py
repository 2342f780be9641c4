from __future__ import annotations

import pytest

from mizzen.translate import names


@pytest.mark.parametrize(
    ("port", "host", "subset", "expected"),
    [
        (
            9080,
            "reviews.default.svc.cluster.local",
            "",
            "outbound|9080||reviews.default.svc.cluster.local",
        ),
        (
            9080,
            "reviews.default.svc.cluster.local",
            "v1",
            "outbound|9080|v1|reviews.default.svc.cluster.local",
        ),
        (443, "api.example.com", "", "outbound|443||api.example.com"),
    ],
)
def test_outbound_cluster_names(port: int, host: str, subset: str, expected: str) -> None:
    assert names.outbound_cluster(port, host, subset) == expected


def test_other_names() -> None:
    assert names.inbound_cluster(9080) == "inbound|9080||"
    assert names.listener_name("0.0.0.0", 9080) == "0.0.0.0_9080"
    assert names.listener_name("10.0.0.14", 27017) == "10.0.0.14_27017"
    assert names.sidecar_route_config(9080) == "9080"
    assert names.gateway_route_config(8080) == "http.8080"
    assert names.virtual_host("reviews.default.svc.cluster.local", 9080) == (
        "reviews.default.svc.cluster.local:9080"
    )
    assert names.decorator_operation("reviews.default.svc.cluster.local", 9080) == (
        "reviews.default.svc.cluster.local:9080/*"
    )
