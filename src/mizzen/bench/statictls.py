"""Static mutual TLS for the ``bare-envoy-mtls`` pair of the data-plane benchmark.

A throwaway root and two leaf certificates shaped like Istio's workload
certificates (ECDSA P-256, empty subject, one SPIFFE URI SAN marked critical,
server and client auth), written as files, plus the Envoy TLS contexts that
mirror what a mesh's sidecars do with ISTIO_MUTUAL:

    client Envoy  UpstreamTlsContext: its cert, SNI ``outbound_.80_._.<host>``,
                  ALPN ``istio``, server URI SAN checked against the root
    server Envoy  DownstreamTlsContext: client cert required and verified
                  against the root, ALPN ``h2,http/1.1``

The mesh gets its certificates over SDS; the bare pair reads files, which is
the same handshake and record work without an SDS server.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TRUST_DOMAIN = "cluster.local"
TLS_VERSIONS = {
    "tls_minimum_protocol_version": "TLSv1_2",
    "tls_maximum_protocol_version": "TLSv1_3",
}
CLIENT_ALPN = ("istio",)
SERVER_ALPN = ("h2", "http/1.1")
TLS_SOCKET = "envoy.transport_sockets.tls"
_TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
KEY_MODE = 0o600
CERT_MODE = 0o644
VALIDITY = datetime.timedelta(days=1)
# Clocks of the pods are the host's, but leave room for a certificate made
# just before a second ticks over.
BACKDATE = datetime.timedelta(minutes=5)


def spiffe_id(namespace: str, service_account: str, trust_domain: str = TRUST_DOMAIN) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def outbound_sni(host: str, port: int) -> str:
    """The SNI Istio's client sidecars send: ``outbound_.<port>_.<subset>_.<host>``."""
    return f"outbound_.{port}_._.{host}"


@dataclass(frozen=True)
class TlsFiles:
    """One workload's certificate chain and key, and the root to verify peers with."""

    spiffe: str
    cert: Path
    key: Path
    root: Path


def write_static_mtls(
    directory: Path, identities: dict[str, str], owner: tuple[int, int] | None = None
) -> dict[str, TlsFiles]:
    """A fresh root plus one leaf per ``role → SPIFFE ID``, as PEM files in directory.

    Keys are 0600 (owned by ``owner`` uid/gid when given, else by whoever
    runs this: the Envoys that read them must run as that user). The root's
    key is never written: nothing signs after this returns.
    """
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, TRUST_DOMAIN)])
    root = (
        _builder(root_name, root_name, root_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), False)
        .sign(root_key, hashes.SHA256())
    )
    root_path = directory / "root-cert.pem"
    _write(root_path, root.public_bytes(serialization.Encoding.PEM), CERT_MODE, owner)
    out = {}
    for role, spiffe in identities.items():
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (
            _builder(x509.Name([]), root_name, key.public_key(), now)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            # An empty subject makes the SAN the identity: RFC 5280 wants it critical.
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe)]),
                critical=True,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
                critical=False,
            )
            .sign(root_key, hashes.SHA256())
        )
        cert_path, key_path = directory / f"{role}-cert.pem", directory / f"{role}-key.pem"
        _write(cert_path, leaf.public_bytes(serialization.Encoding.PEM), CERT_MODE, owner)
        pem_key = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write(key_path, pem_key, KEY_MODE, owner)
        out[role] = TlsFiles(spiffe=spiffe, cert=cert_path, key=key_path, root=root_path)
    return out


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not cert_sign,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None) -> None:
    """Create path with mode from the first byte on (no window with wider access)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed a 0644 certificate
        if owner is not None:
            os.fchown(fd, *owner)
        os.write(fd, data)
    finally:
        os.close(fd)


# --- Envoy TLS contexts (JSON for a static bootstrap) ---------------------------------------


def _common(files: TlsFiles, alpn: tuple[str, ...], validation: dict[str, Any]) -> dict[str, Any]:
    return {
        "tls_params": dict(TLS_VERSIONS),
        "tls_certificates": [
            {
                "certificate_chain": {"filename": str(files.cert)},
                "private_key": {"filename": str(files.key)},
            }
        ],
        "validation_context": validation,
        "alpn_protocols": list(alpn),
    }


def upstream_tls_socket(files: TlsFiles, sni: str, server_spiffe: str) -> dict[str, Any]:
    """The client side: present our cert, check the server's URI SAN and root."""
    validation = {
        "trusted_ca": {"filename": str(files.root)},
        "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": server_spiffe}}],
    }
    return {
        "name": TLS_SOCKET,
        "typed_config": {
            "@type": _TLS_TYPE + "UpstreamTlsContext",
            "common_tls_context": _common(files, CLIENT_ALPN, validation),
            "sni": sni,
        },
    }


def downstream_tls_socket(files: TlsFiles) -> dict[str, Any]:
    """The server side: require a client cert from our root (identity checks are RBAC's)."""
    validation = {"trusted_ca": {"filename": str(files.root)}}
    return {
        "name": TLS_SOCKET,
        "typed_config": {
            "@type": _TLS_TYPE + "DownstreamTlsContext",
            "common_tls_context": _common(files, SERVER_ALPN, validation),
            "require_client_certificate": True,
        },
    }
