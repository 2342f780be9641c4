from __future__ import annotations

import pytest

from mizzen.registry.vips import VipAllocator, VipError, VipPoolExhaustedError


def test_new_hostnames_get_lowest_free_addresses_in_sorted_order() -> None:
    alloc = VipAllocator("10.96.0.0/24")
    got = alloc.assign(["b.svc", "a.svc"])
    # .0 is the network, .1 is reserved
    assert got == {"a.svc": "10.96.0.2", "b.svc": "10.96.0.3"}


def test_assignment_is_independent_of_input_order() -> None:
    first = VipAllocator("10.96.0.0/24").assign(["c", "a", "b"])
    second = VipAllocator("10.96.0.0/24").assign(["b", "c", "a"])
    assert first == second


def test_existing_assignments_are_kept() -> None:
    alloc = VipAllocator("10.96.0.0/24")
    alloc.assign(["m"])
    got = alloc.assign(["a", "m"])
    assert got == {"a": "10.96.0.3", "m": "10.96.0.2"}


def test_persisted_state_is_restored_and_gaps_are_filled() -> None:
    alloc = VipAllocator("10.96.0.0/24", {"x": "10.96.0.3"})
    assert alloc.assign(["y", "z"]) == {"y": "10.96.0.2", "z": "10.96.0.4"}
    assert alloc.assigned == {"x": "10.96.0.3", "y": "10.96.0.2", "z": "10.96.0.4"}
    restored = VipAllocator("10.96.0.0/24", alloc.assigned)
    assert restored.assign(["x", "y", "z"]) == alloc.assigned


def test_release_frees_the_address() -> None:
    alloc = VipAllocator("10.96.0.0/24")
    alloc.assign(["a", "b"])
    alloc.release("a")
    alloc.release("never-assigned")
    assert alloc.assign(["c"]) == {"c": "10.96.0.2"}
    assert "a" not in alloc.assigned


def test_exhaustion_is_clear_and_all_or_nothing() -> None:
    alloc = VipAllocator("10.0.0.0/29")  # usable: .2 .. .6
    alloc.assign(["a", "b", "c", "d"])
    with pytest.raises(VipPoolExhaustedError, match=r"10\.0\.0\.0/29 is exhausted"):
        alloc.assign(["e", "f"])
    assert set(alloc.assigned) == {"a", "b", "c", "d"}
    assert alloc.assign(["e"]) == {"e": "10.0.0.6"}  # broadcast .7 never used
    with pytest.raises(VipPoolExhaustedError):
        alloc.assign(["f"])


@pytest.mark.parametrize(
    ("cidr", "assigned"),
    [
        ("not-a-cidr", {}),
        ("10.0.0.1/24", {}),  # host bits set
        ("10.0.0.0/24", {"a": "10.0.1.5"}),  # outside the range
        ("10.0.0.0/24", {"a": "10.0.0.1"}),  # reserved
        ("10.0.0.0/24", {"a": "10.0.0.5", "b": "10.0.0.5"}),  # twice
        ("10.0.0.0/24", {"a": "bogus"}),
    ],
)
def test_bad_range_or_state_is_rejected(cidr: str, assigned: dict[str, str]) -> None:
    with pytest.raises(VipError):
        VipAllocator(cidr, assigned)


def test_ipv6_range() -> None:
    assert VipAllocator("fd00::/120").assign(["a"]) == {"a": "fd00::2"}
