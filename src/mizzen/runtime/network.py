"""Bridge, pod namespaces and veths (adapter over `ip`).

Every link gets the ifalias ``mizzen:<mesh>`` so that `down` finds them even
when state.json is gone. A pod gets no default route: only its subnet
(connected) and the mesh's service range via the bridge address. A VIP
connect() therefore has a route, so OUTPUT-chain DNAT/REDIRECT in the pod can
rewrite it; anything left unrewritten reaches the host, which drops it because
forwarding is off. Nothing can leave the machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_interface
from pathlib import Path

from mizzen.runtime import _exec
from mizzen.runtime.addresses import MeshAddresses, link_alias

_BRIDGE_NF = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")


@dataclass(frozen=True)
class Link:
    name: str
    alias: str
    kind: str


def create_bridge(addrs: MeshAddresses, mesh: str) -> None:
    """Create and bring up the mesh bridge holding host_ip/22.

    Fails with CommandError if the bridge exists: that is how two `up`s
    racing for one slot find out.
    """
    br = addrs.bridge
    _exec.run(["ip", "link", "add", "name", br, "type", "bridge"])
    try:
        _exec.run(["ip", "link", "set", "dev", br, "alias", link_alias(mesh)])
        prefix = addrs.pod_subnet.prefixlen
        _exec.run(["ip", "addr", "add", f"{addrs.host_ip}/{prefix}", "dev", br])
        _exec.run(["ip", "link", "set", "dev", br, "up"])
    except Exception:
        delete_link(br)
        raise


def add_pod(addrs: MeshAddresses, mesh: str, netns: str, veth: str, ip: IPv4Address) -> None:
    """Create netns with eth0 (ip/22) wired to the bridge through veth."""
    _exec.run(["ip", "netns", "add", netns])
    try:
        # Creating the peer straight inside the netns avoids a window where
        # an 'eth0' exists in the host namespace.
        _exec.run(
            [
                "ip",
                "link",
                "add",
                "name",
                veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                netns,
            ]
        )
        _exec.run(["ip", "link", "set", "dev", veth, "alias", link_alias(mesh)])
        _exec.run(["ip", "link", "set", "dev", veth, "master", addrs.bridge, "up"])
        n = ["ip", "-n", netns]
        _exec.run([*n, "link", "set", "dev", "lo", "up"])
        _exec.run([*n, "addr", "add", f"{ip}/{addrs.pod_subnet.prefixlen}", "dev", "eth0"])
        _exec.run([*n, "link", "set", "dev", "eth0", "up"])
        _exec.run(
            [*n, "route", "add", str(addrs.service_range), "via", str(addrs.host_ip), "dev", "eth0"]
        )
    except Exception:
        remove_pod(netns, veth)
        raise


def remove_pod(netns: str, veth: str | None = None) -> bool:
    """Delete the pod's netns (which also deletes its veth pair). Idempotent;
    returns True if something was removed. Kill the pod's processes first, or
    the namespace lives on, unnamed, as long as they do."""
    removed = _exec.succeeds(["ip", "netns", "del", netns])
    if veth:
        removed = delete_link(veth) or removed
    return removed


def delete_link(name: str) -> bool:
    """Delete a link if it exists; True if it did."""
    return _exec.succeeds(["ip", "link", "del", "dev", name])


def list_netns() -> list[str]:
    out = _exec.run(["ip", "netns", "list"], check=False)
    # Lines look like "name (id: 3)" or just "name".
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def list_links() -> list[Link]:
    out = _exec.run(["ip", "-j", "-d", "link", "show"], check=False)
    try:
        raw = json.loads(out or "[]")
    except ValueError:
        return []
    links = []
    for entry in raw:
        kind = str(entry.get("linkinfo", {}).get("info_kind", ""))
        links.append(
            Link(name=str(entry.get("ifname", "")), alias=str(entry.get("ifalias", "")), kind=kind)
        )
    return links


def host_networks() -> list[IPv4Network]:
    """IPv4 networks configured on host interfaces (so slots avoid them)."""
    out = _exec.run(["ip", "-j", "-4", "addr", "show"], check=False)
    try:
        raw = json.loads(out or "[]")
    except ValueError:
        return []
    nets = []
    for entry in raw:
        for a in entry.get("addr_info", []):
            iface = ip_interface(f"{a['local']}/{a['prefixlen']}")
            nets.append(IPv4Network(iface.network))
    return nets


def pod_routes(netns: str) -> str:
    """`ip route` as seen inside the pod (for diagnostics and tests)."""
    return _exec.run(["ip", "-n", netns, "route", "show"])


def forward_warning_from(bridge_nf_call_iptables: str | None, forward_rules: str) -> str | None:
    """Pure core of forward_warning().

    With bridge-nf-call-iptables=1, bridged pod-to-pod frames traverse the
    host's FORWARD chain; a DROP policy there (Docker sets one) silently
    breaks pod-to-pod traffic.
    """
    if bridge_nf_call_iptables is None or bridge_nf_call_iptables.strip() != "1":
        return None
    for line in forward_rules.splitlines():
        if line.strip() == "-P FORWARD DROP":
            return (
                "the host FORWARD chain drops by default (Docker does this) and "
                "net.bridge.bridge-nf-call-iptables=1, so pods cannot reach each other: "
                "allow mesh bridges with `iptables -I FORWARD -i mz+ -o mz+ -j ACCEPT`"
            )
    return None


def forward_warning() -> str | None:
    """A one-line warning if the host firewall will drop pod-to-pod traffic.

    Only reports: changing host firewall rules silently is not ours to do.
    """
    try:
        bridge_nf: str | None = _BRIDGE_NF.read_text()
    except OSError:
        bridge_nf = None  # br_netfilter not loaded: bridged traffic skips iptables
    if bridge_nf is None or bridge_nf.strip() != "1":
        return None
    rules = _exec.run(["iptables", "-w", "5", "-S", "FORWARD"], check=False)
    return forward_warning_from(bridge_nf, rules)
