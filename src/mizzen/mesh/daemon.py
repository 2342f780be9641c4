"""The local mesh daemon: control plane and pod supervisor of one mesh.

One process per mesh (`mizzen up` starts it). It owns the config store, the
registry, the xDS server and the pods: every change (apply, delete, a pod
turning ready) flows through `_reconcile`, which brings the pods in line with
the config and pushes the new snapshot to the proxies. CLI commands reach it
over the control socket in the mesh's run directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mizzen.agent.envoy import EnvoyCommand, resolve_envoy_binary
from mizzen.api.errors import ConfigError, LoadResult
from mizzen.api.load import load_paths
from mizzen.api.meshconfig import MeshConfig, pod_secret_ttl
from mizzen.api.parse import resource_label
from mizzen.api.resources import Container, Resource, ResourceKey, Service
from mizzen.ca.errors import CaError
from mizzen.capture.iptables import install as install_capture
from mizzen.capture.rules import CaptureConfig
from mizzen.config.store import ConfigStore
from mizzen.mesh import control, tlsfront
from mizzen.mesh.identity import MeshIdentity
from mizzen.mesh.layout import MeshLayout
from mizzen.mesh.notes import apply_notes, mixer_refusals
from mizzen.mesh.pods import (
    after_exit,
    app_probers_json,
    config_sources,
    container_argv,
    container_env,
    container_mounts,
    host_names,
    liveness_target,
    pod_key,
    pod_ports_json,
    pre_stop_hook,
    probe_targets,
    restart_delay,
    service_nat,
    volume_files,
)
from mizzen.model.build import build_snapshot
from mizzen.model.proxy import parse_node_id, proxy_from_node
from mizzen.model.snapshot import MeshSnapshot, Proxy, ServicePort
from mizzen.node.spec import Sources
from mizzen.node.volumes import VolumeFile, write_volume
from mizzen.registry.pods import PodPlan, plan_pods
from mizzen.registry.services import service_hostname
from mizzen.registry.vips import VipAllocator
from mizzen.runtime import probes, processes
from mizzen.runtime.dns import Addresses
from mizzen.runtime.kubeproxy import ServiceRule
from mizzen.runtime.mesh import LocalMesh
from mizzen.runtime.probes import HttpGetProbe
from mizzen.runtime.state import PodState, ProcRef
from mizzen.translate.authz import describe as describe_authz
from mizzen.xds.cache import ConfigCache
from mizzen.xds.server import XdsServer

log = logging.getLogger("mizzen.mesh")

PODFS = "mizzen.runtime.podfs"

# ADS without TLS, for debugging: on a loopback address of the mesh's own
# (pods cannot reach the host's loopback), so several meshes can each have it.
DEBUG_XDS_PORT = 15010
HEALTH_PORT = 15021
GATEWAY_SERVICE_ACCOUNT = "istio-ingressgateway-service-account"
GATEWAY_NAMESPACE = "istio-system"
GATEWAY_POD = "istio-ingressgateway-0"
GATEWAY_LABELS = {"istio": "ingressgateway", "app": "istio-ingressgateway"}


@dataclass
class RunningPod:
    plan: PodPlan
    runtime: PodState
    containers: list[ProcRef] = field(default_factory=list)
    ready: bool = False
    started: float = field(default_factory=time.monotonic)
    error: str = ""
    # Per container (by index): restarts so far, when the next restart is
    # due, consecutive liveness failures, when liveness was last probed.
    restarts: list[int] = field(default_factory=list)
    restart_due: list[float | None] = field(default_factory=list)
    liveness_failures: list[int] = field(default_factory=list)
    liveness_checked: list[float] = field(default_factory=list)
    # The hosts names and service NAT rules last installed in the pod.
    networking: tuple[dict[str, Addresses], list[ServiceRule]] | None = None
    # Per container: running, or its exit code once done (restartPolicy
    # OnFailure/Never); the failed runs so far; Init, Running, Succeeded or
    # Failed.
    running: list[bool] = field(default_factory=list)
    exit_codes: list[int | None] = field(default_factory=list)
    failures: int = 0
    phase: str = "Running"
    # Init containers: the one running (phase "Init"), its index, and when
    # a failed one runs again.
    init_ref: ProcRef | None = None
    init_index: int = 0
    init_restarts: int = 0
    init_due: float | None = None
    # The volume files last written, by volume name.
    volume_files: dict[str, list[VolumeFile]] | None = None

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


class MeshDaemon:
    def __init__(
        self,
        layout: MeshLayout,
        ingress_port: int,
        venv_bin: str,
        mesh_config: MeshConfig | None = None,
        ca_certs: Path | None = None,
    ) -> None:
        self.layout = layout
        self.ingress_port = ingress_port
        self.venv_bin = venv_bin
        self.mesh_config = mesh_config or MeshConfig()
        self.identity = MeshIdentity(layout, self.mesh_config, ca_certs)
        self.store = ConfigStore()
        self.pods: dict[str, RunningPod] = {}
        self.snapshot: MeshSnapshot = build_snapshot((), {}, {}, "0")
        self.revision = 0
        # Proxies with the same inputs share one serialized translation.
        self._cache = ConfigCache()
        self.xds: XdsServer[Proxy] = XdsServer(
            identify=proxy_of_node,
            generate=self._cache.generator(lambda: self.snapshot),
            proxy_key=lambda proxy: proxy.id,
            authorize=self.identity.authorize,
        )
        self.xds.on_acked = self._on_acked
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._apply_started: float | None = None
        # ConfigMaps' and Secrets' data, for the pods' env.
        self.sources: Sources = {}
        self._sources_changed = False
        # Pods waiting for the one before them (StatefulSet OrderedReady),
        # and every document up or apply skipped, as the user should see it.
        self.waiting: dict[str, PodPlan] = {}
        self.skipped: dict[str, dict[str, str]] = {}
        # Set when pods changed readiness but the snapshot does not show it
        # yet: the mesh is not "ready" until that change is pushed.
        self._stale = True  # until the initial config is applied
        self._base_path = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        self._mesh: LocalMesh | None = None
        self._vips: VipAllocator | None = None
        self._front: ProcRef | None = None  # the TLS front Envoy on 15012

    @property
    def mesh(self) -> LocalMesh:
        assert self._mesh is not None, "the mesh is not up"
        return self._mesh

    # -- lifecycle ---------------------------------------------------------

    async def run(self, paths: list[str]) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        self._mesh = await asyncio.to_thread(LocalMesh.up, self.layout.name, self.layout.run_dir)
        try:
            me = os.getpid()
            self.mesh.record_control_plane(ProcRef(me, processes.start_time(me) or 0, "control"))
            self.mesh.set_info("ingress_port", str(self.ingress_port))
            self._vips = VipAllocator(self.mesh.state.service_cidr)
            host_ip = self.mesh.state.host_ip
            try:
                await asyncio.to_thread(self.identity.prepare, host_ip)
            except CaError as e:
                log.error("cannot start the certificate authority: %s", e)
                return 1
            debug = f"{debug_xds_address(self.mesh.state.slot)}:{DEBUG_XDS_PORT}"
            await self.xds.start(
                [f"unix:{self.identity.backend_socket}", debug],
                extra_handlers=[self.identity.certificate_service().handler()],
            )
            self.mesh.set_info("xds_debug", debug)
            self.mesh.set_info("xds", f"{host_ip}:{tlsfront.SECURE_PORT}")
            server = await control.serve(self.layout.control_socket, self._handle)
            try:
                await asyncio.to_thread(self._start_tls_front)
                await asyncio.to_thread(self._start_gateway)
                if paths:
                    await self._apply_paths(paths)
                self._stale = False
                watcher = asyncio.create_task(self._watch_pods())
                await self._stop.wait()
                watcher.cancel()
            finally:
                server.close()
        finally:
            await self._shutdown()
        return 0

    async def _shutdown(self) -> None:
        log.info("stopping mesh %s", self.layout.name)
        with contextlib.suppress(Exception):
            await self.xds.stop()
        # Pods first, each with its preStop hooks and grace period.
        await self._stop_pods(list(self.pods.values()))
        self.pods.clear()
        if self._mesh is not None:
            report = await asyncio.to_thread(self._mesh.down)
            log.info("%s", report.summary())

    # -- control socket ----------------------------------------------------

    async def _handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "apply":
            return await self._apply_paths(list(request["paths"]))
        if op == "delete":
            return await self._delete_paths(list(request["paths"]))
        if op == "status":
            return self._status()
        if op == "shutdown":
            self._stop.set()
            return {"ok": True}
        return {"ok": False, "error": f"unknown operation {op!r}"}

    def _status(self) -> dict[str, Any]:
        proxies = self._proxy_rows()
        pods = [self._pod_row(p) for p in self.pods.values()]
        pods += [_waiting_row(plan) for plan in self.waiting.values()]
        pods.sort(key=lambda row: (row["namespace"], row["name"]))
        # Every running sidecar, and the gateway (a finished pod's is gone).
        expected = sum(1 for p in self.pods.values() if p.plan.sidecar and not p.finished) + 1
        synced = len(proxies) >= expected and self.xds.synced()
        return {
            "ok": True,
            "name": self.layout.name,
            "ingress": f"http://127.0.0.1:{self.ingress_port}",
            "version": self.xds.version,
            "ready": self._pods_settled()
            and synced
            and not self._stale
            and self._front is not None
            and processes.alive(self._front),
            "pods": pods,
            "services": self._service_rows(),
            "proxies": proxies,
            "skipped": list(self.skipped.values()),
            "authz": self._authz_rows(),
        }

    def _authz_rows(self) -> list[dict[str, Any]]:
        """The effective policies of every workload with a proxy."""
        rows = []
        workloads = [
            (p.plan.namespace, p.plan.name, p.plan.labels)
            for p in self.pods.values()
            if p.plan.sidecar
        ]
        workloads.append((GATEWAY_NAMESPACE, GATEWAY_POD, GATEWAY_LABELS))
        for namespace, name, labels in sorted(workloads, key=lambda w: (w[0], w[1])):
            for row in describe_authz(self.snapshot, namespace, labels):
                rows.append({"namespace": namespace, "workload": name, **row})
        return rows

    def _pods_settled(self) -> bool:
        """Every pod ready, or (a Job's) finished; none waiting its turn."""
        return not self.waiting and all(p.ready or p.finished for p in self.pods.values())

    def _pod_row(self, pod: RunningPod) -> dict[str, Any]:
        return {
            "name": pod.plan.name,
            "namespace": pod.plan.namespace,
            "ip": pod.runtime.ip,
            "ready": pod.ready,
            "status": "Error" if pod.error else _phase_label(pod),
            "kind": pod.plan.owner_kind or "Pod",
            "sidecar": pod.plan.sidecar,
            "netns": pod.runtime.netns,
            "labels": dict(pod.plan.labels),
            "containers": [c.name for c in pod.plan.containers],
            "restarts": sum(pod.restarts),
            "error": pod.error,
            "age": round(time.monotonic() - pod.started, 1),
        }

    def _service_rows(self) -> list[dict[str, Any]]:
        rows = []
        for svc in sorted(self.snapshot.services.values(), key=lambda s: s.hostname):
            endpoints = sum(
                len(self.snapshot.endpoints_of(svc.hostname, p.port)) for p in svc.ports
            )
            rows.append(
                {
                    "name": svc.name,
                    "namespace": svc.namespace,
                    "hostname": svc.hostname,
                    "vip": svc.vip,
                    "ports": [f"{p.port}/{_protocol_label(p)}" for p in svc.ports],
                    "endpoints": endpoints,
                }
            )
        return rows

    def _proxy_rows(self) -> list[dict[str, Any]]:
        rows = []
        for st in self.xds.status():
            acked = [t.acked_version for t in st.types.values() if t.acked_version]
            nacks = [t.last_nack.message for t in st.types.values() if t.last_nack]
            _, _, pod, namespace = parse_node_id(st.node_id)
            cert = self.identity.issued.get((namespace, pod))
            rows.append(
                {
                    "id": st.id,
                    "synced": st.synced,
                    "version": max(acked, key=int) if acked else "",
                    "nack": nacks[0] if nacks else "",
                    "identity": cert.identity if cert else "",
                    "cert_serial": cert.serial if cert else "",
                    "cert_expires": cert.not_after.isoformat(timespec="seconds") if cert else "",
                }
            )
        return sorted(rows, key=lambda r: r["id"])

    # -- config ------------------------------------------------------------

    async def _apply_paths(self, paths: list[str]) -> dict[str, Any]:
        result = await asyncio.to_thread(load_paths, paths)
        result = self._refuse_unfaithful(result)
        for err in result.errors:
            log.warning("rejected: %s", err)
        for skip in result.skipped:
            log.warning("skipped: %s", skip)
            self.skipped[str(skip)] = {
                "source": str(skip.source),
                "kind": skip.gvk.kind,
                "name": skip.name,
                "reason": skip.reason,
            }
        changes = self.store.apply(result.resources)
        notes = [str(w) for w in result.warnings]
        notes += apply_notes(result.resources, self.store.resources(), self.mesh_config)
        for note in notes:
            log.warning("%s", note)
        if not changes.empty:
            self._apply_started = time.monotonic()
            await self._reconcile("apply")
        return {
            "ok": True,
            "errors": [str(e) for e in result.errors],
            "warnings": notes,
            "skipped": [str(s) for s in result.skipped],
            "added": [str(k) for k in changes.added],
            "updated": [str(k) for k in changes.updated],
            "deleted": [],
            "unchanged": changes.unchanged,
            "version": self.xds.version,
        }

    def _refuse_unfaithful(self, result: LoadResult) -> LoadResult:
        """Refuses Mixer rules that cannot be enforced faithfully beside the
        stored config (never half-applied: the whole rule is refused)."""
        refused = mixer_refusals(result.resources, self.store.resources(), self.mesh_config)
        if not refused:
            return result
        errors = [
            ConfigError(
                r.source,
                resource_label(r.gvk.kind, r.meta.namespace, r.meta.name),
                "spec",
                refused[r.key],
            )
            for r in result.resources
            if r.key in refused
        ]
        return dataclasses.replace(
            result,
            resources=tuple(r for r in result.resources if r.key not in refused),
            errors=(*result.errors, *errors),
        )

    async def _delete_paths(self, paths: list[str]) -> dict[str, Any]:
        result = await asyncio.to_thread(load_paths, paths)
        keys: list[ResourceKey] = [r.key for r in result.resources]
        changes = self.store.delete(keys)
        if not changes.empty:
            self._apply_started = time.monotonic()
            await self._reconcile("delete")
        return {
            "ok": True,
            "errors": [str(e) for e in result.errors],
            "skipped": [str(s) for s in result.skipped],
            "added": [],
            "updated": [],
            "deleted": [str(k) for k in changes.deleted],
            "unchanged": changes.unchanged,
            "version": self.xds.version,
        }

    # -- reconcile ---------------------------------------------------------

    async def _reconcile(self, reason: str) -> None:
        """Bring pods in line with the config, rebuild the snapshot, push."""
        async with self._lock:
            resources = self.store.resources()
            wanted = {pod_key(p): p for p in plan_pods(resources)}
            gone = [key for key, pod in self.pods.items() if wanted.get(key) != pod.plan]
            await self._stop_pods([self.pods.pop(key) for key in gone])
            self._rebuild(resources)
            self.waiting = {}
            for key, plan in wanted.items():
                if key in self.pods:
                    continue
                before = self.pods.get(plan.start_after) if plan.start_after else None
                if plan.start_after and (before is None or not before.ready):
                    self.waiting[key] = plan  # started when the pod before it is ready
                    continue
                self.pods[key] = await asyncio.to_thread(self._start_pod, plan)
            await asyncio.to_thread(self._refresh_pod_networking)
            await asyncio.to_thread(self._refresh_volumes)
            self.xds.push(reason)
            self._stale = False

    def _rebuild(self, resources: tuple[Resource, ...]) -> None:
        assert self._vips is not None
        hostnames = _service_hostnames(resources, self.snapshot.domain_suffix)
        for gone in set(self._vips.assigned) - set(hostnames):
            self._vips.release(gone)
        vips = self._vips.assign(hostnames)
        pod_ips = {
            (p.plan.namespace, p.plan.name): p.runtime.ip for p in self.pods.values() if p.ready
        }
        self.revision += 1
        sources = config_sources(resources)
        # Volumes are rewritten only when a ConfigMap or Secret changed.
        self._sources_changed = sources != self.sources
        self.sources = sources
        self.snapshot = build_snapshot(
            resources, pod_ips, vips, str(self.revision), mesh=self.mesh_config
        )

    def _refresh_volumes(self) -> None:
        if not self._sources_changed:
            return  # new pods wrote theirs when they started
        for pod in self.pods.values():
            if pod.error or pod.finished:
                continue
            try:
                self._write_volumes(pod)
            except Exception as exc:
                log.error("updating the volumes of pod %s failed: %s", pod_key(pod.plan), exc)

    def _ready_pods(self) -> list[tuple[PodPlan, str]]:
        return [(p.plan, p.runtime.ip) for p in self.pods.values() if p.ready]

    def _refresh_pod_networking(self) -> None:
        rules = list(service_nat(self.snapshot))
        ready = self._ready_pods()
        names: dict[str, dict[str, Addresses]] = {}  # by namespace: the same for its pods
        for pod in self.pods.values():
            ns, name = pod.plan.namespace, pod.plan.name
            if ns not in names:
                names[ns] = host_names(self.snapshot, ns, ready)
            wanted = (names[ns], rules)
            if pod.networking == wanted:
                continue  # a routing-only change: no iptables or hosts work
            try:
                self.mesh.set_hosts(ns, name, wanted[0])
                self.mesh.set_services(ns, name, rules)
                pod.networking = wanted
            except Exception as exc:
                log.error("updating networking of pod %s/%s failed: %s", ns, name, exc)

    def _on_acked(self, version: str, seconds: float, proxies: int) -> None:
        if self._apply_started is not None:
            since_apply = time.monotonic() - self._apply_started
            log.info(
                "apply to ACK: config v%s acked by all %d proxies %.0f ms after the apply",
                version,
                proxies,
                since_apply * 1000,
            )
            self._apply_started = None

    # -- pods --------------------------------------------------------------

    def _start_pod(self, plan: PodPlan) -> RunningPod:
        ns, name = plan.namespace, plan.name
        state = self.mesh.add_pod(ns, name, host_names(self.snapshot, ns, self._ready_pods()))
        pod = RunningPod(plan=plan, runtime=state)
        try:
            self._write_volumes(pod)
            if plan.sidecar:
                install_capture(state.netns, CaptureConfig.from_annotations(plan.annotations))
                token = self.identity.admit(ns, name, plan.service_account)
                self.mesh.spawn(
                    ns,
                    name,
                    self._agent_argv_sidecar(plan, state.ip, token),
                    role="proxy",
                    env=self._agent_env(),
                    sidecar=True,
                )
            if plan.init_containers:
                pod.phase = "Init"
                pod.init_ref = self._spawn_container(pod, plan.init_containers[0])
            else:
                self._spawn_containers(pod)
        except Exception as exc:
            pod.error = str(exc)
            log.error("pod %s failed to start: %s", pod_key(plan), exc)
        else:
            log.info("pod %s started at %s (sidecar: %s)", pod_key(plan), state.ip, plan.sidecar)
        return pod

    def _spawn_containers(self, pod: RunningPod) -> None:
        """The pod's containers, together (after its init containers)."""
        for container in pod.plan.containers:
            pod.containers.append(self._spawn_container(pod, container))
            pod.running.append(True)
            pod.exit_codes.append(None)
            pod.restarts.append(0)
            pod.restart_due.append(None)
            pod.liveness_failures.append(0)
            pod.liveness_checked.append(time.monotonic())

    def _spawn_container(self, pod: RunningPod, container: Container) -> ProcRef:
        plan = pod.plan
        env = container_env(
            container, plan, pod.runtime.ip, self.venv_bin, self._base_path, self.sources
        )
        argv = container_argv(container, plan.source_dir, env)
        cwd = container.working_dir or plan.source_dir or "/"
        mounts = container_mounts(container, plan, self._volume_dirs(plan))
        if mounts:
            # Its own file system view, volumes at their mountPath (podfs.py).
            state = self.layout.pod_dir(plan.namespace, plan.name) / "fs" / container.name
            spec = {"state": str(state), "mounts": mounts, "cwd": cwd}
            argv = [sys.executable, "-m", PODFS, json.dumps(spec), "--", *argv]
        return self.mesh.spawn(
            plan.namespace, plan.name, argv, role=container.name, env=env, cwd=cwd
        )

    def _volume_dirs(self, plan: PodPlan) -> dict[str, Path]:
        base = self.layout.pod_dir(plan.namespace, plan.name) / "volumes"
        return {v["name"]: base / v["name"] for v in plan.volumes}

    def _write_volumes(self, pod: RunningPod) -> None:
        """Each volume's files under the pod's directory, rewritten as
        ConfigMaps and Secrets change (the kubelet's eventual update; files
        are replaced whole, so a reader never sees half of one)."""
        if not pod.plan.volumes:
            return
        files = volume_files(pod.plan, pod.runtime.ip, self.sources)
        if files == pod.volume_files:
            return
        dirs = self._volume_dirs(pod.plan)
        for name, content in files.items():
            write_volume(dirs[name], content)
        pod.volume_files = files

    def _supervise_init(self, pod: RunningPod, now: float) -> None:
        """Init containers one at a time, each to exit 0 before the next (a
        failed one runs again after a back-off, or fails the pod under
        restartPolicy Never); then the containers."""
        inits = pod.plan.init_containers
        container = inits[pod.init_index]
        if pod.init_due is not None:
            if now >= pod.init_due:
                pod.init_due = None
                pod.init_restarts += 1
                pod.init_ref = self._spawn_container(pod, container)
            return
        assert pod.init_ref is not None
        code = processes.exit_status(pod.init_ref.pid)
        if code is None:
            return
        if code == 0:
            pod.init_index += 1
            if pod.init_index < len(inits):
                pod.init_ref = self._spawn_container(pod, inits[pod.init_index])
            else:
                pod.phase, pod.init_ref = "Running", None
                self._spawn_containers(pod)
            return
        if pod.plan.restart_policy == "Never":
            self._finish(pod, "Failed", f"init container {container.name} exited {code}")
            return
        delay = restart_delay(pod.init_restarts)
        pod.init_due = now + delay
        log.warning(
            "init container %s of pod %s exited %d: running it again in %.0f s",
            container.name,
            pod_key(pod.plan),
            code,
            delay,
        )

    def _supervise(self, pod: RunningPod) -> None:
        """Restart exited containers after a back-off as their restartPolicy
        says, and kill containers whose livenessProbe failed failureThreshold
        times. A Job's pod ends Succeeded when every container exited 0, or
        Failed once more runs failed than its backoffLimit allows."""
        if pod.error or pod.finished:
            return
        now = time.monotonic()
        if pod.phase == "Init":
            self._supervise_init(pod, now)
            return
        for i, container in enumerate(pod.plan.containers):
            ref = pod.containers[i]
            if pod.exit_codes[i] is not None:
                continue  # done, never restarted
            code = processes.exit_status(ref.pid)
            pod.running[i] = code is None
            if code is None:
                if self._liveness_failed(pod, i, container, now):
                    log.warning(
                        "container %s of pod %s failed its liveness probe: restarting",
                        container.name,
                        pod_key(pod.plan),
                    )
                    processes.stop(ref, 5.0)
                continue
            due = pod.restart_due[i]
            if due is None:
                outcome = after_exit(pod.plan, code, pod.failures)
                pod.failures += code != 0
                if outcome == "done":
                    pod.exit_codes[i] = code
                    continue
                if outcome == "fail":
                    self._finish(pod, "Failed", f"{container.name} exited {code}")
                    return
                delay = restart_delay(pod.restarts[i])
                pod.restart_due[i] = now + delay
                log.warning(
                    "container %s of pod %s exited: restarting in %.0f s",
                    container.name,
                    pod_key(pod.plan),
                    delay,
                )
            elif now >= due:
                pod.containers[i] = self._spawn_container(pod, container)
                pod.running[i] = True
                pod.restarts[i] += 1
                pod.restart_due[i] = None
                pod.liveness_failures[i] = 0
                pod.liveness_checked[i] = now

        if all(code is not None for code in pod.exit_codes):
            self._finish(pod, "Succeeded", "every container exited 0")

    def _finish(self, pod: RunningPod, phase: str, why: str) -> None:
        """A pod that runs no more: its sidecar stops too (as Kubernetes'
        native sidecars do), or the Job's pod would never end."""
        pod.phase = phase
        refs = [
            *pod.containers,
            *([pod.init_ref] if pod.init_ref else []),
            *self.mesh.pod(pod.plan.namespace, pod.plan.name).sidecar_processes,
        ]
        processes.stop_many(refs, 5.0)
        log.info("pod %s %s: %s", pod_key(pod.plan), phase.lower(), why)

    def _liveness_failed(self, pod: RunningPod, i: int, container: Container, now: float) -> bool:
        probe = container.liveness_probe
        target = liveness_target(pod.plan, container)
        if probe is None or target is None:
            return False
        started = pod.liveness_checked[i] if pod.restarts[i] else pod.started
        if now < started + probe.initial_delay_seconds:
            return False
        if now < pod.liveness_checked[i] + probe.period_seconds:
            return False
        pod.liveness_checked[i] = now
        if probes.is_ready(pod.runtime.ip, target):
            pod.liveness_failures[i] = 0
            return False
        pod.liveness_failures[i] += 1
        return pod.liveness_failures[i] >= probe.failure_threshold

    async def _stop_pods(self, pods: list[RunningPod]) -> None:
        """Stop pods side by side, so that the longest grace period bounds
        the wait, not their sum."""
        results = await asyncio.gather(
            *(asyncio.to_thread(self._stop_pod, pod) for pod in pods), return_exceptions=True
        )
        for pod, result in zip(pods, results, strict=True):
            if isinstance(result, BaseException):
                log.error("stopping pod %s failed: %s", pod_key(pod.plan), result)

    def _stop_pod(self, pod: RunningPod) -> None:
        """As the kubelet deletes a pod: each container's preStop hook, then
        TERM, then KILL once terminationGracePeriodSeconds (counted from the
        start, hooks included) have passed."""
        deadline = time.monotonic() + pod.plan.grace_period
        if pod.phase == "Running" and not pod.error:
            for container in pod.plan.containers:
                self._pre_stop(pod, container, deadline)
        grace = max(0.5, deadline - time.monotonic())
        self.mesh.remove_pod(pod.plan.namespace, pod.plan.name, grace)
        shutil.rmtree(self.layout.pod_dir(pod.plan.namespace, pod.plan.name), ignore_errors=True)
        self.identity.forget(pod.plan.namespace, pod.plan.name)
        log.info("pod %s stopped", pod_key(pod.plan))

    def _pre_stop(self, pod: RunningPod, container: Container, deadline: float) -> None:
        hook = pre_stop_hook(container)
        if hook is None:
            return
        plan = pod.plan
        if isinstance(hook, HttpGetProbe):
            remaining = max(0.1, deadline - time.monotonic())
            probes.check_http(pod.runtime.ip, hook, min(remaining, 10.0))
            return
        env = container_env(
            container, plan, pod.runtime.ip, self.venv_bin, self._base_path, self.sources
        )
        ref = self.mesh.spawn(
            plan.namespace, plan.name, list(hook), role=f"{container.name}.prestop", env=env
        )
        while processes.exit_status(ref.pid) is None and time.monotonic() < deadline:
            time.sleep(0.05)

    def _agent_env(self) -> dict[str, str]:
        return {"PATH": f"{self.venv_bin}:{self._base_path}", "PYTHONUNBUFFERED": "1"}

    def _agent_argv(
        self, kind: str, pod: str, namespace: str, ip: str, token: Path, secret_ttl: float
    ) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mizzen",
            "agent",
            "--xds-address",
            f"{self.mesh.state.host_ip}:{tlsfront.SECURE_PORT}",
            "--ca-root",
            str(self.identity.trust_bundle),
            "--token-file",
            str(token),
            "--trust-domain",
            self.mesh_config.trust_domain,
            "--secret-ttl",
            f"{secret_ttl:g}s",
            "--mesh",
            self.layout.name,
            "--envoy-bin-dir",
            str(self.layout.bin_dir),
            "--type",
            kind,
            "--pod",
            pod,
            "--namespace",
            namespace,
            "--ip",
            ip,
            "--workdir",
            str(self.layout.proxy_dir(namespace, pod)),
        ]

    def _agent_argv_sidecar(self, plan: PodPlan, ip: str, token: Path) -> list[str]:
        ttl = pod_secret_ttl(plan.annotations, self.mesh_config)
        return [
            *self._agent_argv("sidecar", plan.name, plan.namespace, ip, token, ttl),
            "--app-probes",
            app_probers_json(plan),
            "--labels",
            json.dumps(dict(plan.labels)),
            "--annotations",
            json.dumps(dict(plan.annotations)),
            "--service-account",
            plan.service_account,
            "--pod-ports",
            pod_ports_json(plan),
        ]

    def _start_tls_front(self, timeout: float = 15.0) -> None:
        """Envoy on <bridge IP>:15012, in front of the control plane's socket."""
        config = tlsfront.front_bootstrap(
            self.mesh.state.host_ip,
            *self.identity.serving_files,
            self.identity.control_plane_dir / "admin.sock",
        )
        directory = self.identity.control_plane_dir
        bootstrap = directory / "tls-front.json"
        bootstrap.write_text(json.dumps(config, indent=2))
        command = EnvoyCommand(
            binary=resolve_envoy_binary(),
            bootstrap=bootstrap,
            admin_address_path=directory / "tls-front.admin",
            concurrency=1,
            log_level="warning",
        )
        front = self._front = self.mesh.spawn_host(command.argv(), role="control-plane.tls-front")
        host = self.mesh.state.host_ip

        def listening() -> bool:
            # Our process, alive, and the port open (not someone else's).
            return processes.alive(front) and probes.tcp_ok(host, tlsfront.SECURE_PORT)

        if not probes.wait_until(listening, timeout):
            raise RuntimeError(
                f"the control plane's TLS front did not listen on {host}:"
                f"{tlsfront.SECURE_PORT} within {timeout:.0f} s; see "
                f"{self.mesh.log_path('control-plane.tls-front')}"
            )

    def _start_gateway(self) -> None:
        annotations = {
            "mizzen.io/listen-address": "127.0.0.1",
            "mizzen.io/port-map": f"8080={self.ingress_port}",
        }
        token = self.identity.admit(GATEWAY_NAMESPACE, GATEWAY_POD, GATEWAY_SERVICE_ACCOUNT)
        ttl = pod_secret_ttl({}, self.mesh_config)
        argv = [
            *self._agent_argv("router", GATEWAY_POD, GATEWAY_NAMESPACE, "127.0.0.1", token, ttl),
            "--labels",
            json.dumps(GATEWAY_LABELS),
            "--annotations",
            json.dumps(annotations),
            "--service-account",
            GATEWAY_SERVICE_ACCOUNT,
            # The host's network namespace is shared with every local user:
            # an abstract socket there would hand the gateway's key to anyone.
            "--sds-socket",
            str(self.layout.proxy_dir(GATEWAY_NAMESPACE, GATEWAY_POD) / "sds.sock"),
            "--admin-port",
            "0",
            "--health-address",
            "127.0.0.1",
            "--health-port",
            "0",
            # The gateway shares the host's network namespace, and so its
            # resolv.conf: pin Envoy's DNS to a loopback port nothing serves,
            # so that no lookup ever reaches a real DNS server.
            "--dns-resolver",
            "127.0.0.1:1",
        ]
        self.mesh.spawn_host(
            argv, role=f"{GATEWAY_NAMESPACE}.{GATEWAY_POD}.proxy", env=self._agent_env()
        )

    async def _supervise_front(self) -> None:
        """Start the TLS front again if it died: without it no proxy gets
        config or certificates (they keep what they have meanwhile)."""
        if self._front is None or processes.alive(self._front):
            return
        log.warning("the control plane's TLS front (15012) exited: starting it again")
        try:
            await asyncio.to_thread(self._start_tls_front)
        except Exception as exc:
            log.error("restarting the TLS front failed (retrying): %s", exc)

    async def _watch_pods(self) -> None:
        """Readiness as the kubelet sees it, probed from the host side, and
        container restarts. Never dies: a failing check is logged and retried."""
        while True:
            flipped = False
            await self._supervise_front()
            for key, pod in list(self.pods.items()):
                try:
                    async with self._lock:  # not while reconcile replaces pods
                        if self.pods.get(key) is not pod:
                            continue
                        await asyncio.to_thread(self._supervise, pod)
                    ready = await asyncio.to_thread(self._pod_ready, pod)
                except Exception:
                    log.exception("checking pod %s failed", key)
                    continue
                if ready != pod.ready:
                    pod.ready = ready
                    flipped = self._stale = True
                    log.info("pod %s is %s", key, "ready" if ready else "not ready")
            if flipped:
                try:
                    await self._reconcile("readiness")
                except Exception:
                    log.exception("reconcile after a readiness change failed")
            await asyncio.sleep(1.0 if self._pods_settled() else 0.2)

    def _pod_ready(self, pod: RunningPod) -> bool:
        # Not processes.alive(): it would reap an exited container and lose
        # the exit code _supervise needs.
        if pod.error or pod.phase != "Running" or not all(pod.running):
            return False
        ip = pod.runtime.ip
        if pod.plan.sidecar and not probes.http_ok(ip, HEALTH_PORT, "/healthz/ready"):
            return False
        return all(probes.is_ready(ip, t) for t in probe_targets(pod.plan))


