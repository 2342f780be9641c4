"""Certificates of the local control plane (mizzen.cluster.pki)."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mizzen.ca.files import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, PUBLIC_FILE_MODE
from mizzen.cluster.components import CLIENTS, node_client
from mizzen.cluster.pki import ClusterPki, make_pki, write_pki

ADVERTISE = IPv4Address("198.18.12.1")
SERVICE_IP = IPv4Address("198.19.12.1")
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
ALL_CLIENTS = {**CLIENTS, "node": node_client("mizzen-t")}


@pytest.fixture(scope="module")
def pki() -> ClusterPki:
    return make_pki("t", ADVERTISE, SERVICE_IP, ALL_CLIENTS, now=NOW)


def load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_ca_is_a_self_signed_ca(pki: ClusterPki) -> None:
    ca = load(pki.ca.cert)
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.value.ca is True
    assert bc.critical
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    assert ca.subject == ca.issuer
    ca.verify_directly_issued_by(ca)
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "mizzen-cluster-t-ca"
    )


def test_ca_key_matches_ca_cert(pki: ClusterPki) -> None:
    key = serialization.load_pem_private_key(pki.ca.key, password=None)
    assert key.public_key() == load(pki.ca.cert).public_key()


def test_validity_comes_from_now(pki: ClusterPki) -> None:
    for pem in [pki.ca, pki.apiserver, *pki.clients.values()]:
        cert = load(pem.cert)
        assert cert.not_valid_before_utc <= NOW < cert.not_valid_after_utc


def test_apiserver_cert_chains_to_the_ca(pki: ClusterPki) -> None:
    ca = load(pki.ca.cert)
    cert = load(pki.apiserver.cert)
    cert.verify_directly_issued_by(ca)  # raises on a wrong issuer or signature
    assert cert.issuer == ca.subject
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is False


def test_apiserver_cert_does_not_verify_against_another_ca(pki: ClusterPki) -> None:
    # Same cluster name, so same CA subject: only the signature tells them apart.
    other = make_pki("t", ADVERTISE, SERVICE_IP, {}, now=NOW)
    assert load(other.ca.cert).subject == load(pki.ca.cert).subject
    with pytest.raises(InvalidSignature):
        load(pki.apiserver.cert).verify_directly_issued_by(load(other.ca.cert))


def test_apiserver_cert_names_every_address_clients_use(pki: ClusterPki) -> None:
    cert = load(pki.apiserver.cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = san.get_values_for_type(x509.DNSName)
    ips = san.get_values_for_type(x509.IPAddress)
    assert "kubernetes.default.svc.cluster.local" in dns
    assert {"kubernetes", "kubernetes.default", "kubernetes.default.svc"} <= set(dns)
    assert ADVERTISE in ips
    assert SERVICE_IP in ips
    assert IPv4Address("127.0.0.1") in ips


def test_apiserver_cert_is_for_serving_only(pki: ClusterPki) -> None:
    assert eku(load(pki.apiserver.cert)) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_apiserver_key_matches_its_cert(pki: ClusterPki) -> None:
    key = serialization.load_pem_private_key(pki.apiserver.key, password=None)
    assert key.public_key() == load(pki.apiserver.cert).public_key()


def test_every_client_gets_a_cert(pki: ClusterPki) -> None:
    assert (
        set(pki.clients)
        == set(ALL_CLIENTS)
        == {
            "admin",
            "controller-manager",
            "scheduler",
            "node",
        }
    )


@pytest.mark.parametrize("stem", sorted(ALL_CLIENTS))
def test_client_cert_subject_is_user_and_groups(pki: ClusterPki, stem: str) -> None:
    user, groups = ALL_CLIENTS[stem]
    cert = load(pki.clients[stem].cert)
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert cns == [user]
    assert orgs == list(groups)
    assert eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    cert.verify_directly_issued_by(load(pki.ca.cert))
    key = serialization.load_pem_private_key(pki.clients[stem].key, password=None)
    assert key.public_key() == cert.public_key()


def test_node_client_cert_is_a_node_identity(pki: ClusterPki) -> None:
    cert = load(pki.clients["node"].cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "system:node:mizzen-t"
    )
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:nodes"
    ]


def test_service_account_key_is_rsa_and_matches_its_public_key(pki: ClusterPki) -> None:
    key = serialization.load_pem_private_key(pki.service_account_key, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    pub = serialization.load_pem_public_key(pki.service_account_pub)
    assert pub == key.public_key()


def test_each_make_pki_makes_a_fresh_ca(pki: ClusterPki) -> None:
    again = make_pki("t", ADVERTISE, SERVICE_IP, {}, now=NOW)
    assert again.ca.key != pki.ca.key
    assert again.clients == {}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_pki_writes_every_file_with_its_mode(pki: ClusterPki, tmp_path: Path) -> None:
    directory = tmp_path / "kube" / "pki"
    write_pki(pki, directory)
    stems = ["ca", "apiserver", *ALL_CLIENTS]
    expected = {f"{s}.crt" for s in stems} | {f"{s}.key" for s in stems} | {"sa.key", "sa.pub"}
    assert {p.name for p in directory.iterdir()} == expected  # no temp files left behind
    assert mode(directory) == PRIVATE_DIR_MODE == 0o700
    for p in directory.iterdir():
        if p.suffix == ".key":
            assert mode(p) == PRIVATE_FILE_MODE == 0o600, p.name
        else:
            assert mode(p) == PUBLIC_FILE_MODE == 0o644, p.name


def test_write_pki_writes_the_pem_bytes(pki: ClusterPki, tmp_path: Path) -> None:
    write_pki(pki, tmp_path / "pki")
    d = tmp_path / "pki"
    assert (d / "ca.crt").read_bytes() == pki.ca.cert
    assert (d / "ca.key").read_bytes() == pki.ca.key
    assert (d / "apiserver.crt").read_bytes() == pki.apiserver.cert
    assert (d / "apiserver.key").read_bytes() == pki.apiserver.key
    for stem, pem in pki.clients.items():
        assert (d / f"{stem}.crt").read_bytes() == pem.cert
        assert (d / f"{stem}.key").read_bytes() == pem.key
    assert (d / "sa.key").read_bytes() == pki.service_account_key
    assert (d / "sa.pub").read_bytes() == pki.service_account_pub


def test_write_pki_overwrites_a_previous_pki(pki: ClusterPki, tmp_path: Path) -> None:
    d = tmp_path / "pki"
    write_pki(make_pki("t", ADVERTISE, SERVICE_IP, {}, now=NOW), d)
    write_pki(pki, d)
    assert (d / "ca.crt").read_bytes() == pki.ca.cert
    assert mode(d / "ca.key") == 0o600
