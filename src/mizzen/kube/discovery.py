"""`mizzen discovery`: the control plane in Kubernetes mode (istiod's role).

It runs in the ``istiod`` pods the install manifests create, with the
service account's token and nothing more, and:

- loads the CA: the plug-in CA from the ``cacerts`` Secret when its files are
  mounted, else the self-signed root kept in the ``istio-ca-secret`` Secret
  (made by whichever replica comes first; the other one reads it), so every
  replica signs with the same root;
- serves the admission webhooks on 15017 with a certificate from that CA and
  writes the root into the webhook configurations' ``caBundle``;
- publishes the root to every namespace as ConfigMap ``istio-ca-root-cert``;
- lists and watches Namespaces, ServiceAccounts, Services, Pods,
  EndpointSlices and every Istio kind (``mizzen.kube.snapshot``) and serves
  the proxies' config over ADS: on 15012 through the same TLS front Envoy the
  local runtime runs (client certificates checked, the certificate service
  beside ADS, pod tokens checked by TokenReview), and in plaintext on 15010
  as istiod does;
- answers ``/ready`` on 8080 once all of that is done.

Every write is idempotent, so two replicas doing the same work agree.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from mizzen.agent.envoy import EnvoyCommand, resolve_envoy_binary
from mizzen.api.meshconfig import MeshConfig, MeshConfigError, load_mesh_config, parse_mesh_config
from mizzen.ca.authority import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    CERT_CHAIN_FILE,
    ROOT_CERT_FILE,
    CertificateAuthority,
    ca_from_plugin_pem,
    load_plugin,
    self_signed_root,
)
from mizzen.ca.errors import CaError
from mizzen.ca.files import ensure_private_dir, write_private, write_public
from mizzen.ca.service import CertificateService, PodRecord
from mizzen.kube import manifests, mounts, webhooks
from mizzen.kube.client import Credentials, KubeClient, KubeError, resource_path
from mizzen.kube.informer import Informer
from mizzen.kube.inject import InjectOptions
from mizzen.kube.snapshot import WATCHED, ClusterConfig, Watched
from mizzen.kube.tokenreview import TokenReviewer
from mizzen.mesh import tlsfront
from mizzen.mesh.daemon import proxy_of_node
from mizzen.mesh.identity import authorize_proxy
from mizzen.model.snapshot import MeshSnapshot, Proxy
from mizzen.runtime import probes
from mizzen.xds.cache import ConfigCache
from mizzen.xds.server import Peer, XdsServer

log = logging.getLogger("mizzen.discovery")

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
MESH_CONFIG_FILE = "/etc/istio/config/mesh"
CACERTS_DIR = "/etc/cacerts"
LOCAL_CERTS_DIR = "/var/run/secrets/istio-dns"
CA_SECRET = "istio-ca-secret"
SERVING_TTL = timedelta(days=30)


@dataclass(frozen=True)
class DiscoveryOptions:
    namespace: str
    pod_ip: str
    revision: str = "default"
    domain: str = "cluster.local"

    @property
    def install(self) -> manifests.InstallOptions:
        return manifests.InstallOptions(
            namespace=self.namespace,
            revision="" if self.revision == "default" else self.revision,
        )

    @property
    def service_names(self) -> list[str]:
        svc = self.install.istiod
        ns = self.namespace
        return [svc, f"{svc}.{ns}", f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.{self.domain}"]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(data: Mapping[str, str], key: str) -> bytes:
    return base64.b64decode(data[key])


class KubeDiscovery:
    def __init__(self, options: DiscoveryOptions, kube: KubeClient, mesh: MeshConfig) -> None:
        self.options = options
        self.kube = kube
        self.mesh = mesh
        self.ca: CertificateAuthority | None = None
        self.ready = asyncio.Event()
        self.config = ClusterConfig()
        self.informers = {w.kind: self._informer(w) for w in WATCHED}
        # The mesh ConfigMap, live: istiod applies its changes without a restart.
        self.informers["MeshConfig"] = Informer(
            kube,
            resource_path("v1", "configmaps", options.namespace),
            self._on_mesh_config,
            params={"fieldSelector": f"metadata.name={options.install.suffixed('istio')}"},
            kind="mesh config",
        )
        self.snapshot: MeshSnapshot = self.config.snapshot("0", mesh, options.domain)
        self.revision = 0
        self._changed = asyncio.Event()
        self._cache = ConfigCache()
        self.xds: XdsServer[Proxy] = XdsServer(
            identify=proxy_of_node,
            generate=self._cache.generator(lambda: self.snapshot),
            proxy_key=lambda proxy: proxy.id,
            authorize=self._authorize,
            logger=logging.getLogger("mizzen.discovery.xds"),
        )
        self._stop = asyncio.Event()

    @property
    def namespaces(self) -> Informer:
        return self.informers["Namespace"]

    def _informer(self, watched: Watched) -> Informer:
        async def handle(event: str, obj: dict[str, Any]) -> None:
            for error in self.config.update(watched, event, obj):
                log.error("%s (ignored; its last valid version, if any, keeps serving)", error)
            self._changed.set()
            if watched.kind == "Namespace":
                await self._on_namespace(event, obj)

        return Informer(self.kube, watched.path, handle, kind=watched.plural)

    async def _on_mesh_config(self, event: str, config_map: dict[str, Any]) -> None:
        name = f"ConfigMap {self.options.namespace}/{config_map['metadata']['name']}"
        try:
            text = "" if event == "DELETED" else (config_map.get("data") or {}).get("mesh", "")
            self.mesh = parse_mesh_config(yaml.safe_load(text), f"{name} (key mesh)")
        except (yaml.YAMLError, MeshConfigError) as exc:
            log.error("%s: %s; the previous mesh config stays in force", name, exc)
            return
        log.info("mesh config from %s", name)
        self._changed.set()

    # -- pods and proxies ----------------------------------------------------------

    def pod_record(self, namespace: str, name: str) -> PodRecord | None:
        pod = self.informers["Pod"].cache.get(f"{namespace}/{name}")
        if pod is None:
            return None
        account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        return PodRecord(str(pod["metadata"].get("uid", "")), str(account))

    def _authorize(self, proxy: Proxy, peer: Peer) -> str | None:
        return authorize_proxy(proxy, peer, self.mesh.trust_domain, self.pod_record)

    def _build(self, version: str) -> MeshSnapshot:
        return self.config.snapshot(version, self.mesh, self.options.domain)

    async def _push_changes(self) -> None:
        """Rebuild and push after changes; events in a burst make one push."""
        while True:
            await self._changed.wait()
            await asyncio.sleep(0.05)
            self._changed.clear()
            self.revision += 1
            self.snapshot = self._build(str(self.revision))
            self.xds.push("cluster change")

    # -- CA ------------------------------------------------------------------

    async def load_ca(self) -> CertificateAuthority:
        plugin = mounts.resolve(CACERTS_DIR)
        if (plugin / CA_KEY_FILE).exists():
            log.info("using the plug-in CA from the cacerts Secret")
            return load_plugin(plugin, datetime.now(UTC))
        path = resource_path("v1", "secrets", self.options.namespace, CA_SECRET)
        try:
            secret = await self.kube.get(path)
        except KubeError as exc:
            if exc.status != 404:
                raise
            secret = await self._create_ca_secret()
        data = secret.get("data") or {}
        files = {name: _unb64(data, name) for name in (CA_CERT_FILE, CA_KEY_FILE, ROOT_CERT_FILE)}
        if data.get(CERT_CHAIN_FILE):  # empty for a self-signed root
            files[CERT_CHAIN_FILE] = _unb64(data, CERT_CHAIN_FILE)
        return ca_from_plugin_pem(files, datetime.now(UTC), f"Secret {CA_SECRET}")

    async def _create_ca_secret(self) -> dict[str, Any]:
        ca, key_pem = self_signed_root(self.mesh.trust_domain, datetime.now(UTC))
        root = ca.root_pem
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": CA_SECRET, "namespace": self.options.namespace},
            "type": "istio.io/ca-root",
            "data": {
                CA_CERT_FILE: _b64(root),
                CA_KEY_FILE: base64.b64encode(key_pem).decode(),
                ROOT_CERT_FILE: _b64(root),
                CERT_CHAIN_FILE: "",
            },
        }
        path = resource_path("v1", "secrets", self.options.namespace)
        try:
            created: dict[str, Any] = await self.kube.create(path, secret)
            log.info("made a self-signed root CA (Secret %s)", CA_SECRET)
            return created
        except KubeError as exc:
            if exc.status != 409:
                raise
            # The other replica made it first: use theirs.
            got: dict[str, Any] = await self.kube.get(f"{path}/{CA_SECRET}")
            return got

    def _serving_files(self, ca: CertificateAuthority) -> tuple[str, str]:
        key_pem, cert = ca.issue_server_cert(
            self.options.service_names, [self.options.pod_ip], SERVING_TTL, datetime.now(UTC)
        )
        directory = mounts.resolve(LOCAL_CERTS_DIR)
        ensure_private_dir(directory)
        key, chain = directory / "webhook-key.pem", directory / "webhook-cert.pem"
        write_private(key, key_pem)
        write_public(chain, "".join(cert.chain_pem[:-1] or cert.chain_pem).encode())
        return str(chain), str(key)

    # -- webhooks and the root certificate -----------------------------------------

    async def patch_ca_bundles(self, root_pem: str) -> None:
        install = self.options.install
        bundle = _b64(root_pem)
        for group_path, name in (
            (
                "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
                install.injector_name,
            ),
            (
                "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
                install.validator_name,
            ),
        ):
            path = f"{group_path}/{name}"
            config = await self.kube.get(path)
            hooks = config.get("webhooks") or []
            if all((h.get("clientConfig") or {}).get("caBundle") == bundle for h in hooks):
                continue
            for hook in hooks:
                hook.setdefault("clientConfig", {})["caBundle"] = bundle
            await self.kube.merge_patch(path, {"webhooks": hooks})
            log.info("wrote the CA bundle into %s", name)

    async def _on_namespace(self, kind: str, ns: dict[str, Any]) -> None:
        if kind == "DELETED" or ns.get("status", {}).get("phase") == "Terminating":
            return
        # run() loads the CA before any informer starts.
        assert self.ca is not None
        await self.publish_root(ns["metadata"]["name"], self.ca.root_pem)

    async def publish_root(self, namespace: str, root_pem: str) -> None:
        name = manifests.CA_ROOT_CONFIGMAP
        path = resource_path("v1", "configmaps", namespace, name)
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"istio.io/config": "true"},
            },
            "data": {ROOT_CERT_FILE: root_pem},
        }
        try:
            current = await self.kube.get(path)
        except KubeError as exc:
            if exc.status != 404:
                raise
            with contextlib.suppress(KubeError):  # 409: the other replica won
                await self.kube.create(resource_path("v1", "configmaps", namespace), body)
            return
        if (current.get("data") or {}).get(ROOT_CERT_FILE) != root_pem:
            current["data"] = body["data"]
            await self.kube.replace(path, current)

    def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        ns = self.namespaces.cache.get(namespace) or {}
        labels: Mapping[str, str] = (ns.get("metadata") or {}).get("labels") or {}
        return labels

    # -- run -------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        runners: list[web.AppRunner] = []
        tasks: list[asyncio.Task[None]] = []
        front: asyncio.subprocess.Process | None = None
        try:
            runners.append(await self._serve_ready())
            self.ca = ca = await self.load_ca()
            chain, key = self._serving_files(ca)
            inject = InjectOptions(
                discovery_address=f"{self.options.service_names[2]}:{manifests.XDS_TLS_PORT}",
                trust_domain=self.mesh.trust_domain,
                domain_suffix=self.options.domain,
                revision=self.options.revision,
            )
            app = webhooks.make_app(inject, self.namespace_labels)
            runners.append(
                await _serve(app, manifests.WEBHOOK_PORT, webhooks.server_context(chain, key))
            )
            tasks = [asyncio.create_task(i.run()) for i in self.informers.values()]
            for informer in self.informers.values():
                await informer.synced.wait()
            self.snapshot = self._build("1")
            self.revision = 1
            tasks.append(asyncio.create_task(self._push_changes()))
            front = await self._serve_xds(ca, chain, key)
            await self.patch_ca_bundles(ca.root_pem)
            self.ready.set()
            log.info(
                "control plane ready: ADS on %d (TLS) and %d, webhooks on %d",
                manifests.XDS_TLS_PORT,
                manifests.XDS_PORT,
                manifests.WEBHOOK_PORT,
            )
            stopped = asyncio.create_task(self._stop.wait())
            exited = asyncio.create_task(front.wait())
            await asyncio.wait({stopped, exited}, return_when=asyncio.FIRST_COMPLETED)
            if exited.done():
                raise RuntimeError(f"the TLS front Envoy exited with status {front.returncode}")
            exited.cancel()
        finally:
            for task in tasks:
                task.cancel()
            if front is not None and front.returncode is None:
                front.terminate()
                await front.wait()
            with contextlib.suppress(Exception):
                await self.xds.stop()
            for runner in runners:
                await runner.cleanup()

    async def _serve_xds(
        self, ca: CertificateAuthority, chain: str, key: str
    ) -> asyncio.subprocess.Process:
        """ADS and the certificate service behind the TLS front on 15012,
        plain ADS on 15010; returns the front's process once it listens."""
        directory = mounts.resolve(LOCAL_CERTS_DIR)
        socket = directory / "xds.sock"
        roots = directory / ROOT_CERT_FILE
        write_public(roots, ca.root_pem.encode())
        certificates = CertificateService(
            ca,
            None,
            self.pod_record,
            self.mesh.trust_domain,
            authenticate=TokenReviewer(self.kube),
            logger=logging.getLogger("mizzen.discovery.ca"),
        )
        await self.xds.start(
            [f"unix:{socket}", f"0.0.0.0:{manifests.XDS_PORT}"],
            extra_handlers=[certificates.handler()],
        )
        config = tlsfront.front_bootstrap(
            "0.0.0.0", Path(chain), Path(key), roots, socket, directory / "front-admin.sock"
        )
        bootstrap = directory / "tls-front.json"
        bootstrap.write_text(json.dumps(config))
        command = EnvoyCommand(
            binary=resolve_envoy_binary(),
            bootstrap=bootstrap,
            admin_address_path=directory / "tls-front.admin",
            concurrency=1,
        )
        front = await asyncio.create_subprocess_exec(*command.argv())
        deadline = time.monotonic() + 15
        while not await asyncio.to_thread(probes.tcp_ok, "127.0.0.1", manifests.XDS_TLS_PORT):
            if front.returncode is not None or time.monotonic() > deadline:
                port = manifests.XDS_TLS_PORT
                raise RuntimeError(f"the TLS front Envoy did not listen on {port} in 15 s")
            await asyncio.sleep(0.1)
        return front

    async def _serve_ready(self) -> web.AppRunner:
        async def ready(_: web.Request) -> web.Response:
            if self.ready.is_set():
                return web.Response(text="ready\n")
            return web.Response(status=503, text="starting\n")

        app = web.Application()
        app.router.add_get("/ready", ready)
        return await _serve(app, manifests.READY_PORT)


