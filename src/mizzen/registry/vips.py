"""Virtual IPs for services, allocated from one CIDR.

Kubernetes gives every Service a ClusterIP; the local runtime has no API
server, so Mizzen hands them out here. Allocation is deterministic (new
hostnames are sorted, each takes the lowest free address) and stable
(an assigned hostname keeps its address while it exists), so restarting a
mesh with the persisted ``assigned`` map reproduces the same addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping

__all__ = ["VipAllocator", "VipError", "VipPoolExhaustedError"]

_EMPTY: Mapping[str, str] = {}


class VipError(ValueError):
    """A VIP allocation problem (bad CIDR, bad persisted state, exhaustion)."""


class VipPoolExhaustedError(VipError):
    """No free address is left in the CIDR."""


class VipAllocator:
    def __init__(self, cidr: str, assigned: Mapping[str, str] = _EMPTY) -> None:
        try:
            self._network = ipaddress.ip_network(cidr, strict=True)
        except ValueError as err:
            raise VipError(f"invalid VIP range {cidr!r}: {err}") from err
        self._by_host: dict[str, str] = {}
        self._used: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        for hostname, address in assigned.items():
            self._restore(hostname, address)

    @property
    def cidr(self) -> str:
        return str(self._network)

    @property
    def assigned(self) -> dict[str, str]:
        """hostname -> address, sorted by hostname (a copy, for persistence)."""
        return dict(sorted(self._by_host.items()))

    def assign(self, hostnames: Iterable[str]) -> dict[str, str]:
        """Addresses of ``hostnames``, allocating for those that have none.

        All-or-nothing: when the pool cannot hold every new hostname, nothing
        is allocated and ``VipPoolExhaustedError`` is raised.
        """
        wanted = sorted(set(hostnames))
        fresh = [h for h in wanted if h not in self._by_host]
        free = self._free_addresses()
        allocated: dict[str, str] = {}
        for hostname in fresh:
            candidate = next(free, None)
            if candidate is None:
                raise VipPoolExhaustedError(
                    f"VIP range {self._network} is exhausted: {len(self._by_host)} addresses "
                    f"in use, {len(fresh)} more needed ({', '.join(fresh[:3])}"
                    f"{', ...' if len(fresh) > 3 else ''})"
                )
            allocated[hostname] = str(candidate)
        for hostname, address in allocated.items():
            self._by_host[hostname] = address
            self._used.add(ipaddress.ip_address(address))
        return {h: self._by_host[h] for h in wanted}

    def release(self, hostname: str) -> None:
        """Forget ``hostname``; its address becomes the lowest free again.
        Releasing an unknown hostname is a no-op."""
        address = self._by_host.pop(hostname, None)
        if address is not None:
            self._used.discard(ipaddress.ip_address(address))

    def _restore(self, hostname: str, address: str) -> None:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError as err:
            raise VipError(f"persisted VIP of {hostname}: {err}") from err
        if not self._usable(ip):
            raise VipError(
                f"persisted VIP {address} of {hostname} is not a usable address of {self._network}"
            )
        if ip in self._used:
            raise VipError(f"persisted VIP {address} of {hostname} is assigned twice")
        self._by_host[hostname] = address
        self._used.add(ip)

    def _usable(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        # The network address and the first host are reserved (the runtime's
        # bridge takes .1); so is the IPv4 broadcast address.
        if ip not in self._network:
            return False
        offset = int(ip) - int(self._network.network_address)
        if offset < 2:
            return False
        return not (self._network.version == 4 and ip == self._network.broadcast_address)

    def _free_addresses(self) -> Iterator[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        base = self._network.network_address
        last = self._network.num_addresses - (2 if self._network.version == 4 else 1)
        for offset in range(2, last + 1):
            candidate = base + offset
            if candidate not in self._used:
                yield candidate
