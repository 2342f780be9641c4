"""Bookinfo on a real local mesh: routing by Istio rules, end to end.

Everything is real: network namespaces, iptables capture, Envoy sidecars
configured over ADS by the daemon, the ingress gateway on 127.0.0.1.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

import pytest

from mizzen.demo import fetch_version
from mizzen.mesh import control
from mizzen.mesh.launcher import wait_ready

ROUTING = Path(__file__).resolve().parents[2] / "examples" / "bookinfo" / "routing"
log = logging.getLogger(__name__)


def apply(layout: object, path: Path) -> dict[str, object]:
    answer = control.call(layout.control_socket, {"op": "apply", "paths": [str(path)]})  # type: ignore[attr-defined]
    return answer


def split(url: str, count: int, user: str = "") -> Counter[str]:
    return Counter(fetch_version(url, user) for _ in range(count))


def poll_until_only(url: str, version: str, user: str = "", deadline_s: float = 10.0) -> float:
    """Seconds until 20 requests in a row answer `version`; fails at the deadline."""
    start = time.monotonic()
    streak = 0
    while time.monotonic() - start < deadline_s:
        streak = streak + 1 if fetch_version(url, user) == version else 0
        if streak >= 20:
            return time.monotonic() - start
    pytest.fail(f"traffic did not move to {version} within {deadline_s} s")


def test_default_route_reaches_every_version(bookinfo_mesh: tuple[object, str]) -> None:
    layout, ingress = bookinfo_mesh
    apply_delete = control.call(
        layout.control_socket,  # type: ignore[attr-defined]
        {"op": "delete", "paths": [str(ROUTING / "all-v1.yaml")]},
    )
    assert apply_delete["ok"]
    wait_ready(layout, 30)  # type: ignore[arg-type]
    counts = split(f"{ingress}/productpage", 90)
    assert set(counts) == {"v1", "v2", "v3"}, counts


def test_weighted_80_20_split(bookinfo_mesh: tuple[object, str]) -> None:
    layout, ingress = bookinfo_mesh
    answer = apply(layout, ROUTING / "reviews-80-20.yaml")
    assert not answer["errors"]
    wait_ready(layout, 30)  # type: ignore[arg-type]
    counts = split(f"{ingress}/productpage", 1000)
    assert set(counts) <= {"v1", "v2"}, counts
    share_v1 = 100 * counts["v1"] / 1000
    log.info("80/20 split observed: %s", dict(counts))
    assert 75 <= share_v1 <= 85, counts


def test_header_match_sends_only_jason_to_v2(bookinfo_mesh: tuple[object, str]) -> None:
    layout, ingress = bookinfo_mesh
    answer = apply(layout, ROUTING / "reviews-jason-v2.yaml")
    assert not answer["errors"]
    wait_ready(layout, 30)  # type: ignore[arg-type]
    url = f"{ingress}/productpage"
    assert split(url, 100, "jason") == Counter({"v2": 100})
    assert split(url, 100, "") == Counter({"v1": 100})
    assert split(url, 50, "jasonx") == Counter({"v1": 50})


def test_apply_moves_traffic_and_invalid_config_is_rejected(
    bookinfo_mesh: tuple[object, str], tmp_path: Path
) -> None:
    layout, ingress = bookinfo_mesh
    url = f"{ingress}/productpage"
    apply(layout, ROUTING / "all-v1.yaml")
    wait_ready(layout, 30)  # type: ignore[arg-type]
    poll_until_only(url, "v1")

    to_v3 = tmp_path / "reviews-v3.yaml"
    to_v3.write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n"
        "  - route:\n    - destination: {host: reviews, subset: v3}\n"
    )
    apply(layout, to_v3)  # no wait: the poll measures how long traffic takes to follow
    took = poll_until_only(url, "v3")
    log.info("traffic followed the new VirtualService after %.2f s", took)

    invalid = tmp_path / "reviews-invalid.yaml"
    invalid.write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n"
        "  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: -10\n"
    )
    answer = apply(layout, invalid)
    errors = answer["errors"]
    assert len(errors) == 1, errors
    message = str(errors[0])
    assert str(invalid) in message
    assert "VirtualService default/reviews" in message
    assert "spec.http[0].route[0].weight" in message
    # The previous rule keeps serving.
    assert split(url, 50) == Counter({"v3": 50})