async def _serve(app: web.Application, port: int, ssl_context: Any = None) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    # Inside the pod's own network namespace: every address is the pod's.
    await web.TCPSite(runner, "0.0.0.0", port, ssl_context=ssl_context).start()
    return runner


def _mesh_config() -> MeshConfig:
    path = mounts.resolve(MESH_CONFIG_FILE)
    if not path.exists():
        return MeshConfig()
    try:
        return load_mesh_config(str(path))
    except MeshConfigError as exc:
        raise SystemExit(f"mesh config {MESH_CONFIG_FILE}: {exc}") from None


async def run_discovery(domain: str) -> int:
    credentials = Credentials.in_cluster(mounts.resolve(SERVICE_ACCOUNT_DIR))
    options = DiscoveryOptions(
        namespace=os.environ.get("POD_NAMESPACE", "istio-system"),
        pod_ip=os.environ.get("POD_IP") or os.environ.get("INSTANCE_IP", ""),
        revision=os.environ.get("REVISION", "default"),
        domain=domain,
    )
    async with KubeClient(credentials, user_agent="mizzen-discovery") as kube:
        try:
            await KubeDiscovery(options, kube, _mesh_config()).run()
        except CaError as exc:
            log.error("cannot start the certificate authority: %s", exc)
            return 1
    return 0
