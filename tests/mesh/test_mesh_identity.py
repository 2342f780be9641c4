"""A local mesh's identity: the CA and credential files it keeps, the pods'
credentials, and who may have config over the TLS front."""

from __future__ import annotations

import ipaddress
import stat
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mizzen.api.meshconfig import MeshConfig
from mizzen.ca import (
    TokenSigner,
    generate_key,
    make_csr,
    private_key_pem,
    self_signed_root,
    spiffe_id,
    wire,
)
from mizzen.ca.service import Refused
from mizzen.mesh.identity import CONTROL_PLANE_NAMES, TOKEN_FILE, MeshIdentity
from mizzen.mesh.layout import MeshLayout
from mizzen.model.snapshot import Proxy
from mizzen.xds.server import Peer

HOST_IP = "198.18.0.1"
ME = "spiffe://cluster.local/ns/shop/sa/reviews"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def identity(tmp_path: Path) -> MeshIdentity:
    ident = MeshIdentity(MeshLayout("idtest", tmp_path), MeshConfig(), None)
    ident.prepare(HOST_IP)
    return ident


def proxy(
    name: str = "reviews-v1-0", namespace: str = "shop", service_account: str = "reviews"
) -> Proxy:
    return Proxy(
        id=f"sidecar~198.18.0.7~{name}.{namespace}~{namespace}.svc.cluster.local",
        type="sidecar",
        ip="198.18.0.7",
        name=name,
        namespace=namespace,
        service_account=service_account,
    )


def csr_request(namespace: str = "shop", sa: str = "reviews", td: str = "cluster.local") -> bytes:
    csr = make_csr(generate_key(), spiffe_id(namespace, sa, td)).decode()
    return wire.encode_request(csr, 3600)


# -- files ----------------------------------------------------------------------------


def test_prepare_keeps_private_files_private(tmp_path: Path, identity: MeshIdentity) -> None:
    assert identity.layout.dir == tmp_path / "idtest"
    assert mode(identity.ca_dir) == 0o700
    assert mode(identity.ca_dir / "ca-key.pem") == 0o600
    assert mode(identity.ca_dir / "token-key") == 0o600
    assert mode(identity.control_plane_dir) == 0o700
    assert mode(identity.control_plane_dir / "key.pem") == 0o600
    assert mode(identity.trust_bundle) == 0o644
    assert mode(identity.control_plane_dir / "cert-chain.pem") == 0o644


def test_control_plane_certificate(identity: MeshIdentity) -> None:
    chain = x509.load_pem_x509_certificates(
        (identity.control_plane_dir / "cert-chain.pem").read_bytes()
    )
    (root,) = x509.load_pem_x509_certificates(identity.trust_bundle.read_bytes())
    # The served chain stops below the root: clients have the root already.
    assert len(chain) == 1
    leaf = chain[0]
    leaf.verify_directly_issued_by(root)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == list(CONTROL_PLANE_NAMES)
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(HOST_IP)]
    key = serialization.load_pem_private_key(
        (identity.control_plane_dir / "key.pem").read_bytes(), None
    )
    assert key.public_key() == leaf.public_key()


def test_prepare_again_keeps_the_root(tmp_path: Path, identity: MeshIdentity) -> None:
    before = identity.trust_bundle.read_bytes()
    again = MeshIdentity(MeshLayout("idtest", tmp_path), MeshConfig(), None)
    again.prepare(HOST_IP)
    assert identity.trust_bundle.read_bytes() == before
    # ... and the credential key: a token from before still verifies.
    path = identity.admit("shop", "reviews-v1-0", "reviews")
    again.pods = identity.pods
    again.certificate_service().issue(path.read_text(), csr_request())


def test_plugin_ca_is_what_agents_trust(tmp_path: Path) -> None:
    ca, key_pem = self_signed_root("cluster.local", datetime.now(UTC))
    plugin = tmp_path / "cacerts"
    plugin.mkdir()
    root = ca.root_pem.encode()
    for name in ("ca-cert.pem", "root-cert.pem", "cert-chain.pem"):
        (plugin / name).write_bytes(root)
    (plugin / "ca-key.pem").write_bytes(key_pem)
    ident = MeshIdentity(MeshLayout("plug", tmp_path), MeshConfig(), plugin)
    ident.prepare(HOST_IP)
    assert ident.trust_bundle.read_bytes() == root
    # Nothing of the plug-in CA is copied into the state directory.
    assert not (ident.ca_dir / "ca-key.pem").exists()
    assert mode(ident.ca_dir / "token-key") == 0o600


# -- pods -----------------------------------------------------------------------------


def test_admit_writes_a_private_credential(identity: MeshIdentity) -> None:
    path = identity.admit("shop", "reviews-v1-0", "reviews")
    assert path == identity.layout.dir / "secrets" / "shop.reviews-v1-0" / TOKEN_FILE
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert mode(path.parent.parent) == 0o700
    claims, issued = identity.certificate_service().issue(path.read_text(), csr_request())
    assert (claims.namespace, claims.pod, claims.service_account) == (
        "shop",
        "reviews-v1-0",
        "reviews",
    )
    assert claims.pod_uid == identity.pods[("shop", "reviews-v1-0")].uid
    assert issued.identity == ME


