"""The Mizzen node: the kubelet's role for a real API server on one machine.

It registers a Node, renews its Lease, watches the pods bound to it and runs
each one in a network namespace through the local runtime (``runtime/``),
exactly as `mizzen up` runs pods: the same namespaces, bridge, hosts files
and process supervision. It also plays kube-proxy for the pods (Service
ClusterIPs DNATed inside each pod's namespace) and writes every pod's hosts
file from the Services, since the node runs no DNS server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp

from mizzen.cluster.components import ClusterPlan
from mizzen.kube.client import KubeClient, KubeError, resource_path
from mizzen.kube.informer import Informer, object_key
from mizzen.node import status as st
from mizzen.node.cluster_ip import hosts_for, service_rules
from mizzen.node.podrun import PodRun
from mizzen.runtime.mesh import LocalMesh

log = logging.getLogger("mizzen.node")

RENEW_SECONDS = st.LEASE_SECONDS / 4
STATUS_SECONDS = 60.0


def _now() -> datetime:
    return datetime.now(UTC)


class MizzenNode:
    def __init__(
        self,
        plan: ClusterPlan,
        mesh: LocalMesh,
        kube: KubeClient,
        image_map: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.plan = plan
        self.image_map = dict(image_map or {})
        self.mesh = mesh
        self.kube = kube
        self.name = plan.node_name
        self.uid = ""
        self.runs: dict[str, PodRun] = {}  # by pod uid
        self.services = Informer(kube, "/api/v1/services", self._on_service, kind="services")
        self.slices = Informer(
            kube,
            "/apis/discovery.k8s.io/v1/endpointslices",
            self._on_service,
            kind="endpointslices",
        )
        self.pods = Informer(
            kube,
            "/api/v1/pods",
            self._on_pod,
            params={"fieldSelector": f"spec.nodeName={self.name}"},
            kind="pods",
        )
        self._network_dirty = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()

    # -- registration --------------------------------------------------------

    async def register(self) -> None:
        path = resource_path("v1", "nodes", name=self.name)
        try:
            node = await self.kube.create("/api/v1/nodes", st.node_object(self.name))
        except KubeError as exc:
            if exc.status != 409:
                raise
            node = await self.kube.get(path)
        self.uid = node["metadata"]["uid"]
        await self._post_status()
        await self._renew_lease()

    async def _post_status(self) -> None:
        status = st.node_status(str(self.plan.apiserver_ip), self.name, _now())
        await self.kube.merge_patch(
            resource_path("v1", "nodes", name=self.name) + "/status", {"status": status}
        )

    async def _renew_lease(self) -> None:
        lease = st.lease_object(self.name, self.uid, _now())
        path = resource_path("coordination.k8s.io/v1", "leases", "kube-node-lease", self.name)
        try:
            await self.kube.merge_patch(path, {"spec": lease["spec"]})
        except KubeError as exc:
            if exc.status != 404:
                raise
            await self.kube.create(
                resource_path("coordination.k8s.io/v1", "leases", "kube-node-lease"), lease
            )

    async def _heartbeat(self) -> None:
        last_status = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            try:
                await self._renew_lease()
                now = asyncio.get_running_loop().time()
                if now - last_status >= STATUS_SECONDS:
                    await self._post_status()
                    last_status = now
            except Exception as exc:
                log.warning("node heartbeat failed: %s", exc)

    # -- run -----------------------------------------------------------------

    async def run(self) -> None:
        await asyncio.gather(
            self._heartbeat(),
            self.services.run(),
            self.slices.run(),
            self.pods.run(),
            self._network_loop(),
        )

    async def stop(self) -> None:
        runs = list(self.runs.values())
        await asyncio.gather(*(r.terminate(grace=5) for r in runs), return_exceptions=True)

    def pod_summaries(self) -> list[dict[str, Any]]:
        return [r.summary() for r in self.runs.values()]

    # -- pods ----------------------------------------------------------------

    async def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        run = self.runs.get(uid)
        if kind == "DELETED":
            if run is not None:
                await run.terminate(grace=0)
                self.runs.pop(uid, None)
            return
        if run is None:
            if pod["metadata"].get("deletionTimestamp"):
                await self._finalize(pod)
                return
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                return  # ended before we (re)started: nothing to run
            run = PodRun(pod, self)
            self.runs[uid] = run
            run.start()
            return
        run.pod = pod
        if pod["metadata"].get("deletionTimestamp") and not run.terminating:
            grace = pod["metadata"].get("deletionGracePeriodSeconds", 30)
            task = asyncio.create_task(self._delete(run, float(grace)))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _delete(self, run: PodRun, grace: float) -> None:
        await run.terminate(grace=grace)
        self.runs.pop(run.uid, None)
        await self._finalize(run.pod)

    async def _finalize(self, pod: dict[str, Any]) -> None:
        """Remove the pod object for good once nothing of it runs, as the
        kubelet does: grace 0, and only this pod (a new one may reuse the name)."""
        meta = pod["metadata"]
        path = resource_path("v1", "pods", meta["namespace"], meta["name"])
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
        with contextlib.suppress(KubeError):
            await self.kube.delete(path, body)

    async def fetch_sources(
        self, pod: dict[str, Any], refs: set[tuple[str, str]]
    ) -> dict[tuple[str, str, str], dict[str, str]]:
        namespace = pod["metadata"]["namespace"]
        found: dict[tuple[str, str, str], dict[str, str]] = {}
        for kind, name in refs:
            plural = "configmaps" if kind == "ConfigMap" else "secrets"
            try:
                obj = await self.kube.get(resource_path("v1", plural, namespace, name))
            except KubeError as exc:
                if exc.status == 404:
                    continue
                raise
            data = dict(obj.get("data") or {})
            if kind == "Secret":
                data = {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
            found[(kind, namespace, name)] = data
        return found

    async def request_token(self, pod: dict[str, Any], audience: str, seconds: int) -> str:
        """A service-account token bound to the pod (TokenRequest), as the
        kubelet gets one for a projected serviceAccountToken volume."""
        meta = pod["metadata"]
        account = (pod.get("spec") or {}).get("serviceAccountName", "default")
        path = resource_path("v1", "serviceaccounts", meta["namespace"], account) + "/token"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": seconds,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        answer = await self.kube.create(path, body)
        return str(answer["status"]["token"])

    async def post_pod_status(self, pod: dict[str, Any], status: dict[str, Any]) -> bool:
        """Whether the API server has the status now (a pod already gone
        counts: there is nothing left to report)."""
        meta = pod["metadata"]
        path = resource_path("v1", "pods", meta["namespace"], meta["name"]) + "/status"
        try:
            await self.kube.merge_patch(path, {"status": status})
        except KubeError as exc:
            if exc.status == 404:
                return True
            log.warning("pod %s: status update failed: %s", object_key(pod), exc)
            return False
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            # A dropped keep-alive connection, an API server restarting.
            log.warning("pod %s: status update failed: %s", object_key(pod), exc)
            return False
        return True

    # -- services: hosts files and ClusterIP rules ----------------------------

    async def _on_service(self, kind: str, obj: dict[str, Any]) -> None:
        self._network_dirty.set()

    def network_for(self, namespace: str) -> tuple[dict[str, str], list[Any]]:
        services = list(self.services.cache.values())
        slices = list(self.slices.cache.values())
        return hosts_for(services, namespace), service_rules(services, slices)

    async def _network_loop(self) -> None:
        while True:
            await self._network_dirty.wait()
            await asyncio.sleep(0.1)  # let a burst of changes settle
            self._network_dirty.clear()
            for run in list(self.runs.values()):
                await run.refresh_network()
