"""Names and addresses of a local mesh (pure: no IO).

All meshes on one machine share 198.18.0.0/15. Slot k (one per running mesh)
owns two /22s:

    pods      198.18.(4k).0/22   bridge mz<k>-br holds the first host address
    services  198.19.(4k).0/22   VIPs, only ever DNATed/redirected inside pods

Slots stop at 59 so that no mesh ever hands out 198.19.240.0/20: tests of
the capture layer use 198.19.240.0/24 on their own bridges.

Kernel objects carry the mesh name so that `down` can find them after a
crash without state: namespaces are ``mz-<mesh>.<namespace>.<pod>``. The dot
cannot appear in a mesh name, so mesh ``a`` never matches mesh ``a-b``'s
namespaces (a hyphen separator would).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from mizzen.runtime.errors import MeshNameError, NoFreeSlotError

MAX_SLOTS = 60
"""Slots 0..59; 60..63 would overlap 198.19.240.0/20 (reserved for tests)."""

POD_SPACE = IPv4Network("198.18.0.0/16")
SERVICE_SPACE = IPv4Network("198.19.0.0/16")
SUBNET_PREFIX = 22

MESH_NAME_MAX = 20
_MESH_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")

IFNAME_MAX = 15
"""Linux limit on interface names (IFNAMSIZ - 1)."""

NETNS_NAME_MAX = 64
"""Our own limit: keeps `ip netns list` and /etc/netns readable."""

NETNS_PREFIX = "mz-"
LINK_ALIAS_PREFIX = "mizzen:"


@dataclass(frozen=True)
class MeshAddresses:
    slot: int
    pod_subnet: IPv4Network
    service_range: IPv4Network
    host_ip: IPv4Address
    bridge: str


def validate_mesh_name(name: str) -> str:
    """Return name, or raise MeshNameError saying what a valid name looks like."""
    if len(name) > MESH_NAME_MAX or not _MESH_NAME.fullmatch(name):
        raise MeshNameError(
            f"invalid mesh name {name!r}: use 1-{MESH_NAME_MAX} lowercase letters, digits "
            "and '-', starting and ending with a letter or digit"
        )
    return name


def addresses_for_slot(slot: int) -> MeshAddresses:
    if not 0 <= slot < MAX_SLOTS:
        raise ValueError(f"slot {slot} out of range 0..{MAX_SLOTS - 1}")
    third = 4 * slot
    pods = IPv4Network(f"198.18.{third}.0/{SUBNET_PREFIX}")
    services = IPv4Network(f"198.19.{third}.0/{SUBNET_PREFIX}")
    return MeshAddresses(
        slot=slot,
        pod_subnet=pods,
        service_range=services,
        host_ip=pods.network_address + 1,
        bridge=bridge_name(slot),
    )


def pick_slot(used: Iterable[int], busy_networks: Iterable[IPv4Network] = ()) -> int:
    """Lowest slot not in used and whose subnets overlap none of busy_networks.

    busy_networks are addresses already configured on the host (another tool
    may use part of 198.18.0.0/15); overlapping them would break routing.
    """
    taken = set(used)
    busy = list(busy_networks)
    for slot in range(MAX_SLOTS):
        if slot in taken:
            continue
        addrs = addresses_for_slot(slot)
        if any(addrs.pod_subnet.overlaps(n) or addrs.service_range.overlaps(n) for n in busy):
            continue
        return slot
    raise NoFreeSlotError(
        f"all {MAX_SLOTS} mesh slots are in use: stop a mesh with `mizzen down --name NAME`"
    )


def allocate_pod_ip(
    subnet: IPv4Network, host_ip: IPv4Address, used: Iterable[IPv4Address]
) -> IPv4Address:
    """Lowest free host address of subnet (the bridge's host_ip is never free)."""
    taken = set(used) | {host_ip}
    for ip in subnet.hosts():
        if ip not in taken:
            return ip
    raise NoFreeSlotError(f"pod subnet {subnet} is full: remove pods or run a second mesh")


def bridge_name(slot: int) -> str:
    return f"mz{slot}-br"


def veth_name(slot: int, index: int) -> str:
    """Host side of pod `index`'s veth; at most 'mz59p1023' (9 chars)."""
    name = f"mz{slot}p{index}"
    assert len(name) <= IFNAME_MAX
    return name


def link_alias(mesh: str) -> str:
    """ifalias set on every link of a mesh: finds them after a crash."""
    return f"{LINK_ALIAS_PREFIX}{mesh}"


def netns_prefix(mesh: str) -> str:
    return f"{NETNS_PREFIX}{mesh}."


def netns_name(mesh: str, namespace: str, pod: str) -> str:
    """``mz-<mesh>.<namespace>.<pod>``, truncated with a hash suffix when too long.

    The prefix ``mz-<mesh>.`` always survives truncation: discovery needs it.
    """
    full = f"{netns_prefix(mesh)}{namespace}.{pod}"
    if len(full) <= NETNS_NAME_MAX:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:10]
    return f"{full[: NETNS_NAME_MAX - len(digest) - 1]}-{digest}"


def slot_of_bridge(link: str) -> int | None:
    """Slot a link name like 'mz7-br' belongs to, else None."""
    m = re.fullmatch(r"mz(\d+)-br", link)
    return int(m.group(1)) if m else None
