"""kube-proxy's job inside one pod: VIP:port -> endpoint DNAT.

Pods without a sidecar (and a sidecar pod's traffic that capture lets
through: excluded ports, uid 1337) still dial service VIPs. The rules live in
the pod's own netns, in chain MIZZEN-SERVICES of the nat table (DNAT, spread
evenly with `-m statistic`) and of the filter table (REJECT for services
without endpoints, and for the rest of the service range when given, so a
client fails at once instead of waiting for SYN retries to time out).

Ordering: DNAT ends nat OUTPUT traversal for the connection, so our jump must
come AFTER a sidecar's capture jump (ISTIO_OUTPUT), or we would steal the
traffic the sidecar must see. ensure_output_jumps() keeps ours last; call it
again after capture rules are installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mizzen.runtime import _exec

CHAIN = "MIZZEN-SERVICES"
_PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}


@dataclass(frozen=True)
class ServiceRule:
    vip: str
    port: int
    protocol: str  # "TCP" | "UDP" | "SCTP"
    endpoints: tuple[tuple[str, int], ...]


def _proto(protocol: str) -> str:
    try:
        return _PROTOCOLS[protocol.upper()]
    except KeyError:
        raise ValueError(f"unsupported protocol {protocol!r}: use TCP, UDP or SCTP") from None


def _match(rule: ServiceRule) -> str:
    p = _proto(rule.protocol)
    return f"-d {rule.vip}/32 -p {p} -m {p} --dport {rule.port}"


def render(services: Sequence[ServiceRule], reject_cidr: str | None = None) -> str:
    """iptables-restore input for both tables (use with --noflush).

    Declaring ':MIZZEN-SERVICES - [0:0]' under --noflush flushes just that
    chain, so the whole set is replaced in one atomic commit per table.
    """
    ordered = sorted(services, key=lambda s: (s.vip, s.port, s.protocol))
    nat = ["*nat", f":{CHAIN} - [0:0]"]
    flt = ["*filter", f":{CHAIN} - [0:0]"]
    for svc in ordered:
        match = _match(svc)
        comment = f'-m comment --comment "{svc.vip}:{svc.port}/{svc.protocol.upper()}"'
        eps = svc.endpoints
        if not eps:
            reject = "tcp-reset" if _proto(svc.protocol) == "tcp" else "icmp-port-unreachable"
            flt.append(f"-A {CHAIN} {match} {comment} -j REJECT --reject-with {reject}")
            continue
        for i, (ip, port) in enumerate(eps):
            remaining = len(eps) - i
            # Rule i catches 1/(n-i) of what rules 0..i-1 let through: each
            # endpoint gets 1/n overall; the last rule takes the rest.
            stat = (
                f"-m statistic --mode random --probability {1 / remaining:.10f} "
                if remaining > 1
                else ""
            )
            nat.append(f"-A {CHAIN} {match} {comment} {stat}-j DNAT --to-destination {ip}:{port}")
    if reject_cidr:
        # Unknown VIP:port: refuse now rather than let the host drop it.
        flt.append(f"-A {CHAIN} -d {reject_cidr} -p tcp -j REJECT --reject-with tcp-reset")
        flt.append(f"-A {CHAIN} -d {reject_cidr} -j REJECT --reject-with icmp-port-unreachable")
    nat.append("COMMIT")
    flt.append("COMMIT")
    return "\n".join(nat + flt) + "\n"


def _in_netns(netns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv]


def apply(netns: str, services: Sequence[ServiceRule], reject_cidr: str | None = None) -> None:
    """Replace the pod's service rules atomically and make sure OUTPUT jumps to them."""
    _exec.run(
        _in_netns(netns, ["iptables-restore", "-w", "5", "--noflush"]),
        input=render(services, reject_cidr),
    )
    ensure_output_jumps(netns)


def ensure_output_jumps(netns: str) -> None:
    """Make `-j MIZZEN-SERVICES` the last rule of OUTPUT in nat and filter.

    Appends first and deletes the older copy after, so there is never a
    moment without the jump.
    """
    jump = f"-A OUTPUT -j {CHAIN}"
    for table in ("nat", "filter"):
        rules = [
            r.strip()
            for r in _exec.run(
                _in_netns(netns, ["iptables", "-w", "5", "-t", table, "-S", "OUTPUT"])
            ).splitlines()
            if r.startswith("-A ")
        ]
        if rules.count(jump) == 1 and rules[-1] == jump:
            continue
        _exec.run(
            _in_netns(netns, ["iptables", "-w", "5", "-t", table, "-A", "OUTPUT", "-j", CHAIN])
        )
        # -D removes the first match: the older copies, never the one just added.
        for _ in range(rules.count(jump)):
            _exec.run(
                _in_netns(netns, ["iptables", "-w", "5", "-t", table, "-D", "OUTPUT", "-j", CHAIN])
            )


def remove(netns: str) -> None:
    """Drop our jumps and chains from the pod (idempotent)."""
    for table in ("nat", "filter"):
        base = _in_netns(netns, ["iptables", "-w", "5", "-t", table])
        while _exec.succeeds([*base, "-D", "OUTPUT", "-j", CHAIN]):
            pass
        _exec.succeeds([*base, "-F", CHAIN])
        _exec.succeeds([*base, "-X", CHAIN])