def test_forgotten_pods_credential_is_dead(identity: MeshIdentity) -> None:
    path = identity.admit("shop", "reviews-v1-0", "reviews")
    tok = path.read_text()
    service = identity.certificate_service()
    service.issue(tok, csr_request())
    identity.forget("shop", "reviews-v1-0")
    assert not path.parent.exists()
    assert ("shop", "reviews-v1-0") not in identity.pods
    with pytest.raises(Refused) as info:
        identity.certificate_service().issue(tok, csr_request())
    assert info.value.status == grpc.StatusCode.UNAUTHENTICATED
    # A service made before the pod was forgotten sees it gone too.
    with pytest.raises(Refused):
        service.issue(tok, csr_request())
    identity.forget("shop", "reviews-v1-0")  # twice is harmless


def test_readmitted_pod_gets_a_new_credential_and_the_old_one_dies(
    identity: MeshIdentity,
) -> None:
    old = identity.admit("shop", "reviews-v1-0", "reviews").read_text()
    identity.forget("shop", "reviews-v1-0")
    new = identity.admit("shop", "reviews-v1-0", "reviews").read_text()
    assert new != old
    identity.certificate_service().issue(new, csr_request())
    with pytest.raises(Refused) as info:
        identity.certificate_service().issue(old, csr_request())
    assert info.value.status == grpc.StatusCode.UNAUTHENTICATED


def test_credential_gives_only_its_own_identity(identity: MeshIdentity) -> None:
    tok = identity.admit("shop", "reviews-v1-0", "reviews").read_text()
    with pytest.raises(Refused) as info:
        identity.certificate_service().issue(tok, csr_request("shop", "admin"))
    assert info.value.status == grpc.StatusCode.PERMISSION_DENIED


def test_another_meshs_credential_is_refused(tmp_path: Path, identity: MeshIdentity) -> None:
    other = MeshIdentity(MeshLayout("other", tmp_path), MeshConfig(), None)
    other.prepare(HOST_IP)
    tok = other.admit("shop", "reviews-v1-0", "reviews").read_text()
    identity.admit("shop", "reviews-v1-0", "reviews")
    with pytest.raises(Refused) as info:
        identity.certificate_service().issue(tok, csr_request())
    assert info.value.status == grpc.StatusCode.UNAUTHENTICATED


def test_trust_domain_comes_from_the_mesh_config(tmp_path: Path) -> None:
    ident = MeshIdentity(MeshLayout("td", tmp_path), MeshConfig(trust_domain="example.org"), None)
    ident.prepare(HOST_IP)
    tok = ident.admit("shop", "reviews-v1-0", "reviews").read_text()
    _, issued = ident.certificate_service().issue(tok, csr_request(td="example.org"))
    assert issued.identity == "spiffe://example.org/ns/shop/sa/reviews"


def test_token_file_holds_only_the_token(identity: MeshIdentity) -> None:
    tok = identity.admit("shop", "reviews-v1-0", "reviews").read_text()
    assert tok.count(".") == 2 and "\n" not in tok
    # Not a token of some default key: only this mesh's key verifies it.
    with pytest.raises(Exception, match="signature"):
        TokenSigner(b"\0" * 32).verify(tok)
    assert private_key_pem(generate_key()).decode() not in tok


# -- ADS over the TLS front -------------------------------------------------------------


def test_authorize(identity: MeshIdentity) -> None:
    identity.admit("shop", "reviews-v1-0", "reviews")
    unix = "unix:/run/mizzen/idtest/xds.sock"
    ok = Peer(unix, True, ME)
    assert identity.authorize(proxy(), ok) is None
    # The loopback debug port is plaintext and carries no identity.
    assert identity.authorize(proxy(), Peer("ipv4:127.0.0.1:5555")) is None

    def refused(p: Proxy, peer: Peer) -> str:
        reason = identity.authorize(p, peer)
        assert reason is not None
        return reason

    assert "no client certificate" in refused(proxy(), Peer(unix, True, ""))
    assert "is not a SPIFFE ID" in refused(proxy(), Peer(unix, True, "https://evil"))
    other_td = "spiffe://evil.org/ns/shop/sa/reviews"
    assert other_td in refused(proxy(), Peer(unix, True, other_td))
    # A certificate of another identity than the node claims.
    reason = refused(proxy(service_account="admin"), ok)
    assert ME in reason and "'admin'" in reason
    reason = refused(proxy(namespace="other"), ok)
    assert "namespace 'other'" in reason
    # The right identity for a pod that does not exist (or no longer does).
    assert "no pod shop/ghost-0" in refused(proxy(name="ghost-0"), ok)
    identity.forget("shop", "reviews-v1-0")
    assert "no pod shop/reviews-v1-0" in refused(proxy(), ok)


def test_authorize_checks_the_pods_service_account(identity: MeshIdentity) -> None:
    identity.admit("shop", "reviews-v1-0", "ratings")
    reason = identity.authorize(proxy(), Peer("unix:x", True, ME))
    assert reason is not None
    assert "runs as 'ratings'" in reason
