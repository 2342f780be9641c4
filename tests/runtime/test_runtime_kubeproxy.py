from __future__ import annotations

import pytest

from mizzen.runtime.kubeproxy import ServiceRule, render


def test_render_spreads_evenly_and_last_rule_catches_rest() -> None:
    text = render(
        [
            ServiceRule(
                "198.19.0.10",
                80,
                "TCP",
                (("198.18.0.2", 8080), ("198.18.0.3", 8080), ("198.18.0.4", 8080)),
            )
        ]
    )
    m = '-d 198.19.0.10/32 -p tcp -m tcp --dport 80 -m comment --comment "198.19.0.10:80/TCP"'
    assert text == (
        "*nat\n"
        ":MIZZEN-SERVICES - [0:0]\n"
        f"-A MIZZEN-SERVICES {m} -m statistic --mode random --probability 0.3333333333 "
        "-j DNAT --to-destination 198.18.0.2:8080\n"
        f"-A MIZZEN-SERVICES {m} -m statistic --mode random --probability 0.5000000000 "
        "-j DNAT --to-destination 198.18.0.3:8080\n"
        f"-A MIZZEN-SERVICES {m} -j DNAT --to-destination 198.18.0.4:8080\n"
        "COMMIT\n"
        "*filter\n"
        ":MIZZEN-SERVICES - [0:0]\n"
        "COMMIT\n"
    )


def test_render_rejects_services_without_endpoints_and_unknown_vips() -> None:
    text = render(
        [ServiceRule("198.19.0.11", 53, "UDP", ()), ServiceRule("198.19.0.12", 80, "TCP", ())],
        reject_cidr="198.19.0.0/22",
    )
    nat, flt = text.split("*filter\n")
    assert "-A MIZZEN-SERVICES" not in nat
    rules = [line for line in flt.splitlines() if line.startswith("-A")]
    assert rules == [
        "-A MIZZEN-SERVICES -d 198.19.0.11/32 -p udp -m udp --dport 53 -m comment --comment "
        '"198.19.0.11:53/UDP" -j REJECT --reject-with icmp-port-unreachable',
        "-A MIZZEN-SERVICES -d 198.19.0.12/32 -p tcp -m tcp --dport 80 -m comment --comment "
        '"198.19.0.12:80/TCP" -j REJECT --reject-with tcp-reset',
        "-A MIZZEN-SERVICES -d 198.19.0.0/22 -p tcp -j REJECT --reject-with tcp-reset",
        "-A MIZZEN-SERVICES -d 198.19.0.0/22 -j REJECT --reject-with icmp-port-unreachable",
    ]


def test_render_order_is_stable() -> None:
    a = ServiceRule("198.19.0.2", 80, "TCP", (("198.18.0.2", 80),))
    b = ServiceRule("198.19.0.1", 81, "TCP", (("198.18.0.3", 80),))
    assert render([a, b]) == render([b, a])


def test_render_empty_flushes_chains() -> None:
    assert render([]) == (
        "*nat\n:MIZZEN-SERVICES - [0:0]\nCOMMIT\n*filter\n:MIZZEN-SERVICES - [0:0]\nCOMMIT\n"
    )


def test_bad_protocol() -> None:
    with pytest.raises(ValueError, match="use TCP, UDP or SCTP"):
        render([ServiceRule("198.19.0.1", 80, "HTTP", (("198.18.0.2", 80),))])