def _phase_label(pod: RunningPod) -> str:
    # As kubectl shows them: a finished pod, and one in its init containers.
    if pod.phase == "Init":
        return f"Init:{pod.init_index}/{len(pod.plan.init_containers)}"
    return {"Succeeded": "Completed"}.get(pod.phase, pod.phase)


def _waiting_row(plan: PodPlan) -> dict[str, Any]:
    return {
        "name": plan.name,
        "namespace": plan.namespace,
        "ip": "",
        "ready": False,
        "status": "Pending",
        "kind": plan.owner_kind or "Pod",
        "sidecar": plan.sidecar,
        "netns": "",
        "labels": dict(plan.labels),
        "containers": [c.name for c in plan.containers],
        "restarts": 0,
        "error": f"waiting for {plan.start_after} to be ready",
        "age": 0.0,
    }


def _service_hostnames(resources: tuple[Resource, ...], suffix: str) -> list[str]:
    """Services that get a VIP: every Kubernetes Service but headless ones."""
    return [
        service_hostname(r.meta.name, r.meta.namespace, suffix)
        for r in resources
        if isinstance(r.obj, Service) and r.obj.cluster_ip != "None"
    ]


def proxy_of_node(node: Any) -> Proxy:
    """The proxy an ADS stream's Envoy ``Node`` describes."""
    from google.protobuf.json_format import MessageToDict

    return proxy_from_node(node.id, MessageToDict(node.metadata))


def debug_xds_address(slot: int) -> str:
    """The mesh's own loopback address for the plaintext debug ADS port."""
    return f"127.77.{slot}.1"


async def run_daemon(
    layout: MeshLayout,
    ingress_port: int,
    paths: list[str],
    mesh_config: MeshConfig | None = None,
    ca_certs: Path | None = None,
) -> int:
    venv_bin = str(Path(sys.executable).parent)
    daemon = MeshDaemon(layout, ingress_port, venv_bin, mesh_config, ca_certs)
    with contextlib.suppress(asyncio.CancelledError):
        return await daemon.run(paths)
    return 0


def _protocol_label(port: ServicePort) -> str:
    """As a user writes it: ``auto`` when sniffed, ``GRPC-WEB`` as in Istio's API."""
    return "auto" if port.is_auto else port.protocol.replace("_", "-")
