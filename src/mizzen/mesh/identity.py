"""Workload identity in a local mesh: the CA, the pods' credentials, the
control plane's serving certificate, and who may have which config.

Files under the mesh's run directory (root-owned):

    ca/                 the self-signed CA (ca-key.pem 0600), unless plug-in
    ca/token-key        HMAC key of the pod credentials (0600)
    trust-bundle.pem    the mesh's roots (0644): what agents trust
    controlplane/       (0700) the 15012 serving certificate (key 0600),
                        the TLS front's bootstrap and admin socket, and the
                        control plane's gRPC socket behind the front
    secrets/<ns>.<pod>/istio-token
                        each pod's credential (0600, dir 0700); the agent
                        reads it as root before it drops to uid 1337

A pod's credential names the pod, a uid made when the pod starts and its
service account; it dies with the pod. Proxies connecting through the TLS
front must present the certificate of the identity their node claims, for a
pod that exists.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mizzen.api.meshconfig import MeshConfig
from mizzen.ca.authority import CertificateAuthority, IssuedCert, load_or_create
from mizzen.ca.files import ensure_private_dir, write_private, write_public
from mizzen.ca.identity import parse_spiffe
from mizzen.ca.service import CertificateService, PodLookup, PodRecord
from mizzen.ca.tokens import PodClaims, TokenSigner, load_or_create_key
from mizzen.mesh.layout import MeshLayout
from mizzen.model.snapshot import Proxy
from mizzen.xds.server import Peer

log = logging.getLogger("mizzen.mesh.identity")

CONTROL_PLANE_NAMES = ("istiod.istio-system.svc", "istiod.istio-system.svc.cluster.local")
# Capped like every certificate of the CA (90 days); made anew at every
# start of the daemon, not renewed while it runs.
CONTROL_PLANE_CERT_TTL = timedelta(days=90)
TOKEN_FILE = "istio-token"


@dataclass(frozen=True)
class IssuedRecord:
    identity: str
    serial: str
    not_after: datetime


class MeshIdentity:
    def __init__(self, layout: MeshLayout, mesh: MeshConfig, plugin_dir: Path | None) -> None:
        self.layout = layout
        self.mesh = mesh
        self.plugin_dir = plugin_dir
        self.pods: dict[tuple[str, str], PodRecord] = {}
        self.issued: dict[tuple[str, str], IssuedRecord] = {}
        self._ca: CertificateAuthority | None = None
        self._tokens: TokenSigner | None = None

    # -- paths -------------------------------------------------------------

    @property
    def ca_dir(self) -> Path:
        return self.layout.dir / "ca"

    @property
    def trust_bundle(self) -> Path:
        return self.layout.dir / "trust-bundle.pem"

    @property
    def control_plane_dir(self) -> Path:
        return self.layout.dir / "controlplane"

    @property
    def backend_socket(self) -> Path:
        # In the 0700 directory: whoever reaches this socket is believed
        # about the client certificate (X-Forwarded-Client-Cert).
        return self.control_plane_dir / "xds.sock"

    def token_path(self, namespace: str, pod: str) -> Path:
        return self.layout.dir / "secrets" / f"{namespace}.{pod}" / TOKEN_FILE

    # -- start ---------------------------------------------------------------

    @property
    def serving_files(self) -> tuple[Path, Path, Path, Path]:
        """What the TLS front serves with: chain, key, trust bundle, and the
        control plane's socket behind it."""
        directory = self.control_plane_dir
        return (
            directory / "cert-chain.pem",
            directory / "key.pem",
            self.trust_bundle,
            self.backend_socket,
        )

    def prepare(self, host_ip: str) -> None:
        """Load or make the CA and the credential key, publish the trust
        bundle, issue the control plane's certificate (``serving_files``).
        Raises CaError."""
        now = datetime.now(UTC)
        self._ca = ca = load_or_create(self.ca_dir, self.mesh.trust_domain, now, self.plugin_dir)
        self._tokens = TokenSigner(load_or_create_key(self.ca_dir / "token-key"))
        write_public(self.trust_bundle, ca.root_pem.encode())
        key_pem, cert = ca.issue_server_cert(
            CONTROL_PLANE_NAMES, [host_ip], CONTROL_PLANE_CERT_TTL, now
        )
        ensure_private_dir(self.control_plane_dir)
        chain, key, _, _ = self.serving_files
        write_private(key, key_pem)
        write_public(chain, "".join(cert.chain_pem[:-1] or cert.chain_pem).encode())
        source = "plug-in CA " + str(self.plugin_dir) if self.plugin_dir else "self-signed root"
        log.info(
            "certificate authority ready (%s, trust domain %s, root valid until %s)",
            source,
            self.mesh.trust_domain,
            ca.root_certs[0].not_valid_after_utc.isoformat(timespec="seconds"),
        )

    def certificate_service(self) -> CertificateService:
        assert self._ca is not None and self._tokens is not None, "prepare() first"
        return CertificateService(
            self._ca,
            self._tokens,
            lambda namespace, pod: self.pods.get((namespace, pod)),
            self.mesh.trust_domain,
            on_issued=self._record,
        )

    # -- pods ------------------------------------------------------------------

    def admit(self, namespace: str, pod: str, service_account: str) -> Path:
        """A new credential for a pod that is starting; returns its file."""
        assert self._tokens is not None, "prepare() first"
        uid = uuid.uuid4().hex
        self.pods[(namespace, pod)] = PodRecord(uid, service_account)
        path = self.token_path(namespace, pod)
        ensure_private_dir(path.parent.parent)
        ensure_private_dir(path.parent)
        token = self._tokens.issue(PodClaims(namespace, pod, uid, service_account))
        write_private(path, token.encode())
        return path

    def forget(self, namespace: str, pod: str) -> None:
        """The pod is gone: its credential no longer works."""
        self.pods.pop((namespace, pod), None)
        self.issued.pop((namespace, pod), None)
        with contextlib.suppress(OSError):
            shutil.rmtree(self.token_path(namespace, pod).parent)

    def _record(self, claims: PodClaims, issued: IssuedCert) -> None:
        self.issued[(claims.namespace, claims.pod)] = IssuedRecord(
            issued.identity, issued.serial, issued.not_after
        )

    # -- ADS -------------------------------------------------------------------

    def authorize(self, proxy: Proxy, peer: Peer) -> str | None:
        """Whether ``proxy`` may have its config over this connection."""
        return authorize_proxy(
            proxy, peer, self.mesh.trust_domain, lambda ns, pod: self.pods.get((ns, pod))
        )


