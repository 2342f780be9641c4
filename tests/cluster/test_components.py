"""Command lines and kubeconfigs of the local control plane (mizzen.cluster.components)."""

from __future__ import annotations

import re
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from mizzen.cluster.components import (
    APISERVER_PORT,
    CLIENTS,
    ClusterPlan,
    apiserver_argv,
    controller_manager_argv,
    etcd_argv,
    kubeconfig,
    node_client,
    scheduler_argv,
)
from mizzen.runtime.addresses import SERVICE_SPACE, addresses_for_slot

ADDRS = addresses_for_slot(3)
PLAN = ClusterPlan(
    name="t",
    addresses=ADDRS,
    dir=Path("/run/mizzen/t/kube"),
    bin_dir=Path("/opt/k/bin"),
)
BRIDGE = IPv4Address("198.18.12.1")
LOOPBACK = IPv4Address("127.77.3.1")

FORBIDDEN = [
    IPv4Network("10.0.0.0/8"),
    IPv4Network("172.16.0.0/12"),
    IPv4Network("192.168.0.0/16"),
]

ALL_ARGV = {
    "etcd": etcd_argv(PLAN),
    "kube-apiserver": apiserver_argv(PLAN),
    "kube-controller-manager": controller_manager_argv(PLAN),
    "kube-scheduler": scheduler_argv(PLAN),
}

_IPV4 = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(/\d{1,2})?(?![\d.])")


def flags(argv: list[str]) -> dict[str, str]:
    """``--name=value`` options as a dict (each flag given once)."""
    out: dict[str, str] = {}
    for arg in argv[1:]:
        assert arg.startswith("--") and "=" in arg, arg
        name, _, value = arg[2:].partition("=")
        assert name not in out, f"--{name} given twice"
        out[name] = value
    return out


def ipv4_tokens(argv: list[str]) -> list[IPv4Network]:
    """Every IPv4 address or CIDR anywhere in argv, as a network."""
    return [
        IPv4Network(m.group(1) + (m.group(2) or "/32"), strict=False)
        for arg in argv
        for m in _IPV4.finditer(arg)
    ]


def host_of(url: str) -> IPv4Address:
    m = re.fullmatch(r"https?://([\d.]+):(\d+)", url)
    assert m, url
    return IPv4Address(m.group(1))


def test_the_slot_3_addresses_are_what_the_plan_relies_on() -> None:
    assert PLAN.apiserver_ip == BRIDGE == ADDRS.host_ip
    assert PLAN.loopback == LOOPBACK
    assert PLAN.server == f"https://198.18.12.1:{APISERVER_PORT}"
    assert APISERVER_PORT == 6443


def test_every_component_runs_the_binary_from_bin_dir() -> None:
    for tool, argv in ALL_ARGV.items():
        assert argv[0] == f"/opt/k/bin/{tool}"


def test_apiserver_binds_and_advertises_the_bridge_host_address() -> None:
    f = flags(apiserver_argv(PLAN))
    assert IPv4Address(f["bind-address"]) == BRIDGE
    assert IPv4Address(f["advertise-address"]) == BRIDGE
    assert f["secure-port"] == "6443"


def test_apiserver_service_range_is_the_slots_inside_the_service_space() -> None:
    f = flags(apiserver_argv(PLAN))
    rng = IPv4Network(f["service-cluster-ip-range"])
    assert rng == ADDRS.service_range == IPv4Network("198.19.12.0/22")
    assert rng.subnet_of(IPv4Network("198.19.0.0/16"))
    assert rng.subnet_of(SERVICE_SPACE)
    # The controller manager allocates from the very same range.
    cm = flags(controller_manager_argv(PLAN))
    assert IPv4Network(cm["service-cluster-ip-range"]) == rng


def test_apiserver_turns_on_node_and_rbac_authorization() -> None:
    f = flags(apiserver_argv(PLAN))
    modes = f["authorization-mode"].split(",")
    assert "Node" in modes
    assert "RBAC" in modes
    assert "AlwaysAllow" not in modes
    assert "NodeRestriction" in f["enable-admission-plugins"].split(",")


def test_apiserver_reads_its_pki_from_the_plan_dir() -> None:
    f = flags(apiserver_argv(PLAN))
    pki = "/run/mizzen/t/kube/pki"
    assert f["tls-cert-file"] == f"{pki}/apiserver.crt"
    assert f["tls-private-key-file"] == f"{pki}/apiserver.key"
    assert f["client-ca-file"] == f"{pki}/ca.crt"
    assert f["service-account-key-file"] == f"{pki}/sa.pub"
    assert f["service-account-signing-key-file"] == f"{pki}/sa.key"


def test_apiserver_talks_to_etcd_on_the_cluster_loopback() -> None:
    f = flags(apiserver_argv(PLAN))
    assert f["etcd-servers"] == "http://127.77.3.1:2379"
    assert host_of(f["etcd-servers"]) == LOOPBACK


