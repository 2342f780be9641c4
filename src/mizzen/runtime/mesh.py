"""LocalMesh: the runtime's pieces put together for one mesh.

One object per `up`: holds the mesh lock, owns the state file and keeps it
current after every change (so `down` after a crash knows what existed).
Methods are safe to call from several threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from mizzen.runtime import dns, kubeproxy, network, processes
from mizzen.runtime.addresses import (
    MeshAddresses,
    addresses_for_slot,
    allocate_pod_ip,
    link_alias,
    netns_name,
    netns_prefix,
    pick_slot,
    slot_of_bridge,
    validate_mesh_name,
    veth_name,
)
from mizzen.runtime.errors import CommandError, MeshRuntimeError, MeshStaleError, StateError
from mizzen.runtime.state import (
    MeshLock,
    MeshState,
    PodState,
    ProcRef,
    global_lock,
    load_state,
    mesh_dir,
    resolve_run_dir,
    save_state,
    used_slots,
)
from mizzen.runtime.teardown import TeardownReport, down

_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _leftovers(name: str) -> bool:
    prefix = netns_prefix(name)
    alias = link_alias(name)
    return any(n.startswith(prefix) for n in network.list_netns()) or any(
        link.alias == alias for link in network.list_links()
    )


class LocalMesh:
    """A running local mesh. Create with LocalMesh.up(); end with down()."""

    def __init__(self, run_dir: Path, lock: MeshLock, state: MeshState, etc_netns: Path) -> None:
        self.run_dir = run_dir
        self.etc_netns = etc_netns
        self._lock = lock
        self._state = state
        self._mu = threading.RLock()

    @classmethod
    def up(
        cls,
        name: str,
        run_dir: Path | str | None = None,
        *,
        etc_netns: Path = dns.ETC_NETNS,
    ) -> LocalMesh:
        """Lock the name, pick a slot, create the bridge, write state."""
        validate_mesh_name(name)
        rdir = resolve_run_dir(run_dir)
        lock = MeshLock.acquire(rdir, name)
        try:
            try:
                stale = load_state(rdir, name) is not None
            except StateError:
                stale = True
            if stale or _leftovers(name):
                raise MeshStaleError(
                    f"mesh {name!r} was not shut down cleanly: run `mizzen down --name {name}` "
                    "first"
                )
            with global_lock(rdir):
                addrs = cls._claim_slot(rdir, name)
                state = MeshState(
                    name=name,
                    slot=addrs.slot,
                    bridge=addrs.bridge,
                    host_ip=str(addrs.host_ip),
                    pod_cidr=str(addrs.pod_subnet),
                    service_cidr=str(addrs.service_range),
                )
                try:
                    save_state(rdir, state)
                except Exception:
                    network.delete_link(addrs.bridge)
                    raise
        except BaseException:
            lock.release()
            raise
        return cls(rdir, lock, state, etc_netns)

    @staticmethod
    def _claim_slot(run_dir: Path, name: str) -> MeshAddresses:
        # Meshes under other run dirs (tests) do not share our state files or
        # lock: the bridge itself is the claim, so retry if it already exists.
        tried: set[int] = set()
        while True:
            bridges = {slot_of_bridge(link.name) for link in network.list_links()}
            used = used_slots(run_dir) | {s for s in bridges if s is not None} | tried
            addrs = addresses_for_slot(pick_slot(used, network.host_networks()))
            try:
                network.create_bridge(addrs, name)
            except CommandError:
                if addrs.bridge not in {link.name for link in network.list_links()}:
                    raise
                tried.add(addrs.slot)
                continue
            return addrs

    # -- accessors ---------------------------------------------------------

    @property
    def name(self) -> str:
        return self._state.name

    @property
    def state(self) -> MeshState:
        return self._state

    @property
    def addresses(self) -> MeshAddresses:
        return addresses_for_slot(self._state.slot)

    @property
    def dir(self) -> Path:
        return mesh_dir(self.run_dir, self.name)

    def log_path(self, what: str) -> Path:
        return self.dir / "logs" / f"{what}.log"

    def pod(self, namespace: str, name: str) -> PodState:
        pod = self._state.pod(namespace, name)
        if pod is None:
            raise MeshRuntimeError(f"no pod {namespace}/{name} in mesh {self.name!r}")
        return pod

    def _save(self, state: MeshState) -> None:
        save_state(self.run_dir, state)
        self._state = state

    # -- pods --------------------------------------------------------------

    def add_pod(
        self, namespace: str, name: str, hosts: Mapping[str, dns.Addresses] | None = None
    ) -> PodState:
        """Create the pod's namespace, veth, address and hosts file."""
        with self._mu:
            if self._state.pod(namespace, name) is not None:
                raise MeshRuntimeError(f"pod {namespace}/{name} already exists: remove it first")
            addrs = self.addresses
            index = min(set(range(len(self._state.pods) + 1)) - {p.index for p in self._state.pods})
            ip = allocate_pod_ip(
                addrs.pod_subnet, addrs.host_ip, (IPv4Address(p.ip) for p in self._state.pods)
            )
            ns = netns_name(self.name, namespace, name)
            pod = PodState(
                name=name,
                namespace=namespace,
                index=index,
                netns=ns,
                veth=veth_name(addrs.slot, index),
                ip=str(ip),
            )
            # Record first: a crash during creation still leaves a trail for down.
            self._save(self._state.with_pod(pod))
            try:
                dns.write_pod_dns(ns, dns.render_hosts(name, str(ip), hosts or {}), self.etc_netns)
                network.add_pod(addrs, self.name, ns, pod.veth, ip)
            except BaseException:
                dns.remove_pod_dns(ns, self.etc_netns)
                self._save(self._state.without_pod(namespace, name))
                raise
            return pod

    def set_hosts(self, namespace: str, name: str, names: Mapping[str, dns.Addresses]) -> None:
        """Rewrite the pod's hosts file in place (running processes see it)."""
        pod = self.pod(namespace, name)
        dns.write_pod_dns(pod.netns, dns.render_hosts(name, pod.ip, names), self.etc_netns)

    def set_services(
        self,
        namespace: str,
        name: str,
        services: Sequence[kubeproxy.ServiceRule],
        *,
        reject_unknown: bool = True,
    ) -> None:
        """Install VIP DNAT rules in the pod (kube-proxy's role)."""
        pod = self.pod(namespace, name)
        reject = self._state.service_cidr if reject_unknown else None
        kubeproxy.apply(pod.netns, services, reject)

    def spawn(
        self,
        namespace: str,
        name: str,
        argv: Sequence[str],
        *,
        role: str,
        env: Mapping[str, str] | None = None,
        uid: int | None = None,
        gid: int | None = None,
        cwd: Path | str | None = None,
        sidecar: bool = False,
    ) -> ProcRef:
        """Start argv inside the pod, logging to logs/<ns>.<pod>.<role>.log.

        The environment is clean (PATH only) plus POD_NAME, POD_NAMESPACE,
        POD_IP, then env on top: pod processes must not inherit ours.
        """
        pod = self.pod(namespace, name)
        full_env = {
            "PATH": os.environ.get("PATH", _DEFAULT_PATH),
            "POD_NAME": name,
            "POD_NAMESPACE": namespace,
            "POD_IP": pod.ip,
            **(env or {}),
        }
        ref = processes.spawn(
            argv,
            log_path=self.log_path(f"{namespace}.{name}.{role}"),
            netns=pod.netns,
            uid=uid,
            gid=gid,
            env=full_env,
            cwd=cwd,
            role=role,
        )
        with self._mu:
            current = self.pod(namespace, name)
            if sidecar:
                current = replace(current, sidecar_processes=(*current.sidecar_processes, ref))
            else:
                current = replace(current, processes=(*current.processes, ref))
            self._save(self._state.with_pod(current))
        return ref

    def remove_pod(self, namespace: str, name: str, timeout: float = 5.0) -> None:
        """Stop the pod's processes, delete its namespace, veth and hosts dir."""
        pod = self.pod(namespace, name)
        processes.stop_many([*pod.processes, *pod.sidecar_processes], timeout)
        leftover = processes.pids_in_netns(pod.netns)
        if leftover:
            processes.stop_many(leftover, timeout)
        network.remove_pod(pod.netns, pod.veth)
        dns.remove_pod_dns(pod.netns, self.etc_netns)
        with self._mu:
            self._save(self._state.without_pod(namespace, name))

    # -- host side ---------------------------------------------------------

    def spawn_host(
        self,
        argv: Sequence[str],
        *,
        role: str,
        env: Mapping[str, str] | None = None,
        uid: int | None = None,
        gid: int | None = None,
        cwd: Path | str | None = None,
    ) -> ProcRef:
        """Start a host-network process (e.g. the ingress gateway)."""
        ref = processes.spawn(
            argv, log_path=self.log_path(role), uid=uid, gid=gid, env=env, cwd=cwd, role=role
        )
        with self._mu:
            self._save(replace(self._state, host_processes=(*self._state.host_processes, ref)))
        return ref

    def record_control_plane(self, ref: ProcRef) -> None:
        with self._mu:
            self._save(replace(self._state, control_plane=ref))

    def set_info(self, key: str, value: str) -> None:
        with self._mu:
            self._save(replace(self._state, info={**self._state.info, key: value}))

    # -- end ---------------------------------------------------------------

    def down(self, timeout: float = 5.0) -> TeardownReport:
        """Remove everything and release the name."""
        try:
            return down(self.name, self.run_dir, etc_netns=self.etc_netns, timeout=timeout)
        finally:
            self._lock.release()

    def release(self) -> None:
        """Release the name lock without tearing down (the mesh keeps running)."""
        self._lock.release()


def service_range(state: MeshState) -> IPv4Network:
    return IPv4Network(state.service_cidr)
