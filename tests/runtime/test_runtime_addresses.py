from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from mizzen.runtime.addresses import (
    IFNAME_MAX,
    MAX_SLOTS,
    NETNS_NAME_MAX,
    addresses_for_slot,
    allocate_pod_ip,
    bridge_name,
    netns_name,
    netns_prefix,
    pick_slot,
    slot_of_bridge,
    validate_mesh_name,
    veth_name,
)
from mizzen.runtime.errors import MeshNameError, NoFreeSlotError

TEST_RANGE = IPv4Network("198.19.240.0/20")


@pytest.mark.parametrize(
    ("slot", "pods", "services", "host"),
    [
        (0, "198.18.0.0/22", "198.19.0.0/22", "198.18.0.1"),
        (1, "198.18.4.0/22", "198.19.4.0/22", "198.18.4.1"),
        (10, "198.18.40.0/22", "198.19.40.0/22", "198.18.40.1"),
        (59, "198.18.236.0/22", "198.19.236.0/22", "198.18.236.1"),
    ],
)
def test_slot_table(slot: int, pods: str, services: str, host: str) -> None:
    a = addresses_for_slot(slot)
    assert a.pod_subnet == IPv4Network(pods)
    assert a.service_range == IPv4Network(services)
    assert a.host_ip == IPv4Address(host)
    assert a.bridge == f"mz{slot}-br"


def test_no_slot_touches_the_reserved_test_range_or_leaves_198_18_15() -> None:
    space = IPv4Network("198.18.0.0/15")
    seen: list[IPv4Network] = []
    for slot in range(MAX_SLOTS):
        a = addresses_for_slot(slot)
        for net in (a.pod_subnet, a.service_range):
            assert net.subnet_of(space)
            assert not net.overlaps(TEST_RANGE)
            assert not any(net.overlaps(other) for other in seen)
            seen.append(net)
    with pytest.raises(ValueError):
        addresses_for_slot(MAX_SLOTS)
    with pytest.raises(ValueError):
        addresses_for_slot(-1)


@pytest.mark.parametrize(
    ("used", "busy", "expected"),
    [
        ((), (), 0),
        ((0, 1, 3), (), 2),
        ((1,), (), 0),
        ((), (IPv4Network("198.18.0.0/24"),), 1),  # host already uses part of slot 0
        ((1,), (IPv4Network("198.19.0.128/25"),), 2),  # VIP range of slot 0 busy
        ((), (IPv4Network("10.0.0.0/8"),), 0),
    ],
)
def test_pick_slot(used: tuple[int, ...], busy: tuple[IPv4Network, ...], expected: int) -> None:
    assert pick_slot(used, busy) == expected


def test_pick_slot_full() -> None:
    with pytest.raises(NoFreeSlotError, match="mizzen down"):
        pick_slot(range(MAX_SLOTS))


def test_pod_ip_lowest_free() -> None:
    a = addresses_for_slot(2)
    assert allocate_pod_ip(a.pod_subnet, a.host_ip, []) == IPv4Address("198.18.8.2")
    used = [IPv4Address("198.18.8.2"), IPv4Address("198.18.8.4")]
    assert allocate_pod_ip(a.pod_subnet, a.host_ip, used) == IPv4Address("198.18.8.3")
    small = IPv4Network("198.18.8.0/30")
    with pytest.raises(NoFreeSlotError):
        allocate_pod_ip(small, IPv4Address("198.18.8.1"), [IPv4Address("198.18.8.2")])


@pytest.mark.parametrize("name", ["a", "demo", "rtdev-1", "a1-b2", "x" * 20])
def test_valid_names(name: str) -> None:
    assert validate_mesh_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", "a-", "A", "a_b", "a.b", "x" * 21, "a b"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(MeshNameError, match="lowercase letters"):
        validate_mesh_name(name)


def test_interface_names_fit() -> None:
    assert len(bridge_name(59)) <= IFNAME_MAX
    assert len(veth_name(59, 1023)) <= IFNAME_MAX
    assert slot_of_bridge("mz12-br") == 12
    assert slot_of_bridge("mzcap1") is None
    assert slot_of_bridge("mz12p3") is None


def test_netns_names() -> None:
    assert netns_name("demo", "default", "web") == "mz-demo.default.web"
    long = netns_name("x" * 20, "n" * 63, "p" * 63)
    assert len(long) == NETNS_NAME_MAX
    assert long.startswith(netns_prefix("x" * 20))
    # The hash keeps truncated names distinct.
    assert long != netns_name("x" * 20, "n" * 63, "p" * 62 + "q")


def test_prefix_of_one_mesh_never_matches_another() -> None:
    # With '-' as separator, mesh "a" would claim mesh "a-b"'s namespaces.
    assert not netns_name("a-b", "ns", "pod").startswith(netns_prefix("a"))
    assert not netns_name("a--b", "ns", "pod").startswith(netns_prefix("a"))