def test_etcd_listens_and_advertises_only_on_the_cluster_loopback() -> None:
    f = flags(etcd_argv(PLAN))
    for key in (
        "listen-client-urls",
        "advertise-client-urls",
        "listen-peer-urls",
        "initial-advertise-peer-urls",
    ):
        urls = f[key].split(",")
        assert [host_of(u) for u in urls] == [LOOPBACK], key
    assert f["initial-cluster"] == "mizzen-t=http://127.77.3.1:2380"
    assert f["data-dir"] == "/run/mizzen/t/kube/etcd"
    # Every address etcd's argv mentions is that loopback.
    assert {n.network_address for n in ipv4_tokens(etcd_argv(PLAN))} == {LOOPBACK}


@pytest.mark.parametrize(
    "argv_of, kubeconfig_stem, port",
    [
        (controller_manager_argv, "controller-manager", "10257"),
        (scheduler_argv, "scheduler", "10259"),
    ],
)
def test_controller_manager_and_scheduler_bind_the_cluster_loopback(
    argv_of: Callable[[ClusterPlan], list[str]], kubeconfig_stem: str, port: str
) -> None:
    f = flags(argv_of(PLAN))
    assert IPv4Address(f["bind-address"]) == LOOPBACK
    assert f["secure-port"] == port
    path = f"/run/mizzen/t/kube/{kubeconfig_stem}.kubeconfig"
    assert f["kubeconfig"] == path
    assert f["authentication-kubeconfig"] == path
    assert f["authorization-kubeconfig"] == path


@pytest.mark.parametrize("tool", sorted(ALL_ARGV))
def test_no_argv_names_a_private_or_wildcard_address(tool: str) -> None:
    argv = ALL_ARGV[tool]
    found = ipv4_tokens(argv)
    assert found, f"{tool}: expected some addresses in {argv}"
    for net in found:
        assert net.network_address != IPv4Address("0.0.0.0"), (tool, net)
        for private in FORBIDDEN:
            assert not net.overlaps(private), (tool, net)


def test_every_address_in_every_argv_is_the_bridge_the_loopback_or_the_service_range() -> None:
    allowed = {IPv4Network(f"{BRIDGE}/32"), IPv4Network(f"{LOOPBACK}/32"), ADDRS.service_range}
    for tool, argv in ALL_ARGV.items():
        assert set(ipv4_tokens(argv)) <= allowed, tool


def test_ipv4_token_scan_sees_addresses_inside_urls_and_cidrs() -> None:
    # The scan the two tests above rely on really finds embedded addresses.
    got = ipv4_tokens(["--x=http://10.1.2.3:80", "--y=0.0.0.0", "--z=192.168.0.0/16,a"])
    assert got == [
        IPv4Network("10.1.2.3/32"),
        IPv4Network("0.0.0.0/32"),
        IPv4Network("192.168.0.0/16"),
    ]


def test_kubernetes_service_ip_is_the_first_host_of_the_range() -> None:
    rng = PLAN.service_range
    assert PLAN.kubernetes_service_ip == next(rng.hosts())
    assert PLAN.kubernetes_service_ip == IPv4Address("198.19.12.1")
    assert PLAN.kubernetes_service_ip in rng


@pytest.mark.parametrize("client", [*CLIENTS, "node-mizzen-t"])
def test_kubeconfig_points_at_the_server_and_the_clients_cert_and_key(client: str) -> None:
    doc = kubeconfig(PLAN, client)
    assert doc["apiVersion"] == "v1"
    assert doc["kind"] == "Config"
    [cluster] = doc["clusters"]
    [user] = doc["users"]
    [context] = doc["contexts"]
    assert cluster["cluster"]["server"] == PLAN.server == "https://198.18.12.1:6443"
    assert cluster["cluster"]["certificate-authority"] == "/run/mizzen/t/kube/pki/ca.crt"
    assert user["name"] == client
    assert user["user"] == {
        "client-certificate": f"/run/mizzen/t/kube/pki/{client}.crt",
        "client-key": f"/run/mizzen/t/kube/pki/{client}.key",
    }
    assert context["context"] == {"cluster": cluster["name"], "user": client}
    assert doc["current-context"] == context["name"]


def test_kubeconfig_path_lives_in_the_plan_dir() -> None:
    assert PLAN.kubeconfig("admin") == Path("/run/mizzen/t/kube/admin.kubeconfig")


def test_clients_have_the_identities_kubernetes_expects() -> None:
    assert CLIENTS["admin"] == ("kubernetes-admin", ("system:masters",))
    assert CLIENTS["controller-manager"][0] == "system:kube-controller-manager"
    assert CLIENTS["scheduler"][0] == "system:kube-scheduler"


def test_node_client_is_a_node_identity() -> None:
    user, groups = node_client("mizzen-t")
    assert user == "system:node:mizzen-t"
    assert groups == ("system:nodes",)
    assert node_client(PLAN.node_name) == ("system:node:mizzen-t", ("system:nodes",))