def authorize_proxy(proxy: Proxy, peer: Peer, trust_domain: str, pods: PodLookup) -> str | None:
    """Why ``proxy`` may not have its config over this connection, or None:
    a proxy gets only the config of the identity its certificate proves, for
    a pod that is alive and runs as that identity."""
    if not peer.secure:
        return None  # the plaintext port: no identity to check
    if not peer.identity:
        return "no client certificate: proxies must connect with their workload certificate"
    try:
        spiffe = parse_spiffe(peer.identity)
    except ValueError:
        return f"the client certificate's identity {peer.identity!r} is not a SPIFFE ID"
    claimed = (proxy.namespace, proxy.service_account)
    if spiffe.trust_domain != trust_domain or (spiffe.namespace, spiffe.service_account) != claimed:
        return (
            f"its certificate is for {peer.identity}, but the node claims namespace "
            f"{proxy.namespace!r} and service account {proxy.service_account!r}"
        )
    record = pods(proxy.namespace, proxy.name)
    if record is None:
        return f"there is no pod {proxy.namespace}/{proxy.name} in this mesh"
    if record.service_account != proxy.service_account:
        return (
            f"pod {proxy.namespace}/{proxy.name} runs as {record.service_account!r}, "
            f"not {proxy.service_account!r}"
        )
    return None
