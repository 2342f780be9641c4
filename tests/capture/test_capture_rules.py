"""Table tests for annotation parsing and the rendered nat rules (pure, no root)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from mizzen.capture.rules import (
    ALL,
    ANNOTATION_EXCLUDE_INBOUND_PORTS,
    ANNOTATION_EXCLUDE_OUTBOUND_IP_RANGES,
    ANNOTATION_EXCLUDE_OUTBOUND_PORTS,
    ANNOTATION_INCLUDE_INBOUND_PORTS,
    ANNOTATION_INCLUDE_OUTBOUND_IP_RANGES,
    ANNOTATION_INCLUDE_OUTBOUND_PORTS,
    AnnotationError,
    CaptureConfig,
    build_rules,
    render,
    render_commands,
    render_uninstall,
)

AKKA = {
    ANNOTATION_INCLUDE_INBOUND_PORTS: "8080",
    ANNOTATION_EXCLUDE_OUTBOUND_PORTS: "2552,8558",
}
PEKKO = {
    ANNOTATION_INCLUDE_INBOUND_PORTS: "8080",
    ANNOTATION_EXCLUDE_OUTBOUND_PORTS: "7355,7626",
}


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text, strict=False)


# ---------------------------------------------------------------------------
# from_annotations


def test_defaults_without_annotations() -> None:
    config = CaptureConfig.from_annotations({})
    assert config == CaptureConfig()
    assert config.proxy_uid == config.proxy_gid == 1337
    assert (config.outbound_port, config.inbound_port) == (15001, 15006)
    assert config.include_inbound_ports == ALL
    assert config.exclude_inbound_ports == (15090, 15021, 15020)
    assert config.include_outbound_ip_ranges == ALL
    assert config.include_outbound_ports == config.exclude_outbound_ports == ()
    assert config.exclude_outbound_ip_ranges == ()


@pytest.mark.parametrize(
    ("annotations", "field", "expected"),
    [
        (AKKA, "include_inbound_ports", (8080,)),
        (AKKA, "exclude_outbound_ports", (2552, 8558)),
        (PEKKO, "include_inbound_ports", (8080,)),
        (PEKKO, "exclude_outbound_ports", (7355, 7626)),
        ({ANNOTATION_INCLUDE_INBOUND_PORTS: "*"}, "include_inbound_ports", ALL),
        ({ANNOTATION_INCLUDE_INBOUND_PORTS: ""}, "include_inbound_ports", ()),
        ({ANNOTATION_INCLUDE_INBOUND_PORTS: "  "}, "include_inbound_ports", ()),
        ({ANNOTATION_INCLUDE_INBOUND_PORTS: " 80 , 443 "}, "include_inbound_ports", (80, 443)),
        ({ANNOTATION_INCLUDE_INBOUND_PORTS: "80,80,443"}, "include_inbound_ports", (80, 443)),
        ({ANNOTATION_INCLUDE_INBOUND_PORTS: "0,65535"}, "include_inbound_ports", (0, 65535)),
        (
            {ANNOTATION_EXCLUDE_INBOUND_PORTS: "22, 9090"},
            "exclude_inbound_ports",
            (15090, 15021, 15020, 22, 9090),
        ),
        (
            {ANNOTATION_EXCLUDE_INBOUND_PORTS: "15021"},
            "exclude_inbound_ports",
            (15090, 15021, 15020),
        ),
        ({ANNOTATION_EXCLUDE_INBOUND_PORTS: ""}, "exclude_inbound_ports", (15090, 15021, 15020)),
        ({ANNOTATION_INCLUDE_OUTBOUND_PORTS: "5432"}, "include_outbound_ports", (5432,)),
        ({ANNOTATION_EXCLUDE_OUTBOUND_PORTS: ""}, "exclude_outbound_ports", ()),
        ({ANNOTATION_INCLUDE_OUTBOUND_IP_RANGES: "*"}, "include_outbound_ip_ranges", ALL),
        ({ANNOTATION_INCLUDE_OUTBOUND_IP_RANGES: ""}, "include_outbound_ip_ranges", ()),
        (
            {ANNOTATION_INCLUDE_OUTBOUND_IP_RANGES: "10.0.0.0/8, 172.16.0.0/12"},
            "include_outbound_ip_ranges",
            (net("10.0.0.0/8"), net("172.16.0.0/12")),
        ),
        (
            # Go's netip.ParsePrefix accepts host bits; the range is the masked one.
            {ANNOTATION_EXCLUDE_OUTBOUND_IP_RANGES: "10.1.2.3/8,fd00::/8"},
            "exclude_outbound_ip_ranges",
            (net("10.0.0.0/8"), net("fd00::/8")),
        ),
        ({ANNOTATION_EXCLUDE_OUTBOUND_IP_RANGES: ""}, "exclude_outbound_ip_ranges", ()),
        ({"unrelated/annotation": "x"}, "include_inbound_ports", ALL),
    ],
)
def test_from_annotations(annotations: dict[str, str], field: str, expected: object) -> None:
    assert getattr(CaptureConfig.from_annotations(annotations), field) == expected


@pytest.mark.parametrize(
    ("annotation", "value", "bad_item"),
    [
        (ANNOTATION_INCLUDE_INBOUND_PORTS, "8080,http", "http"),
        (ANNOTATION_INCLUDE_INBOUND_PORTS, " * ", "*"),  # '*' only as the exact value
        (ANNOTATION_INCLUDE_INBOUND_PORTS, "80,*", "*"),
        (ANNOTATION_INCLUDE_INBOUND_PORTS, "80,,90", ""),
        (ANNOTATION_INCLUDE_INBOUND_PORTS, "80,", ""),
        (ANNOTATION_EXCLUDE_INBOUND_PORTS, "*", "*"),  # exclusions take no wildcard
        (ANNOTATION_EXCLUDE_INBOUND_PORTS, "65536", "65536"),
        (ANNOTATION_INCLUDE_OUTBOUND_PORTS, "-1", "-1"),
        (ANNOTATION_EXCLUDE_OUTBOUND_PORTS, "2552;8558", "2552;8558"),
        (ANNOTATION_EXCLUDE_OUTBOUND_PORTS, "+2552", "+2552"),
        (ANNOTATION_EXCLUDE_OUTBOUND_PORTS, "8_558", "8_558"),
        (ANNOTATION_INCLUDE_OUTBOUND_IP_RANGES, "10.0.0.1", "10.0.0.1"),  # prefix required
        (ANNOTATION_INCLUDE_OUTBOUND_IP_RANGES, "10.0.0.0/33", "10.0.0.0/33"),
        (ANNOTATION_INCLUDE_OUTBOUND_IP_RANGES, "10.0.0.0/8,*", "*"),
        (ANNOTATION_EXCLUDE_OUTBOUND_IP_RANGES, "*", "*"),
        (ANNOTATION_EXCLUDE_OUTBOUND_IP_RANGES, "300.0.0.0/8", "300.0.0.0/8"),
    ],
)
def test_invalid_annotation_names_annotation_and_item(
    annotation: str, value: str, bad_item: str
) -> None:
    with pytest.raises(ValueError) as info:
        CaptureConfig.from_annotations({annotation: value})
    err = info.value
    assert isinstance(err, AnnotationError)
    assert err.annotation == annotation
    assert err.item == bad_item
    assert annotation in str(err) and repr(bad_item) in str(err)


def test_hand_built_config_keeps_sidecar_ports_excluded() -> None:
    config = CaptureConfig(exclude_inbound_ports=(22,))
    assert config.exclude_inbound_ports == (15090, 15021, 15020, 22)


@pytest.mark.parametrize(
    "kwargs",
    [{"outbound_port": 70000}, {"include_inbound_ports": (-1,)}, {"proxy_uid": -5}],
)
def test_hand_built_config_is_validated(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        CaptureConfig(**kwargs)


# ---------------------------------------------------------------------------
# rendered rules

PREAMBLE = [
    "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
    "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
]
OWNER_BLOCK = [
    "-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN",
    "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT",
    "-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN",
    "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
    "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT",
    "-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN",
    "-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN",
    "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
]


def lines(config: CaptureConfig) -> list[str]:
    return [rule.restore_line() for rule in build_rules(config)]


def test_default_rules() -> None:
    assert lines(CaptureConfig()) == [
        *PREAMBLE,
        "-A PREROUTING -p tcp -j ISTIO_INBOUND",
        "-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN",
        "-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN",
        "-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN",
        "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
        "-A OUTPUT -p tcp -j ISTIO_OUTPUT",
        *OWNER_BLOCK,
        "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
    ]


@pytest.mark.parametrize(("annotations", "ports"), [(AKKA, (2552, 8558)), (PEKKO, (7355, 7626))])
def test_seed_rules(annotations: dict[str, str], ports: tuple[int, int]) -> None:
    a, b = ports
    assert lines(CaptureConfig.from_annotations(annotations)) == [
        *PREAMBLE,
        "-A PREROUTING -p tcp -j ISTIO_INBOUND",
        # Only 8080 is redirected; remoting/management fall off ISTIO_INBOUND.
        "-A ISTIO_INBOUND -p tcp --dport 8080 -j ISTIO_IN_REDIRECT",
        "-A OUTPUT -p tcp -j ISTIO_OUTPUT",
        # Port exclusions precede everything else in ISTIO_OUTPUT.
        f"-A ISTIO_OUTPUT -p tcp --dport {a} -j RETURN",
        f"-A ISTIO_OUTPUT -p tcp --dport {b} -j RETURN",
        *OWNER_BLOCK,
        "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
    ]


def test_empty_include_inbound_disables_inbound_hook() -> None:
    rendered = lines(CaptureConfig.from_annotations({ANNOTATION_INCLUDE_INBOUND_PORTS: ""}))
    assert not any("PREROUTING" in line or "ISTIO_INBOUND " in line for line in rendered)


def test_include_list_ignores_exclude_list() -> None:
    config = CaptureConfig.from_annotations(
        {ANNOTATION_INCLUDE_INBOUND_PORTS: "8080", ANNOTATION_EXCLUDE_INBOUND_PORTS: "8080"}
    )
    assert "-A ISTIO_INBOUND -p tcp --dport 8080 -j ISTIO_IN_REDIRECT" in lines(config)
    assert not any("RETURN" in line and "ISTIO_INBOUND" in line for line in lines(config))


def test_outbound_ranges_and_ports() -> None:
    config = CaptureConfig.from_annotations(
        {
            ANNOTATION_INCLUDE_OUTBOUND_IP_RANGES: "10.96.0.0/12,fd00::/8",
            ANNOTATION_EXCLUDE_OUTBOUND_IP_RANGES: "10.96.0.10/32",
            ANNOTATION_INCLUDE_OUTBOUND_PORTS: "5432",
        }
    )
    assert lines(config)[-4:] == [
        "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
        "-A ISTIO_OUTPUT -d 10.96.0.10/32 -j RETURN",
        "-A ISTIO_OUTPUT -p tcp --dport 5432 -j ISTIO_REDIRECT",
        "-A ISTIO_OUTPUT -d 10.96.0.0/12 -j ISTIO_REDIRECT",
    ]
    # IPv6 ranges are parsed but only the IPv4 table is rendered.
    assert not any("fd00" in line for line in lines(config))


def test_empty_include_ranges_redirects_nothing_by_address() -> None:
    config = CaptureConfig.from_annotations({ANNOTATION_INCLUDE_OUTBOUND_IP_RANGES: ""})
    assert not any(line.endswith("-j ISTIO_REDIRECT") for line in lines(config))


def test_loopback_in_include_ranges_stops_exempting_app_loopback() -> None:
    config = CaptureConfig.from_annotations({ANNOTATION_INCLUDE_OUTBOUND_IP_RANGES: "127.0.0.0/8"})
    assert config.captures_app_loopback
    assert not any("! --uid-owner" in line or "! --gid-owner" in line for line in lines(config))
    assert not CaptureConfig().captures_app_loopback


def test_custom_proxy_identity_and_ports() -> None:
    config = CaptureConfig(proxy_uid=2000, proxy_gid=3000, outbound_port=16001, inbound_port=16006)
    rendered = lines(config)
    assert "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 16001" in rendered
    assert "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 16006" in rendered
    assert "-A ISTIO_OUTPUT -m owner --uid-owner 2000 -j RETURN" in rendered
    assert "-A ISTIO_OUTPUT -m owner --gid-owner 3000 -j RETURN" in rendered


def test_every_rule_says_why() -> None:
    assert all(rule.why for rule in build_rules(CaptureConfig.from_annotations(AKKA)))


def test_render_is_restore_input_with_comments() -> None:
    text = render(CaptureConfig.from_annotations(AKKA))
    body = text.splitlines()
    assert body[1] == "*nat"
    assert body[2:6] == [
        ":ISTIO_INBOUND - [0:0]",
        ":ISTIO_REDIRECT - [0:0]",
        ":ISTIO_IN_REDIRECT - [0:0]",
        ":ISTIO_OUTPUT - [0:0]",
    ]
    assert body[-1] == "COMMIT"
    rules_and_comments = body[6:-1]
    # Each rule is preceded by a comment giving its reason.
    assert [line for line in rules_and_comments if not line.startswith("#")] == lines(
        CaptureConfig.from_annotations(AKKA)
    )
    assert all(rules_and_comments[i].startswith("# ") for i in range(0, len(rules_and_comments), 2))


def test_render_commands() -> None:
    commands = render_commands(CaptureConfig.from_annotations(PEKKO))
    assert commands[:4] == [
        "iptables -t nat -N ISTIO_INBOUND",
        "iptables -t nat -N ISTIO_REDIRECT",
        "iptables -t nat -N ISTIO_IN_REDIRECT",
        "iptables -t nat -N ISTIO_OUTPUT",
    ]
    assert "iptables -t nat -A ISTIO_OUTPUT -p tcp --dport 7355 -j RETURN" in commands
    assert len(commands) == 4 + len(build_rules(CaptureConfig.from_annotations(PEKKO)))


SAVED = """\
# Generated by iptables-save v1.8.9
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:ISTIO_INBOUND - [0:0]
:ISTIO_IN_REDIRECT - [0:0]
:ISTIO_OUTPUT - [0:0]
:ISTIO_REDIRECT - [0:0]
:KUBE_LIKE - [0:0]
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A OUTPUT -d 198.19.240.100/32 -j KUBE_LIKE
-A OUTPUT -p tcp -j ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp -m tcp --dport 8080 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
COMMIT
"""


def test_render_uninstall_removes_only_capture() -> None:
    assert render_uninstall(SAVED).splitlines() == [
        "*nat",
        "-D PREROUTING -p tcp -j ISTIO_INBOUND",
        "-D OUTPUT -p tcp -j ISTIO_OUTPUT",
        "-F ISTIO_INBOUND",
        "-F ISTIO_IN_REDIRECT",
        "-F ISTIO_OUTPUT",
        "-F ISTIO_REDIRECT",
        "-X ISTIO_INBOUND",
        "-X ISTIO_IN_REDIRECT",
        "-X ISTIO_OUTPUT",
        "-X ISTIO_REDIRECT",
        "COMMIT",
    ]


def test_render_uninstall_when_nothing_installed() -> None:
    assert render_uninstall("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n") == ""
