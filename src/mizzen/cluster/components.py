"""Command lines, addresses and kubeconfigs of a local Kubernetes control plane.

Pure: a ``ClusterPlan`` says where everything lives; the functions here turn
it into argv lists and kubeconfig documents.

Addresses. kube-apiserver serves on the node bridge's host address
(198.18.<4k>.1:6443): the host reaches it there, and so do pods, through the
``kubernetes`` Service, without any relay; the bridge carries no route off
the machine. Its advertise address is that same bridge address, which the
endpoint reconciler accepts (it refuses loopback). etcd, and the health ports
of the controller manager and the scheduler, stay on a loopback address of
the cluster's own (127.77.<slot>.1) that pods cannot reach.

Service ClusterIPs come from the slot's 198.19.<4k>.0/22, the same range the
local runtime uses for VIPs, never a private range.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from mizzen.runtime.addresses import MeshAddresses

APISERVER_PORT = 6443
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
CONTROLLER_MANAGER_PORT = 10257
SCHEDULER_PORT = 10259
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

# kubeconfig stem -> (user, groups) of its client certificate.
CLIENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "admin": ("kubernetes-admin", ("system:masters",)),
    "controller-manager": ("system:kube-controller-manager", ()),
    "scheduler": ("system:kube-scheduler", ()),
}


def node_client(node: str) -> tuple[str, tuple[str, ...]]:
    """The identity the Node authorizer grants a kubelet's rights to."""
    return (f"system:node:{node}", ("system:nodes",))


@dataclass(frozen=True)
class ClusterPlan:
    name: str
    addresses: MeshAddresses
    dir: Path  # /run/mizzen/<name>/kube
    bin_dir: Path  # the built Kubernetes tools

    @property
    def node_name(self) -> str:
        return f"mizzen-{self.name}"

    @property
    def loopback(self) -> IPv4Address:
        return IPv4Address(f"127.77.{self.addresses.slot}.1")

    @property
    def apiserver_ip(self) -> IPv4Address:
        return self.addresses.host_ip

    @property
    def server(self) -> str:
        return f"https://{self.apiserver_ip}:{APISERVER_PORT}"

    @property
    def service_range(self) -> IPv4Network:
        return self.addresses.service_range

    @property
    def kubernetes_service_ip(self) -> IPv4Address:
        # kube-apiserver gives the `kubernetes` Service the range's first address.
        return self.service_range.network_address + 1

    @property
    def pki(self) -> Path:
        return self.dir / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.dir / "etcd"

    @property
    def etcd_url(self) -> str:
        return f"http://{self.loopback}:{ETCD_CLIENT_PORT}"

    def kubeconfig(self, client: str) -> Path:
        return self.dir / f"{client}.kubeconfig"

    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)


def etcd_argv(plan: ClusterPlan) -> list[str]:
    peer = f"http://{plan.loopback}:{ETCD_PEER_PORT}"
    member = f"mizzen-{plan.name}"
    return [
        plan.tool("etcd"),
        f"--name={member}",
        f"--data-dir={plan.etcd_data}",
        f"--listen-client-urls={plan.etcd_url}",
        f"--advertise-client-urls={plan.etcd_url}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={member}={peer}",
        # A throwaway single member on tmpfs: durability buys nothing here.
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def apiserver_argv(plan: ClusterPlan) -> list[str]:
    pki = plan.pki
    return [
        plan.tool("kube-apiserver"),
        f"--etcd-servers={plan.etcd_url}",
        f"--bind-address={plan.apiserver_ip}",
        f"--advertise-address={plan.apiserver_ip}",
        f"--secure-port={APISERVER_PORT}",
        f"--cert-dir={pki}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--service-cluster-ip-range={plan.service_range}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        # istio-init needs NET_ADMIN; Istio's own clusters allow it too.
        "--allow-privileged=true",
        # Webhooks are reached at their endpoints' pod addresses on the bridge:
        # the host runs no kube-proxy, so a ClusterIP means nothing to it.
        "--enable-aggregator-routing=true",
        "--profiling=false",
        "--v=1",
    ]


def controller_manager_argv(plan: ClusterPlan) -> list[str]:
    pki = plan.pki
    kubeconfig = plan.kubeconfig("controller-manager")
    return [
        plan.tool("kube-controller-manager"),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={plan.loopback}",
        f"--secure-port={CONTROLLER_MANAGER_PORT}",
        f"--cluster-name={plan.name}",
        f"--service-cluster-ip-range={plan.service_range}",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        # Each controller acts with its own service account, as on a real
        # cluster, so RBAC mistakes show up here too.
        "--use-service-account-credentials=true",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]


def scheduler_argv(plan: ClusterPlan) -> list[str]:
    kubeconfig = plan.kubeconfig("scheduler")
    return [
        plan.tool("kube-scheduler"),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={plan.loopback}",
        f"--secure-port={SCHEDULER_PORT}",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]


def kubeconfig(plan: ClusterPlan, client: str) -> dict[str, Any]:
    """A kubeconfig for ``client`` (the stem of its certificate files)."""
    pki = plan.pki
    context = f"mizzen-{plan.name}"
    cluster = {"server": plan.server, "certificate-authority": str(pki / "ca.crt")}
    user = {
        "client-certificate": str(pki / f"{client}.crt"),
        "client-key": str(pki / f"{client}.key"),
    }
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": cluster}],
        "users": [{"name": client, "user": user}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": client}}],
        "current-context": context,
        "preferences": {},
    }
