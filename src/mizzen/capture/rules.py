"""Istio-style transparent capture as pure data: annotations in, iptables rules out.

Nothing here runs a process or touches a namespace; `mizzen.capture.iptables`
is the thin adapter that feeds `render()` to `iptables-restore` in a pod netns.

The rules reproduce the documented behaviour of Istio's `istio-iptables` (the
sidecar's init container) so that a pod annotated for Istio behaves the same
under Mizzen. Chain names and the order of the checks are Istio's, because
users debug with `iptables -t nat -S` and expect to recognise what they see:

    PREROUTING -p tcp -> ISTIO_INBOUND -> ISTIO_IN_REDIRECT (REDIRECT to 15006)
    OUTPUT     -p tcp -> ISTIO_OUTPUT  -> ISTIO_REDIRECT    (REDIRECT to 15001)

Only the IPv4 nat table is rendered (REDIRECT mode, not TPROXY); IPv6 ranges
from the annotations are parsed and validated but not rendered.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias

__all__ = [
    "ALL",
    "ALWAYS_EXCLUDED_INBOUND_PORTS",
    "ANNOTATION_EXCLUDE_INBOUND_PORTS",
    "ANNOTATION_EXCLUDE_OUTBOUND_IP_RANGES",
    "ANNOTATION_EXCLUDE_OUTBOUND_PORTS",
    "ANNOTATION_INCLUDE_INBOUND_PORTS",
    "ANNOTATION_INCLUDE_OUTBOUND_IP_RANGES",
    "ANNOTATION_INCLUDE_OUTBOUND_PORTS",
    "CAPTURE_CHAINS",
    "INBOUND_PASSTHROUGH_SOURCE",
    "ISTIO_INBOUND",
    "ISTIO_IN_REDIRECT",
    "ISTIO_OUTPUT",
    "ISTIO_REDIRECT",
    "AnnotationError",
    "CaptureConfig",
    "IPNetwork",
    "Rule",
    "build_rules",
    "render",
    "render_commands",
    "render_uninstall",
]

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Wildcard: TypeAlias = Literal["*"]

ALL: Final[Wildcard] = "*"

ANNOTATION_INCLUDE_INBOUND_PORTS: Final = "traffic.sidecar.istio.io/includeInboundPorts"
ANNOTATION_EXCLUDE_INBOUND_PORTS: Final = "traffic.sidecar.istio.io/excludeInboundPorts"
ANNOTATION_INCLUDE_OUTBOUND_PORTS: Final = "traffic.sidecar.istio.io/includeOutboundPorts"
ANNOTATION_EXCLUDE_OUTBOUND_PORTS: Final = "traffic.sidecar.istio.io/excludeOutboundPorts"
ANNOTATION_INCLUDE_OUTBOUND_IP_RANGES: Final = "traffic.sidecar.istio.io/includeOutboundIPRanges"
ANNOTATION_EXCLUDE_OUTBOUND_IP_RANGES: Final = "traffic.sidecar.istio.io/excludeOutboundIPRanges"

ISTIO_INBOUND: Final = "ISTIO_INBOUND"
ISTIO_IN_REDIRECT: Final = "ISTIO_IN_REDIRECT"
ISTIO_OUTPUT: Final = "ISTIO_OUTPUT"
ISTIO_REDIRECT: Final = "ISTIO_REDIRECT"
CAPTURE_CHAINS: Final = (ISTIO_INBOUND, ISTIO_REDIRECT, ISTIO_IN_REDIRECT, ISTIO_OUTPUT)

# Envoy's Prometheus endpoint (15090), health (15021) and merged metrics (15020)
# are served by the sidecar itself; redirecting them to 15006 would send the
# kubelet's probes and the scraper into the inbound listener. Istio's injector
# always puts them in excludeInboundPorts.
ALWAYS_EXCLUDED_INBOUND_PORTS: Final = (15090, 15021, 15020)

# The inbound passthrough cluster binds its upstream side to this address, so
# the OUTPUT chain can tell "Envoy delivering inbound traffic to the app" apart
# from "Envoy calling its own pod IP as a client".
INBOUND_PASSTHROUGH_SOURCE: Final = ipaddress.IPv4Network("127.0.0.6/32")
_LOCALHOST: Final = ipaddress.IPv4Network("127.0.0.1/32")
_LOOPBACK_V4: Final = ipaddress.IPv4Network("127.0.0.0/8")
_LOOPBACK_V6: Final = ipaddress.IPv6Network("::1/128")

# Istio parses ports with Go's strconv.ParseUint(s, 10, 16): ASCII digits only
# (no sign, no underscores, which Python's int() would accept), 0..65535.
_PORT_RE: Final = re.compile(r"[0-9]+")


class AnnotationError(ValueError):
    """A capture annotation has a value Istio would reject.

    `annotation` is the full annotation key, `item` the offending list item
    (or the whole value), so the message can point at the exact typo.
    """

    def __init__(self, annotation: str, item: str, reason: str) -> None:
        self.annotation = annotation
        self.item = item
        self.reason = reason
        super().__init__(f"annotation {annotation}: invalid item {item!r}: {reason}")


def _check_port(port: int, what: str) -> int:
    if not 0 <= port <= 65535:
        raise ValueError(f"{what}: port {port} out of range 0..65535")
    return port


def _unique(items: Iterable[int]) -> tuple[int, ...]:
    # Order is kept (rules appear in the order the user wrote them); duplicates
    # would only produce identical, dead iptables rules.
    return tuple(dict.fromkeys(items))


def _unique_nets(items: Iterable[IPNetwork]) -> tuple[IPNetwork, ...]:
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class CaptureConfig:
    """What a pod's capture rules redirect, with Istio's defaults.

    Port selections are either `"*"` (everything not excluded) or a tuple of
    ports; an empty tuple captures nothing in that direction, which is how
    Istio reads an empty `includeInboundPorts` / `includeOutboundIPRanges`.
    `exclude_inbound_ports` always contains `ALWAYS_EXCLUDED_INBOUND_PORTS`.
    """

    proxy_uid: int = 1337
    proxy_gid: int = 1337
    outbound_port: int = 15001
    inbound_port: int = 15006
    include_inbound_ports: tuple[int, ...] | Wildcard = ALL
    exclude_inbound_ports: tuple[int, ...] = ALWAYS_EXCLUDED_INBOUND_PORTS
    include_outbound_ports: tuple[int, ...] = ()
    exclude_outbound_ports: tuple[int, ...] = ()
    include_outbound_ip_ranges: tuple[IPNetwork, ...] | Wildcard = ALL
    exclude_outbound_ip_ranges: tuple[IPNetwork, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in ("proxy_uid", "proxy_gid"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name}: must be >= 0, got {value}")
        _check_port(self.outbound_port, "outbound_port")
        _check_port(self.inbound_port, "inbound_port")
        if self.include_inbound_ports != ALL:
            inc = self.include_inbound_ports
            for p in inc:
                _check_port(p, "include_inbound_ports")
            object.__setattr__(self, "include_inbound_ports", _unique(inc))
        for p in self.exclude_inbound_ports:
            _check_port(p, "exclude_inbound_ports")
        # The sidecar's own ports must never be captured, whatever the user
        # passed; merging here keeps that true for hand-built configs too.
        object.__setattr__(
            self,
            "exclude_inbound_ports",
            _unique((*ALWAYS_EXCLUDED_INBOUND_PORTS, *self.exclude_inbound_ports)),
        )
        for name in ("include_outbound_ports", "exclude_outbound_ports"):
            ports: tuple[int, ...] = getattr(self, name)
            for p in ports:
                _check_port(p, name)
            object.__setattr__(self, name, _unique(ports))
        if self.include_outbound_ip_ranges != ALL:
            object.__setattr__(
                self, "include_outbound_ip_ranges", _unique_nets(self.include_outbound_ip_ranges)
            )
        object.__setattr__(
            self, "exclude_outbound_ip_ranges", _unique_nets(self.exclude_outbound_ip_ranges)
        )

    @property
    def captures_inbound(self) -> bool:
        """False when `includeInboundPorts` is empty: Istio then does not even
        hook PREROUTING."""
        return self.include_inbound_ports != ()

    @property
    def captures_app_loopback(self) -> bool:
        """True when the user explicitly listed a loopback range in
        `includeOutboundIPRanges`; Istio then stops exempting the app's own
        loopback traffic (`-o lo ! --uid-owner` RETURN is not emitted)."""
        ranges = self.include_outbound_ip_ranges
        if ranges == ALL:
            return False
        return any(
            net.overlaps(_LOOPBACK_V4)
            if isinstance(net, ipaddress.IPv4Network)
            else net.overlaps(_LOOPBACK_V6)
            for net in ranges
        )

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, str]) -> CaptureConfig:
        """Read Istio's `traffic.sidecar.istio.io/*` capture annotations.

        Absent annotations keep Istio's defaults. Values follow Istio's
        injector validation: `*` (only where Istio allows it, and only as the
        whole value), or a comma list; whitespace around items and around the
        whole value is tolerated; an empty value means "none". Anything else
        raises `AnnotationError` (a `ValueError`) naming annotation and item.
        """
        a = annotations
        base = cls()
        include_inbound: tuple[int, ...] | Wildcard = base.include_inbound_ports
        if (v := a.get(ANNOTATION_INCLUDE_INBOUND_PORTS)) is not None:
            include_inbound = ALL if v == ALL else _parse_ports(ANNOTATION_INCLUDE_INBOUND_PORTS, v)
        include_ranges: tuple[IPNetwork, ...] | Wildcard = base.include_outbound_ip_ranges
        if (v := a.get(ANNOTATION_INCLUDE_OUTBOUND_IP_RANGES)) is not None:
            include_ranges = (
                ALL if v == ALL else _parse_cidrs(ANNOTATION_INCLUDE_OUTBOUND_IP_RANGES, v)
            )
        return cls(
            include_inbound_ports=include_inbound,
            exclude_inbound_ports=_parse_ports(
                ANNOTATION_EXCLUDE_INBOUND_PORTS, a.get(ANNOTATION_EXCLUDE_INBOUND_PORTS, "")
            ),
            include_outbound_ports=_parse_ports(
                ANNOTATION_INCLUDE_OUTBOUND_PORTS, a.get(ANNOTATION_INCLUDE_OUTBOUND_PORTS, "")
            ),
            exclude_outbound_ports=_parse_ports(
                ANNOTATION_EXCLUDE_OUTBOUND_PORTS, a.get(ANNOTATION_EXCLUDE_OUTBOUND_PORTS, "")
            ),
            include_outbound_ip_ranges=include_ranges,
            exclude_outbound_ip_ranges=_parse_cidrs(
                ANNOTATION_EXCLUDE_OUTBOUND_IP_RANGES,
                a.get(ANNOTATION_EXCLUDE_OUTBOUND_IP_RANGES, ""),
            ),
        )


def _split(value: str) -> list[str]:
    # Istio trims the whole value first, so "" and "  " both mean "no items";
    # an empty item inside a list ("80,,90", "80,") is an error, as in Istio.
    value = value.strip()
    if not value:
        return []
    return [item.strip() for item in value.split(",")]


def _parse_ports(annotation: str, value: str) -> tuple[int, ...]:
    ports: list[int] = []
    for item in _split(value):
        if not _PORT_RE.fullmatch(item):
            raise AnnotationError(annotation, item, "not a port number")
        port = int(item)
        if port > 65535:
            raise AnnotationError(annotation, item, "port out of range 0..65535")
        ports.append(port)
    return tuple(ports)


def _parse_cidrs(annotation: str, value: str) -> tuple[IPNetwork, ...]:
    nets: list[IPNetwork] = []
    for item in _split(value):
        # Istio uses Go's netip.ParsePrefix: the "/len" is mandatory and host
        # bits may be set ("10.1.2.3/8" is accepted and means 10.0.0.0/8).
        if "/" not in item:
            raise AnnotationError(annotation, item, "not a CIDR (want ADDRESS/LENGTH)")
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise AnnotationError(annotation, item, f"not a CIDR: {exc}") from None
    return tuple(nets)


@dataclass(frozen=True)
class Rule:
    """One `-A CHAIN ...` rule of the nat table, with the reason it exists."""

    chain: str
    spec: tuple[str, ...]
    why: str

    def restore_line(self) -> str:
        return " ".join(("-A", self.chain, *self.spec))


def _v4(nets: Iterable[IPNetwork]) -> list[ipaddress.IPv4Network]:
    return [n for n in nets if isinstance(n, ipaddress.IPv4Network)]


def _inbound_rules(config: CaptureConfig) -> list[Rule]:
    if not config.captures_inbound:
        return []
    rules = [
        Rule(
            "PREROUTING",
            ("-p", "tcp", "-j", ISTIO_INBOUND),
            "every TCP packet arriving at the pod is classified by ISTIO_INBOUND",
        )
    ]
    if config.include_inbound_ports == ALL:
        rules += [
            Rule(
                ISTIO_INBOUND,
                ("-p", "tcp", "--dport", str(p), "-j", "RETURN"),
                f"inbound port {p} is excluded: delivered straight to the app or sidecar",
            )
            for p in config.exclude_inbound_ports
        ]
        rules.append(
            Rule(
                ISTIO_INBOUND,
                ("-p", "tcp", "-j", ISTIO_IN_REDIRECT),
                "includeInboundPorts is '*': every other inbound port goes to Envoy",
            )
        )
    else:
        # With an explicit include list Istio ignores the exclude list: a port
        # not listed simply falls off the end of the chain (RETURN).
        rules += [
            Rule(
                ISTIO_INBOUND,
                ("-p", "tcp", "--dport", str(p), "-j", ISTIO_IN_REDIRECT),
                f"inbound port {p} is listed in includeInboundPorts: send it to Envoy",
            )
            for p in config.include_inbound_ports
        ]
    return rules


def _owner_rules(config: CaptureConfig, match: str, owner: int) -> list[Rule]:
    who = f"{match.removesuffix('-owner').removeprefix('--')} {owner}"
    rules = [
        Rule(
            ISTIO_OUTPUT,
            (
                *("!", "-d", str(_LOCALHOST), "-o", "lo", "-p", "tcp"),
                *("-m", "owner", match, str(owner), "-j", ISTIO_IN_REDIRECT),
            ),
            f"Envoy ({who}) calling its own pod IP (app calls its own service): send it "
            "through the inbound listener so server-side policy applies",
        )
    ]
    if not config.captures_app_loopback:
        rules.append(
            Rule(
                ISTIO_OUTPUT,
                ("-o", "lo", "-m", "owner", "!", match, str(owner), "-j", "RETURN"),
                "the app calling itself over loopback by pod IP bypasses Envoy "
                "(not emitted when includeOutboundIPRanges lists loopback)",
            )
        )
    rules.append(
        Rule(
            ISTIO_OUTPUT,
            ("-m", "owner", match, str(owner), "-j", "RETURN"),
            f"Envoy's own outbound traffic ({who}) must not loop back into Envoy",
        )
    )
    return rules


def _outbound_rules(config: CaptureConfig) -> list[Rule]:
    rules = [
        Rule(
            "OUTPUT",
            ("-p", "tcp", "-j", ISTIO_OUTPUT),
            "every TCP connection opened in the pod is classified by ISTIO_OUTPUT",
        )
    ]
    # Port exclusions come first so that they win even over the "call back to
    # self" redirect below (Akka/Pekko remoting relies on this).
    rules += [
        Rule(
            ISTIO_OUTPUT,
            ("-p", "tcp", "--dport", str(p), "-j", "RETURN"),
            f"outbound port {p} is excluded (excludeOutboundPorts): bypass Envoy",
        )
        for p in config.exclude_outbound_ports
    ]
    rules.append(
        Rule(
            ISTIO_OUTPUT,
            ("-s", str(INBOUND_PASSTHROUGH_SOURCE), "-o", "lo", "-j", "RETURN"),
            "Envoy's inbound passthrough delivers to the app from 127.0.0.6: let it through",
        )
    )
    rules += _owner_rules(config, "--uid-owner", config.proxy_uid)
    rules += _owner_rules(config, "--gid-owner", config.proxy_gid)
    rules.append(
        Rule(
            ISTIO_OUTPUT,
            ("-d", str(_LOCALHOST), "-j", "RETURN"),
            "explicit localhost (Envoy-aware apps, container-to-container) bypasses Envoy",
        )
    )
    rules += [
        Rule(
            ISTIO_OUTPUT,
            ("-d", str(net), "-j", "RETURN"),
            f"{net} is excluded (excludeOutboundIPRanges): bypass Envoy",
        )
        for net in _v4(config.exclude_outbound_ip_ranges)
    ]
    rules += [
        Rule(
            ISTIO_OUTPUT,
            ("-p", "tcp", "--dport", str(p), "-j", ISTIO_REDIRECT),
            f"outbound port {p} is listed in includeOutboundPorts: send it to Envoy",
        )
        for p in config.include_outbound_ports
    ]
    if config.include_outbound_ip_ranges == ALL:
        rules.append(
            Rule(
                ISTIO_OUTPUT,
                ("-j", ISTIO_REDIRECT),
                "includeOutboundIPRanges is '*': everything else goes to Envoy",
            )
        )
    else:
        rules += [
            Rule(
                ISTIO_OUTPUT,
                ("-d", str(net), "-j", ISTIO_REDIRECT),
                f"{net} is listed in includeOutboundIPRanges: send it to Envoy",
            )
            for net in _v4(config.include_outbound_ip_ranges)
        ]
    return rules


def build_rules(config: CaptureConfig) -> tuple[Rule, ...]:
    """All nat-table rules for `config`, in the order they must be appended."""
    return (
        Rule(
            ISTIO_REDIRECT,
            ("-p", "tcp", "-j", "REDIRECT", "--to-ports", str(config.outbound_port)),
            "outbound capture: hand the connection to Envoy's virtualOutbound listener",
        ),
        Rule(
            ISTIO_IN_REDIRECT,
            ("-p", "tcp", "-j", "REDIRECT", "--to-ports", str(config.inbound_port)),
            "inbound capture: hand the connection to Envoy's virtualInbound listener",
        ),
        *_inbound_rules(config),
        *_outbound_rules(config),
    )


def render(config: CaptureConfig) -> str:
    """`iptables-restore --noflush` input for the nat table.

    The `:CHAIN` lines create the four capture chains (and empty them if they
    exist); built-in chains are only appended to, never flushed.
    """
    lines = [
        "# Mizzen transparent capture (Istio-compatible), nat table",
        "*nat",
        *(f":{chain} - [0:0]" for chain in CAPTURE_CHAINS),
    ]
    for rule in build_rules(config):
        lines.append(f"# {rule.why}")
        lines.append(rule.restore_line())
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def render_commands(config: CaptureConfig) -> list[str]:
    """The same rules as `iptables -t nat ...` commands, for `--dry-run`."""
    commands = [f"iptables -t nat -N {chain}" for chain in CAPTURE_CHAINS]
    commands += [f"iptables -t nat {rule.restore_line()}" for rule in build_rules(config)]
    return commands


_JUMP_RE: Final = re.compile(
    r"^-A (PREROUTING|OUTPUT) (.* )?-j (" + "|".join(CAPTURE_CHAINS) + r")(\s.*)?$"
)


def render_uninstall(saved_nat: str) -> str:
    """`iptables-restore --noflush` input that removes capture from a pod.

    `saved_nat` is `iptables-save -t nat` output from the same namespace. Only
    the jumps into the capture chains and the chains themselves are removed,
    so rules others added to the pod (kube-proxy-like DNAT, say) survive.
    Returns "" when nothing is installed.
    """
    jumps: list[str] = []
    chains: list[str] = []
    for line in saved_nat.splitlines():
        line = line.strip()
        if _JUMP_RE.match(line):
            jumps.append("-D" + line[2:])
        elif line.startswith(":") and line[1:].split(" ", 1)[0] in CAPTURE_CHAINS:
            chains.append(line[1:].split(" ", 1)[0])
    if not jumps and not chains:
        return ""
    # Flush all before deleting any: the capture chains jump into each other.
    body = [*jumps, *(f"-F {c}" for c in chains), *(f"-X {c}" for c in chains)]
    return "\n".join(["*nat", *body, "COMMIT"]) + "\n"
