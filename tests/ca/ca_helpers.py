"""Builders for CA test fixtures: keys, CA certificates, plug-in directories."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from mizzen.ca.authority import SigningKey

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Mizzen Test"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def ca_cert(
    cn: str,
    key: SigningKey,
    issuer: tuple[x509.Certificate, SigningKey] | None = None,
    *,
    ca: bool = True,
    key_cert_sign: bool = True,
    path_length: int | None = None,
    not_before: datetime = NOW - 30 * DAY,
    not_after: datetime = NOW + 365 * DAY,
    issuer_name: x509.Name | None = None,
) -> x509.Certificate:
    """A CA certificate for `key`, self-signed unless `issuer` (cert, key) is given."""
    subject = name(cn)
    signer_key = key if issuer is None else issuer[1]
    if issuer_name is None:
        issuer_name = subject if issuer is None else issuer[0].subject
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    aki = (
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        if issuer is None
        else x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key())
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=key_cert_sign,
                crl_sign=key_cert_sign,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(aki, critical=False)
        .sign(signer_key, hashes.SHA256())
    )


@dataclass(frozen=True)
class Pki:
    """A root and an intermediate (the plug-in signing CA) below it."""

    root: x509.Certificate
    root_key: SigningKey
    inter: x509.Certificate
    inter_key: SigningKey


def make_pki(root_key: SigningKey, inter_key: SigningKey) -> Pki:
    root = ca_cert("Test Root CA", root_key)
    inter = ca_cert("Test Intermediate CA", inter_key, (root, root_key))
    return Pki(root, root_key, inter, inter_key)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_pem(key: SigningKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if password is None
        else serialization.BestAvailableEncryption(password)
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def write_plugin(
    directory: Path,
    ca_cert: x509.Certificate,
    ca_key: SigningKey,
    roots: Sequence[x509.Certificate],
    chain: Sequence[x509.Certificate],
) -> Path:
    """Istio's four plug-in CA files in `directory` (created)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca-cert.pem").write_bytes(pem(ca_cert))
    (directory / "ca-key.pem").write_bytes(key_pem(ca_key))
    (directory / "root-cert.pem").write_bytes(pem(*roots))
    (directory / "cert-chain.pem").write_bytes(pem(*chain))
    return directory


def write_pki(directory: Path, pki: Pki) -> Path:
    """The usual plug-in layout: intermediate signs, chain = intermediate + root."""
    return write_plugin(directory, pki.inter, pki.inter_key, [pki.root], [pki.inter, pki.root])


def load_chain(chain_pem: Sequence[str]) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate(p.encode()) for p in chain_pem]
