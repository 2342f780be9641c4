"""Certificates and keys of a local Kubernetes control plane.

One cluster CA signs everything: the API server's serving certificate and a
client certificate per component, whose subject is the identity Kubernetes
authenticates (CN = user, O = groups). The service-account signing key is a
separate RSA key, as kube-apiserver and kube-controller-manager expect.

Pure: ``make_pki`` returns PEM bytes; ``write_pki`` is the one function that
touches files (keys 0600 in a 0700 directory).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mizzen.ca.files import ensure_private_dir, write_private, write_public

VALIDITY = timedelta(days=365)


@dataclass(frozen=True)
class Pem:
    cert: bytes
    key: bytes


@dataclass(frozen=True)
class ClusterPki:
    ca: Pem
    apiserver: Pem
    clients: Mapping[str, Pem]  # by file stem: admin, controller-manager, ...
    service_account_key: bytes  # RSA private key, PEM
    service_account_pub: bytes


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, groups: Iterable[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key: object, now: datetime) -> Any:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _issue(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    now: datetime,
    sans: Iterable[x509.GeneralName] = (),
) -> Pem:
    key = _key()
    builder = _builder(subject, ca_cert.subject, key.public_key(), now)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    builder = builder.add_extension(
        x509.KeyUsage(True, False, True, False, False, False, False, False, False), True
    )
    builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), False)
    names = list(sans)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Pem(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def serving_names(advertise: IPv4Address, service_ip: IPv4Address) -> list[x509.GeneralName]:
    """What in-cluster and host clients call the API server."""
    dns = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    ips = [advertise, service_ip, IPv4Address("127.0.0.1")]
    return [x509.DNSName(d) for d in dns] + [x509.IPAddress(ip) for ip in ips]


def make_pki(
    cluster: str,
    advertise: IPv4Address,
    service_ip: IPv4Address,
    clients: Mapping[str, tuple[str, tuple[str, ...]]],
    now: datetime | None = None,
) -> ClusterPki:
    """A fresh CA and everything it signs. ``clients`` maps a file stem to
    (user, groups)."""
    now = now or datetime.now(UTC)
    ca_key = _key()
    ca_name = _name(f"mizzen-cluster-{cluster}-ca")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), True
        )
        .sign(ca_key, hashes.SHA256())
    )
    apiserver = _issue(
        ca_cert,
        ca_key,
        _name("kube-apiserver"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        now,
        serving_names(advertise, service_ip),
    )
    issued = {
        stem: _issue(ca_cert, ca_key, _name(user, groups), ExtendedKeyUsageOID.CLIENT_AUTH, now)
        for stem, (user, groups) in clients.items()
    }
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_pub = sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return ClusterPki(
        ca=Pem(ca_cert.public_bytes(serialization.Encoding.PEM), _key_pem(ca_key)),
        apiserver=apiserver,
        clients=issued,
        service_account_key=_key_pem(sa_key),
        service_account_pub=sa_pub,
    )


def write_pki(pki: ClusterPki, directory: Path) -> None:
    """ca.crt/ca.key, apiserver.crt/.key, <client>.crt/.key, sa.key/sa.pub."""
    ensure_private_dir(directory)
    write_public(directory / "ca.crt", pki.ca.cert)
    write_private(directory / "ca.key", pki.ca.key)
    for stem, pem in {"apiserver": pki.apiserver, **pki.clients}.items():
        write_public(directory / f"{stem}.crt", pem.cert)
        write_private(directory / f"{stem}.key", pem.key)
    write_private(directory / "sa.key", pki.service_account_key)
    write_public(directory / "sa.pub", pki.service_account_pub)
