"""One pod on the Mizzen node, from bound to gone (adapter over runtime/).

Order, as the kubelet keeps it: the pod's network namespace and hosts file,
then the init containers one at a time (each must exit 0; a failure is
retried unless restartPolicy is Never), then the Service rules (after
istio-init, so that the sidecar's capture comes first in OUTPUT), then the
containers together. Probes run from the host over the bridge. Status goes
to the API server whenever something a reader sees changes.

Restarts back off from 1 s doubling to 30 s (the kubelet starts at 10 s and
goes to 5 min; shorter here because every pod is local and tests wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mizzen.kube import mounts
from mizzen.kube.images import ImageError, PodContext, local_argv
from mizzen.node import spec as sp
from mizzen.node import volumes as vol
from mizzen.node.status import ContainerState, pod_status
from mizzen.runtime import probes, processes
from mizzen.runtime.state import ProcRef

if TYPE_CHECKING:
    from mizzen.node.node import MizzenNode

log = logging.getLogger("mizzen.node")

MAX_BACKOFF = 30.0


def _now() -> datetime:
    return datetime.now(UTC)


class PodRun:
    def __init__(self, pod: dict[str, Any], node: MizzenNode) -> None:
        self.pod = pod
        self.node = node
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        spec = pod.get("spec") or {}
        self.restart_policy: str = spec.get("restartPolicy", "Always")
        self.init = [
            ContainerState(c["name"], c.get("image", "")) for c in spec.get("initContainers") or []
        ]
        self.containers = [
            ContainerState(c["name"], c.get("image", "")) for c in spec.get("containers") or []
        ]
        self.ip = ""
        self.netns = ""
        self.started = _now()
        self.transitions: dict[str, datetime] = {}
        self.phase: str | None = None
        self.terminating = False
        self.refs: dict[str, ProcRef] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._networking: tuple[Any, Any] | None = None
        self._services_on = False
        self._last_status: dict[str, Any] | None = None
        self._reporting = asyncio.Lock()
        self._sources: sp.Sources = {}
        self._last_flags: dict[str, bool] = {}
        self.volume_paths: dict[str, str] = {}

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        self._tasks.append(
            asyncio.create_task(self._run(), name=f"pod {self.namespace}/{self.name}")
        )

    async def _run(self) -> None:
        mesh = self.node.mesh
        hosts, _ = self.node.network_for(self.namespace)
        state = await asyncio.to_thread(mesh.add_pod, self.namespace, self.name, hosts)
        self.ip, self.netns = state.ip, state.netns
        self._networking = (hosts, None)
        await self._report()
        try:
            refs = sp.referenced_sources(self.pod) | vol.volume_sources(self.pod)
            self._sources = await self.node.fetch_sources(self.pod, refs)
            await self._write_volumes()
            self._tasks.append(asyncio.create_task(self._refresh_tokens()))
            spec = self.pod.get("spec") or {}
            for i, container in enumerate(spec.get("initContainers") or []):
                if not await self._run_init(i, container):
                    self.phase = "Failed"
                    await self._report()
                    return
            self._services_on = True
            await self.refresh_network(force=True)
            for i, container in enumerate(spec.get("containers") or []):
                self._tasks.append(asyncio.create_task(self._keep_running(i, container)))
        except sp.SpecError as exc:
            log.warning("pod %s/%s cannot start: %s", self.namespace, self.name, exc)
            self.containers = [replace(c, message=str(exc)) for c in self.containers]
        await self._report()

    async def terminate(self, grace: float) -> None:
        """Stop every process (TERM, then KILL after grace) and remove the pod."""
        if self.terminating:
            return
        self.terminating = True
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(processes.stop_many, list(self.refs.values()), max(grace, 0.5))
        if self.netns:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.node.mesh.remove_pod, self.namespace, self.name, 2.0)
        await asyncio.to_thread(shutil.rmtree, self.dir, True)

    def summary(self) -> dict[str, Any]:
        ready = bool(self.containers) and all(c.ready for c in self.containers)
        return {
            "name": self.name,
            "namespace": self.namespace,
            "netns": self.netns,
            "ip": self.ip,
            "ready": ready,
            "phase": self.phase
            or ("Running" if any(c.running for c in self.containers) else "Pending"),
            "containers": [c.name for c in self.containers],
            "restarts": sum(c.restarts for c in self.containers),
        }

    # -- containers ----------------------------------------------------------

    @property
    def dir(self) -> Path:
        return self.node.mesh.dir / "pods" / f"{self.namespace}.{self.name}"

    async def _write_volumes(self) -> None:
        pod = self._context()
        tokens = {
            key: await self.node.request_token(self.pod, *key)
            for key in vol.token_requests(self.pod)
        }
        paths: dict[str, str] = {}
        for volume in (self.pod.get("spec") or {}).get("volumes") or []:
            files = vol.render_volume(volume, pod, self._sources, tokens)
            target = self.dir / "volumes" / volume["name"]
            await asyncio.to_thread(vol.write_volume, target, files)
            paths[volume["name"]] = str(target)
        self.volume_paths = paths

    async def _refresh_tokens(self) -> None:
        """Rewrite the volumes at 80 % of the shortest token lifetime, as the
        kubelet renews projected tokens before they expire."""
        lifetimes = [seconds for _, seconds in vol.token_requests(self.pod)]
        if not lifetimes:
            return
        while True:
            await asyncio.sleep(0.8 * min(lifetimes))
            try:
                await self._write_volumes()
            except Exception as exc:
                log.warning("pod %s/%s: renewing tokens failed: %s", self.namespace, self.name, exc)

    def _context(self) -> PodContext:
        meta = self.pod["metadata"]
        return PodContext(
            name=self.name,
            namespace=self.namespace,
            ip=self.ip,
            uid=self.uid,
            labels=meta.get("labels") or {},
            annotations=meta.get("annotations") or {},
            service_account=(self.pod.get("spec") or {}).get("serviceAccountName", "default"),
            node_name=self.node.name,
            host_ip=str(self.node.plan.apiserver_ip),
            netns=self.netns,
            volume_paths=self.volume_paths,
        )

    def _spawn(self, container: dict[str, Any]) -> ProcRef:
        pod = self._context()
        kubernetes_ip = str(self.node.plan.kubernetes_service_ip)
        env = sp.container_env(container, pod, self._sources, kubernetes_ip)
        env[mounts.ENV] = json.dumps(mounts.mount_table(container, self.volume_paths))
        try:
            argv = local_argv(container, pod, self.node.image_map, env)
        except ImageError as exc:
            raise sp.SpecError(str(exc)) from None
        uid: int | None = (container.get("securityContext") or {}).get("runAsUser")
        if argv[0] == "mizzen":
            # Mizzen's own images: the agent and capture need root to set up
            # the pod and drop privileges themselves (Envoy runs as 1337).
            argv = [str(Path(sys.executable).parent / "mizzen"), *argv[1:]]
            uid = None
        ref = self.node.mesh.spawn(
            self.namespace,
            self.name,
            argv,
            role=container["name"],
            env=env,
            uid=uid,
            cwd=container.get("workingDir") or None,
        )
        self.refs[container["name"]] = ref
        return ref

    async def _wait_exit(self, ref: ProcRef) -> int:
        while True:
            code = processes.exit_status(ref.pid)
            if code is not None:
                return code
            await asyncio.sleep(0.1)

    async def _run_init(self, index: int, container: dict[str, Any]) -> bool:
        attempt = 0
        while True:
            started = _now()
            self.init[index] = replace(self.init[index], running=True, started_at=started)
            ref = self._spawn(container)
            code = await self._wait_exit(ref)
            self.init[index] = replace(
                self.init[index],
                running=False,
                exit_code=code,
                finished_at=_now(),
                restarts=attempt,
            )
            await self._report()
            if code == 0:
                return True
            log.warning(
                "pod %s/%s: init container %s exited %d",
                self.namespace,
                self.name,
                container["name"],
                code,
            )
            if self.restart_policy == "Never":
                return False
            attempt += 1
            await asyncio.sleep(min(MAX_BACKOFF, 2.0 ** (attempt - 1)))

    async def _keep_running(self, index: int, container: dict[str, Any]) -> None:
        named = sp.named_ports(container)
        readiness = sp.probe_spec(container.get("readinessProbe"), named)
        liveness = sp.probe_spec(container.get("livenessProbe"), named)
        restarts = 0
        while True:
            try:
                ref = self._spawn(container)
            except sp.SpecError as exc:
                # In its own task: nothing else would see the error.
                log.warning("pod %s/%s cannot start: %s", self.namespace, self.name, exc)
                self.containers[index] = replace(self.containers[index], message=str(exc))
                await self._report()
                return
            self.containers[index] = replace(
                self.containers[index],
                running=True,
                ready=readiness is None,
                exit_code=None,
                started_at=_now(),
                restarts=restarts,
            )
            await self._report()
            probe_task = asyncio.create_task(self._probe(index, ref, readiness, liveness))
            try:
                code = await self._wait_exit(ref)
            finally:
                probe_task.cancel()
            self.containers[index] = replace(
                self.containers[index],
                running=False,
                ready=False,
                exit_code=code,
                finished_at=_now(),
            )
            if self._done(code):
                self._finish_phase()
                await self._report()
                return
            await self._report()
            restarts += 1
            await asyncio.sleep(min(MAX_BACKOFF, 2.0 ** (restarts - 1)))

    def _done(self, code: int) -> bool:
        if self.restart_policy == "Never":
            return True
        return self.restart_policy == "OnFailure" and code == 0

    def _finish_phase(self) -> None:
        if all(c.exit_code is not None and not c.running for c in self.containers):
            self.phase = "Succeeded" if all(c.exit_code == 0 for c in self.containers) else "Failed"

    async def _probe(
        self,
        index: int,
        ref: ProcRef,
        readiness: sp.ProbeSpec | None,
        liveness: sp.ProbeSpec | None,
    ) -> None:
        await asyncio.gather(
            self._probe_loop(index, ref, readiness, live=False),
            self._probe_loop(index, ref, liveness, live=True),
        )

    async def _probe_loop(
        self, index: int, ref: ProcRef, probe: sp.ProbeSpec | None, *, live: bool
    ) -> None:
        if probe is None:
            return
        await asyncio.sleep(probe.initial_delay)
        ok_run = fail_run = 0
        while True:
            ok = await self._check(probe)
            ok_run, fail_run = (ok_run + 1, 0) if ok else (0, fail_run + 1)
            if live:
                if fail_run >= probe.failure_threshold:
                    log.warning(
                        "pod %s/%s: liveness probe failed; restarting %s",
                        self.namespace,
                        self.name,
                        self.containers[index].name,
                    )
                    await asyncio.to_thread(processes.stop, ref, 5.0)
                    return
            else:
                ready = self.containers[index].ready
                if not ready and ok_run >= probe.success_threshold:
                    ready = True
                elif ready and fail_run >= probe.failure_threshold:
                    ready = False
                if ready != self.containers[index].ready:
                    self.containers[index] = replace(self.containers[index], ready=ready)
                # Every round: it posts only what changed, and retries a
                # status whose patch failed.
                await self._report()
            # Probe often until ready, so a pod is Ready soon after it can be.
            period = (
                probe.period if (live or self.containers[index].ready) else min(probe.period, 0.5)
            )
            await asyncio.sleep(period)

    async def _check(self, probe: sp.ProbeSpec) -> bool:
        check = probe.check
        if isinstance(check, tuple):
            argv = processes.wrap_argv(check, netns=self.netns)
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
                )
                return await asyncio.wait_for(proc.wait(), probe.timeout) == 0
            except (TimeoutError, OSError):
                return False
        if isinstance(check, probes.HttpGetProbe):
            return await asyncio.to_thread(probes.check_http, self.ip, check, probe.timeout)
        return await asyncio.to_thread(probes.check_tcp, self.ip, check.port, probe.timeout)

    # -- network and status ----------------------------------------------------

    async def refresh_network(self, force: bool = False) -> None:
        if not self.netns or self.terminating:
            return
        wanted = self.node.network_for(self.namespace)
        if not force and wanted == self._networking:
            return
        mesh = self.node.mesh
        try:
            await asyncio.to_thread(mesh.set_hosts, self.namespace, self.name, wanted[0])
            if self._services_on:
                await asyncio.to_thread(mesh.set_services, self.namespace, self.name, wanted[1])
            self._networking = wanted
        except Exception as exc:
            log.error(
                "pod %s/%s: updating its networking failed: %s", self.namespace, self.name, exc
            )

    async def _report(self) -> None:
        # One report at a time, each with the state as it is when its turn
        # comes: two patches in flight at once may land in either order, and
        # an older one landing last would leave a stale status for good.
        async with self._reporting:
            if self.terminating:
                return
            flags = self._flags()
            now = _now()
            for kind, value in flags.items():
                if self._last_flags.get(kind) != value:
                    self.transitions[kind] = now
            self._last_flags = flags
            status = pod_status(
                host_ip=str(self.node.plan.apiserver_ip),
                pod_ip=self.ip,
                started=self.started,
                init=self.init,
                containers=self.containers,
                transitions=self.transitions,
                phase=self.phase,
            )
            if status != self._last_status and await self.node.post_pod_status(self.pod, status):
                self._last_status = status

    def _flags(self) -> dict[str, bool]:
        initialized = all(c.exit_code == 0 for c in self.init)
        ready = initialized and bool(self.containers) and all(c.ready for c in self.containers)
        return {"Initialized": initialized, "Ready": ready, "ContainersReady": ready}
