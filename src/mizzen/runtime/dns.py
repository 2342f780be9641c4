"""Per-pod name resolution without a DNS server.

`ip netns exec NS` bind-mounts /etc/netns/NS/{hosts,resolv.conf} over /etc,
so each pod sees its own hosts file. The bind mount pins the file's inode:
updates are written in place (same inode) because a rename would leave
running processes reading the old file.

resolv.conf points at 127.0.0.1 (port 53) inside the pod's own namespace,
where nothing listens: a lookup of a name missing from hosts gets ICMP port
unreachable at once and fails in milliseconds, and no query can ever leave
the pod. `timeout:1 attempts:1` bounds the worst case to about a second if a
process in the pod swallows the query, and there is no `search` line, so a
short name is never expanded into queries for outside domains.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

# One address, or several: a headless Service's name resolves to each of
# its ready pods (one hosts line per address; glibc returns them all).
Addresses = str | tuple[str, ...]

ETC_NETNS = Path("/etc/netns")

RESOLV_CONF = (
    "# written by mizzen: names resolve only through this pod's /etc/hosts\n"
    "nameserver 127.0.0.1\n"
    "options timeout:1 attempts:1\n"
)


def service_names(
    name: str, namespace: str, pod_namespace: str, domain: str = "cluster.local"
) -> list[str]:
    """The names a pod in pod_namespace uses for service namespace/name."""
    names = [f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.{domain}"]
    if namespace == pod_namespace:
        names.insert(0, name)
    return names


def names_for_services(
    services: Iterable[tuple[str, str, Addresses]],
    pod_namespace: str,
    domain: str = "cluster.local",
) -> dict[str, Addresses]:
    """Map every name of (name, namespace, address(es)) services to them."""
    out: dict[str, Addresses] = {}
    for name, namespace, ip in services:
        for n in service_names(name, namespace, pod_namespace, domain):
            out[n] = ip
    return out


def render_hosts(pod_hostname: str, pod_ip: str, names: Mapping[str, Addresses]) -> str:
    """A hosts file: localhost, the pod itself, then names grouped by address.

    Output is deterministic (sorted) so rewriting with unchanged input does
    not change the file.
    """
    lines = [
        "# written by mizzen: rewritten in place when services change",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        f"{pod_ip}\t{pod_hostname}",
    ]
    by_ip: dict[str, list[str]] = {}
    for n, addresses in names.items():
        if n == pod_hostname or n == "localhost":
            continue
        for ip in (addresses,) if isinstance(addresses, str) else addresses:
            by_ip.setdefault(ip, []).append(n)
    for ip in sorted(by_ip, key=_ip_key):
        lines.append(f"{ip}\t{' '.join(sorted(by_ip[ip], key=lambda s: (s.count('.'), s)))}")
    return "\n".join(lines) + "\n"


def _ip_key(ip: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in ip.split("."))
    except ValueError:
        return (1 << 16,)


def write_in_place(path: Path, text: str) -> None:
    """Replace path's content keeping its inode (see module docstring)."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
    finally:
        os.close(fd)


def write_pod_dns(netns: str, hosts: str, etc_netns: Path = ETC_NETNS) -> Path:
    """Create/update /etc/netns/<netns>/{hosts,resolv.conf}; returns the dir.

    Must run before the first `ip netns exec` in the pod: files created later
    are not bind-mounted into processes already running.
    """
    d = etc_netns / netns
    d.mkdir(parents=True, exist_ok=True, mode=0o755)
    write_in_place(d / "hosts", hosts)
    write_in_place(d / "resolv.conf", RESOLV_CONF)
    return d


def write_hosts(
    netns: str,
    pod_hostname: str,
    pod_ip: str,
    names: Mapping[str, Addresses],
    etc_netns: Path = ETC_NETNS,
) -> Path:
    """render_hosts + write_pod_dns in one call; returns the /etc/netns dir."""
    return write_pod_dns(netns, render_hosts(pod_hostname, pod_ip, names), etc_netns)


def remove_pod_dns(netns: str, etc_netns: Path = ETC_NETNS) -> bool:
    d = etc_netns / netns
    if not d.exists():
        return False
    shutil.rmtree(d, ignore_errors=True)
    return True
