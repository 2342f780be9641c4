"""One process per local cluster: starts and supervises the Kubernetes
control plane, runs the Mizzen node, answers the CLI on the control socket.

Order of start: the node bridge (so the API server can bind its address),
certificates and kubeconfigs, etcd, kube-apiserver, kube-controller-manager
and kube-scheduler, then the node. A component that exits is restarted with
back-off, as a kubelet restarts static pods; `down` stops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from mizzen.ca.files import write_private
from mizzen.cluster import components, pki
from mizzen.cluster.components import ClusterPlan
from mizzen.kube.client import Credentials, KubeClient, KubeError, resource_path
from mizzen.kube.manifests import InstallOptions, install_manifests, kubectl_apply_argv, to_yaml
from mizzen.mesh import control
from mizzen.mesh.layout import MeshLayout
from mizzen.runtime import processes
from mizzen.runtime.mesh import LocalMesh
from mizzen.runtime.state import ProcRef

log = logging.getLogger("mizzen.cluster")

ADMIN_KUBECONFIG = "kubeconfig"  # /run/mizzen/<name>/kubeconfig


@dataclass
class Component:
    role: str
    argv: list[str]
    health: str  # URL polled until it answers 200
    ref: ProcRef | None = None
    restarts: int = 0
    healthy: bool = False
    started: float = field(default=0.0)


class ClusterDaemon:
    def __init__(
        self, layout: MeshLayout, bin_dir: Path, image_map: Mapping[str, Sequence[str]]
    ) -> None:
        self.layout = layout
        self.bin_dir = bin_dir
        self.image_map = image_map
        self.phase = "starting"
        self.error = ""
        self.components: list[Component] = []
        self._stop = asyncio.Event()
        self._mesh: LocalMesh | None = None
        self._plan: ClusterPlan | None = None
        self._node: Any = None

    @property
    def mesh(self) -> LocalMesh:
        assert self._mesh is not None, "the cluster is not up"
        return self._mesh

    @property
    def plan(self) -> ClusterPlan:
        assert self._plan is not None, "the cluster is not up"
        return self._plan

    # -- lifecycle ---------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        self._mesh = await asyncio.to_thread(LocalMesh.up, self.layout.name, self.layout.run_dir)
        server = None
        try:
            me = os.getpid()
            self.mesh.record_control_plane(ProcRef(me, processes.start_time(me) or 0, "cluster"))
            self._plan = ClusterPlan(
                name=self.layout.name,
                addresses=self.mesh.addresses,
                dir=self.layout.dir / "kube",
                bin_dir=self.bin_dir,
            )
            server = await control.serve(self.layout.control_socket, self._handle)
            await asyncio.to_thread(self._write_files)
            started = asyncio.create_task(self._start())
            await self._stop.wait()
            started.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await started
        finally:
            if server is not None:
                server.close()
            await self._shutdown()
        return 0

    async def _start(self) -> None:
        try:
            plan = self.plan
            creds = Credentials.from_kubeconfig(plan.kubeconfig("admin"))
            etcd = Component("etcd", components.etcd_argv(plan), f"{plan.etcd_url}/health")
            apiserver = Component(
                "kube-apiserver", components.apiserver_argv(plan), f"{plan.server}/readyz"
            )
            loopback = f"https://{plan.loopback}"
            controllers = [
                Component(
                    "kube-controller-manager",
                    components.controller_manager_argv(plan),
                    f"{loopback}:{components.CONTROLLER_MANAGER_PORT}/healthz",
                ),
                Component(
                    "kube-scheduler",
                    components.scheduler_argv(plan),
                    f"{loopback}:{components.SCHEDULER_PORT}/healthz",
                ),
            ]
            self.components = [etcd, apiserver, *controllers]
            async with aiohttp.ClientSession(trust_env=False) as http:
                for group in ([etcd], [apiserver], controllers):
                    self.phase = f"starting {', '.join(c.role for c in group)}"
                    for c in group:
                        self._spawn(c)
                    for c in group:
                        await self._wait_healthy(http, c, creds)
                self.phase = "starting the node"
                async with KubeClient(creds) as admin:
                    await grant_node_proxier(admin, plan.node_name)
                async with KubeClient(Credentials.from_kubeconfig(plan.kubeconfig("node"))) as kube:
                    from mizzen.node.node import MizzenNode

                    self._node = MizzenNode(plan, self.mesh, kube, image_map=self.image_map)
                    await self._node.register()
                    running = asyncio.gather(self._supervise(http, creds), self._node.run())
                    try:
                        await self._install_and_wait(creds)
                    except BaseException:
                        running.cancel()
                        raise
                    self.phase = "ready"
                    log.info("cluster %s is ready at %s", plan.name, plan.server)
                    await running
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("cluster start failed")
            self.phase = "failed"
            self.error = f"{type(exc).__name__}: {exc}"

    def _control_plane_logs(self, lines: int = 8) -> str:
        """The end of each control-plane pod's log: the reason it is not
        ready, shown before ``cluster up`` removes everything."""
        namespace = InstallOptions().namespace
        out = []
        for path in sorted((self.mesh.dir / "logs").glob(f"{namespace}.*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(out)

    async def _install_and_wait(self, creds: Credentials) -> None:
        self.phase = "installing Mizzen"
        await self._install()
        self.phase = "waiting for the control plane"
        async with KubeClient(creds) as admin:
            try:
                await wait_available(admin, InstallOptions())
            except RuntimeError as exc:
                raise RuntimeError(
                    f"{exc}; its pods' logs end with:\n{self._control_plane_logs()}"
                ) from None

    async def _install(self) -> None:
        """Apply what `mizzen install` prints, with the built kubectl."""
        plan = self.plan
        argv = kubectl_apply_argv(plan.tool("kubectl"), str(plan.kubeconfig("admin")))
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate(to_yaml(install_manifests(InstallOptions())).encode())
        if proc.returncode != 0:
            raise RuntimeError(f"installing Mizzen failed: {out.decode(errors='replace')}")

    def _write_files(self) -> None:
        plan = self.plan
        clients = {**components.CLIENTS, "node": components.node_client(plan.node_name)}
        keys = pki.make_pki(plan.name, plan.apiserver_ip, plan.kubernetes_service_ip, clients)
        pki.write_pki(keys, plan.pki)
        plan.etcd_data.mkdir(mode=0o700, parents=True, exist_ok=True)
        for client in clients:
            text = yaml.safe_dump(components.kubeconfig(plan, client), sort_keys=False)
            write_private(plan.kubeconfig(client), text.encode())
        admin = yaml.safe_dump(components.kubeconfig(plan, "admin"), sort_keys=False)
        write_private(self.layout.dir / ADMIN_KUBECONFIG, admin.encode())

    # -- components ----------------------------------------------------------

    def _spawn(self, c: Component) -> None:
        # No proxy variable may reach the API server: it would send webhook
        # calls to the proxy.
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        c.ref = self.mesh.spawn_host(c.argv, role=c.role, env=env, cwd=self.plan.dir)
        c.started = time.monotonic()
        c.healthy = False

    async def _probe(self, http: aiohttp.ClientSession, c: Component, creds: Credentials) -> bool:
        context: ssl.SSLContext | bool = False
        if c.health.startswith("https://") and c.role == "kube-apiserver":
            context = creds.ssl_context()
        try:
            async with http.get(
                c.health, ssl=context, timeout=aiohttp.ClientTimeout(total=5)
            ) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def _wait_healthy(
        self, http: aiohttp.ClientSession, c: Component, creds: Credentials, timeout: float = 120
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self._probe(http, c, creds):
                c.healthy = True
                log.info("%s is healthy", c.role)
                return
            if c.ref is not None and not processes.alive(c.ref):
                raise RuntimeError(f"{c.role} exited; see {self.mesh.log_path(c.role)}")
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{c.role} not healthy after {timeout:.0f} s; see its log")

    async def _supervise(self, http: aiohttp.ClientSession, creds: Credentials) -> None:
        """Restart a component that exits, with back-off (1 s doubling to 30 s)."""
        while True:
            await asyncio.sleep(1)
            for c in self.components:
                if c.ref is not None and processes.alive(c.ref):
                    c.healthy = await self._probe(http, c, creds)
                    continue
                delay = min(30.0, 2.0 ** min(c.restarts, 5))
                if time.monotonic() - c.started < delay:
                    continue
                log.warning("%s exited; restarting it (restart %d)", c.role, c.restarts + 1)
                c.restarts += 1
                self._spawn(c)

    async def _shutdown(self) -> None:
        log.info("stopping cluster %s", self.layout.name)
        if self._node is not None:
            with contextlib.suppress(Exception):
                await self._node.stop()
        if self._mesh is not None:
            report = await asyncio.to_thread(self._mesh.down)
            log.info("%s", report.summary())

    # -- control socket ------------------------------------------------------

    async def _handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "status":
            return self.status()
        if op == "shutdown":
            self._stop.set()
            return {"ok": True}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def status(self) -> dict[str, Any]:
        plan = self._plan
        return {
            "ok": True,
            "kind": "cluster",
            "ready": self.phase == "ready",
            "phase": self.phase,
            "error": self.error,
            "server": plan.server if plan else "",
            "kubeconfig": str(self.layout.dir / ADMIN_KUBECONFIG),
            "components": [
                {"role": c.role, "healthy": c.healthy, "restarts": c.restarts}
                for c in self.components
            ],
            "node": self._node.name if self._node is not None else None,
            # The same shape as a local mesh's pods: `mizzen exec` and
            # `mizzen logs` work on the node's pods unchanged.
            "pods": self._node.pod_summaries() if self._node is not None else [],
        }


async def wait_available(admin: KubeClient, options: InstallOptions, timeout: float = 120) -> None:
    """Until every replica of the control plane is ready."""
    path = resource_path("apps/v1", "deployments", options.namespace, options.istiod)
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        deployment = await admin.get(path)
        status = deployment.get("status") or {}
        if status.get("readyReplicas", 0) >= options.replicas:
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(
        f"the control plane is not ready after {timeout:.0f} s "
        f"({status.get('readyReplicas', 0)} of {options.replicas} replicas)"
    )


async def grant_node_proxier(admin: KubeClient, node: str) -> None:
    """The node plays kube-proxy too: bind it to kube-proxy's own ClusterRole
    (Services and EndpointSlices, read-only), as a cluster binds
    system:kube-proxy."""
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "mizzen:node-proxier"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:node-proxier",
        },
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": f"system:node:{node}"}
        ],
    }
    try:
        await admin.create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding)
    except KubeError as exc:
        if exc.status != 409:
            raise


async def run_cluster(
    layout: MeshLayout, bin_dir: Path, image_map: Mapping[str, Sequence[str]]
) -> int:
    daemon = ClusterDaemon(layout, bin_dir, image_map)
    with contextlib.suppress(asyncio.CancelledError):
        return await daemon.run()
    return 0
