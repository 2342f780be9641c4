from __future__ import annotations

import ipaddress
import shutil
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from ca_helpers import NOW, ec_key, load_chain, rsa_key
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from mizzen.ca import (
    BACKDATE,
    DEFAULT_WORKLOAD_CERT_TTL,
    MAX_WORKLOAD_CERT_TTL,
    CaError,
    CertificateAuthority,
    CsrRejected,
    generate_key,
    make_csr,
    private_key_pem,
    self_signed_root,
    spiffe_id,
)
from mizzen.ca.authority import SigningKey, serial_hex

BOOKINFO = spiffe_id("default", "bookinfo-reviews")
OTHER = spiffe_id("default", "bookinfo-ratings")
DAY = timedelta(days=1)


def csr_with(
    key: SigningKey | ed25519.Ed25519PrivateKey,
    sans: list[x509.GeneralName] | None,
    subject: x509.Name | None = None,
) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject or x509.Name([]))
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)


def uri(identity: object) -> x509.UniformResourceIdentifier:
    return x509.UniformResourceIdentifier(str(identity))


# --- the leaf --------------------------------------------------------------------


def test_sign_csr_happy_path(
    self_signed: CertificateAuthority, workload_key: ec.EllipticCurvePrivateKey
) -> None:
    issued = self_signed.sign_csr(
        make_csr(workload_key, BOOKINFO), BOOKINFO, DEFAULT_WORKLOAD_CERT_TTL, NOW
    )
    leaf, root = load_chain(issued.chain_pem)
    assert issued.chain_pem[1:] == self_signed.signing_chain_pem
    assert issued.chain_pem[-1] == self_signed.root_pem
    assert issued.leaf_pem == issued.chain_pem[0]
    assert issued.identity == "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"

    # Subject, key, validity, serial.
    assert leaf.subject == x509.Name([])
    assert leaf.issuer == root.subject
    assert leaf.public_key() == workload_key.public_key()
    assert issued.not_before == NOW - BACKDATE == leaf.not_valid_before_utc
    assert issued.not_after == NOW + timedelta(hours=24) == leaf.not_valid_after_utc
    assert issued.not_before.tzinfo is not None
    assert issued.not_before.utcoffset() == timedelta(0)
    assert 0 < leaf.serial_number < 2**128
    assert issued.serial == serial_hex(leaf.serial_number)
    assert issued.serial == issued.serial.upper()
    assert len(issued.serial) % 2 == 0
    assert int(issued.serial, 16) == leaf.serial_number

    # Exactly these extensions, with these values and criticality.
    ext = {e.oid: e for e in leaf.extensions}
    assert set(ext) == {
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    }
    san = ext[ExtensionOID.SUBJECT_ALTERNATIVE_NAME]
    assert san.critical
    assert list(san.value) == [uri(BOOKINFO)]
    bc = ext[ExtensionOID.BASIC_CONSTRAINTS]
    assert bc.critical
    assert bc.value == x509.BasicConstraints(ca=False, path_length=None)
    ku = ext[ExtensionOID.KEY_USAGE]
    assert ku.critical
    assert ku.value == x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=True,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    eku = ext[ExtensionOID.EXTENDED_KEY_USAGE]
    assert list(eku.value) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]
    assert ext[ExtensionOID.SUBJECT_KEY_IDENTIFIER].value == (
        x509.SubjectKeyIdentifier.from_public_key(workload_key.public_key())
    )
    root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = ext[ExtensionOID.AUTHORITY_KEY_IDENTIFIER].value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert aki.key_identifier == root_ski.digest

    # Signed by the root with SHA-256, and valid under a strict RFC 5280 verifier.
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)
    leaf.verify_directly_issued_by(root)
    verifier = PolicyBuilder().store(Store([root])).time(NOW).build_client_verifier()
    verified = verifier.verify(leaf, [])
    assert verified.subjects == [uri(BOOKINFO)]
    assert verified.chain == [leaf, root]


def test_serials_are_random(self_signed: CertificateAuthority) -> None:
    key = ec_key()
    serials = {
        self_signed.sign_csr(make_csr(key, BOOKINFO), BOOKINFO, DAY, NOW).serial for _ in range(5)
    }
    assert len(serials) == 5


def test_csr_without_san_gets_the_callers_identity(self_signed: CertificateAuthority) -> None:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored")])
    issued = self_signed.sign_csr(csr_with(ec_key(), None, subject), BOOKINFO, DAY, NOW)
    leaf = load_chain(issued.chain_pem)[0]
    assert leaf.subject == x509.Name([])  # the CSR's subject is not copied
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [str(BOOKINFO)]


def test_csr_extensions_are_not_copied(self_signed: CertificateAuthority) -> None:
    key = ec_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([uri(BOOKINFO)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    leaf = load_chain(self_signed.sign_csr(csr, BOOKINFO, DAY, NOW).chain_pem)[0]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_rsa_csr_accepted(self_signed: CertificateAuthority, rsa2048_key: SigningKey) -> None:
    issued = self_signed.sign_csr(make_csr(rsa2048_key, BOOKINFO), BOOKINFO, DAY, NOW)
    assert load_chain(issued.chain_pem)[0].public_key() == rsa2048_key.public_key()


def test_naive_now_is_a_programming_error(self_signed: CertificateAuthority) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        self_signed.sign_csr(make_csr(ec_key(), BOOKINFO), BOOKINFO, DAY, NOW.replace(tzinfo=None))


def test_microseconds_and_other_zones(self_signed: CertificateAuthority) -> None:
    cet = timezone(timedelta(hours=1))
    now = datetime(2026, 11, 22, 13, 0, 0, 987654, tzinfo=cet)
    issued = self_signed.sign_csr(make_csr(ec_key(), BOOKINFO), BOOKINFO, DAY, now)
    assert issued.not_before == datetime(2026, 11, 22, 11, 58, tzinfo=UTC)
    assert issued.not_after == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


# --- refusals --------------------------------------------------------------------


def test_csr_for_another_identity_refused(self_signed: CertificateAuthority) -> None:
    with pytest.raises(CsrRejected) as info:
        self_signed.sign_csr(make_csr(ec_key(), OTHER), BOOKINFO, DAY, NOW)
    assert str(OTHER) in str(info.value)  # what was asked
    assert str(BOOKINFO) in str(info.value)  # what is allowed


def test_csr_with_extra_uri_refused(self_signed: CertificateAuthority) -> None:
    csr = csr_with(ec_key(), [uri(BOOKINFO), uri(OTHER)])
    with pytest.raises(CsrRejected, match="bookinfo-ratings"):
        self_signed.sign_csr(csr, BOOKINFO, DAY, NOW)


@pytest.mark.parametrize(
    ("extra", "shown"),
    [
        (x509.DNSName("reviews.default.svc.cluster.local"), "reviews.default.svc.cluster.local"),
        (x509.IPAddress(ipaddress.ip_address("198.18.0.7")), "198.18.0.7"),
        (x509.RFC822Name("a@example.org"), "a@example.org"),
    ],
)
def test_csr_with_non_uri_san_refused(
    self_signed: CertificateAuthority, extra: x509.GeneralName, shown: str
) -> None:
    csr = csr_with(ec_key(), [uri(BOOKINFO), extra])
    with pytest.raises(CsrRejected) as info:
        self_signed.sign_csr(csr, BOOKINFO, DAY, NOW)
    assert shown in str(info.value)
    assert str(BOOKINFO) in str(info.value)


def test_tampered_csr_refused(self_signed: CertificateAuthority) -> None:
    der = x509.load_pem_x509_csr(make_csr(ec_key(), OTHER)).public_bytes(serialization.Encoding.DER)
    # Same length, so the CSR still parses; only the signature gives it away.
    tampered = der.replace(b"bookinfo-ratings", b"bookinfo-reviews")
    assert tampered != der
    pem = x509.load_der_x509_csr(tampered).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CsrRejected, match="signature does not verify"):
        self_signed.sign_csr(pem, BOOKINFO, DAY, NOW)


@pytest.mark.parametrize("data", [b"", b"hello", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"])
def test_garbage_csr_refused(self_signed: CertificateAuthority, data: bytes) -> None:
    with pytest.raises(CsrRejected, match="not a PEM certificate request"):
        self_signed.sign_csr(data, BOOKINFO, DAY, NOW)


def test_weak_keys_refused(self_signed: CertificateAuthority) -> None:
    with pytest.raises(CsrRejected, match="1024 bits"):
        self_signed.sign_csr(make_csr(rsa_key(1024), BOOKINFO), BOOKINFO, DAY, NOW)
    p521 = ec.generate_private_key(ec.SECP521R1())
    with pytest.raises(CsrRejected, match="secp521r1"):
        self_signed.sign_csr(make_csr(p521, BOOKINFO), BOOKINFO, DAY, NOW)
    edkey = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(CsrRejected, match="not supported"):
        self_signed.sign_csr(csr_with(edkey, [uri(BOOKINFO)]), BOOKINFO, DAY, NOW)


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(seconds=-1), -DAY])
def test_non_positive_ttl_refused(self_signed: CertificateAuthority, ttl: timedelta) -> None:
    with pytest.raises(CsrRejected, match="not positive"):
        self_signed.sign_csr(make_csr(ec_key(), BOOKINFO), BOOKINFO, ttl, NOW)


# --- lifetimes -------------------------------------------------------------------


def test_ttl_capped_at_90_days(self_signed: CertificateAuthority) -> None:
    assert timedelta(days=90) == MAX_WORKLOAD_CERT_TTL
    issued = self_signed.sign_csr(make_csr(ec_key(), BOOKINFO), BOOKINFO, 365 * DAY, NOW)
    assert issued.not_after == NOW + timedelta(days=90)
    exact = self_signed.sign_csr(make_csr(ec_key(), BOOKINFO), BOOKINFO, 90 * DAY, NOW)
    assert exact.not_after == NOW + timedelta(days=90)


def test_ttl_capped_at_signing_cert_expiry() -> None:
    ca, _ = self_signed_root("cluster.local", NOW, ttl=10 * DAY)
    root_end = ca.signing_cert.not_valid_after_utc
    assert root_end == NOW + 10 * DAY
    issued = ca.sign_csr(make_csr(ec_key(), BOOKINFO), BOOKINFO, 30 * DAY, NOW)
    assert issued.not_after == root_end
    later = NOW + 9 * DAY + timedelta(hours=23)
    issued = ca.sign_csr(make_csr(ec_key(), BOOKINFO), BOOKINFO, DAY, later)
    assert issued.not_after == root_end
    assert ca.expires == root_end


def test_expired_ca_cannot_sign() -> None:
    ca, _ = self_signed_root("cluster.local", NOW, ttl=DAY)
    with pytest.raises(CaError, match="expired on 2026-11-23 12:00:00 UTC"):
        ca.sign_csr(make_csr(ec_key(), BOOKINFO), BOOKINFO, DAY, NOW + DAY)


def test_ca_not_yet_valid_cannot_sign() -> None:
    ca, _ = self_signed_root("cluster.local", NOW)
    with pytest.raises(CaError, match=r"not valid until .*check the clock"):
        ca.sign_csr(make_csr(ec_key(), BOOKINFO), BOOKINFO, DAY, NOW - DAY)


def test_not_before_never_precedes_the_signing_cert() -> None:
    ca, _ = self_signed_root("cluster.local", NOW)
    issued = ca.sign_csr(make_csr(ec_key(), BOOKINFO), BOOKINFO, DAY, NOW)
    assert issued.not_before == ca.signing_cert.not_valid_before_utc == NOW - BACKDATE
    soon = NOW - BACKDATE + timedelta(seconds=30)
    issued = ca.sign_csr(make_csr(ec_key(), BOOKINFO), BOOKINFO, DAY, soon)
    assert issued.not_before == ca.signing_cert.not_valid_before_utc


# --- the self-signed root ----------------------------------------------------------


def test_self_signed_root_shape() -> None:
    ca, key_pem = self_signed_root("example.org", NOW)
    root = ca.signing_cert
    assert root.subject == x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "example.org")])
    assert root.issuer == root.subject
    assert root.not_valid_before_utc == NOW - BACKDATE
    assert root.not_valid_after_utc == NOW + timedelta(days=3650)
    bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = root.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    root.verify_directly_issued_by(root)
    assert ca.signing_chain_pem == (ca.root_pem,)
    assert ca.root_certs == (root,)
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == root.public_key()
    assert b"BEGIN PRIVATE KEY" in key_pem


def test_self_signed_roots_differ() -> None:
    a, _ = self_signed_root("cluster.local", NOW)
    b, _ = self_signed_root("cluster.local", NOW)
    assert a.root_pem != b.root_pem


@pytest.mark.parametrize("trust_domain", ["", "Cluster.Local", "a/b"])
def test_self_signed_root_rejects_bad_trust_domain(trust_domain: str) -> None:
    with pytest.raises(CaError, match="trust domain"):
        self_signed_root(trust_domain, NOW)


def test_repr_shows_no_key_material() -> None:
    ca, key_pem = self_signed_root("cluster.local", NOW)
    body = b"".join(key_pem.splitlines()[1:-1]).decode()
    assert body[:20] not in repr(ca)
    assert repr(ca) == "CertificateAuthority(signing='O=cluster.local')"


def test_constructor_checks_the_pieces_fit() -> None:
    ca, key_pem = self_signed_root("cluster.local", NOW)
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    root = ca.signing_cert
    assert CertificateAuthority(key, [root], [root]).root_pem == ca.root_pem
    with pytest.raises(CaError, match="does not match"):
        CertificateAuthority(generate_key(), [root], [root])
    with pytest.raises(CaError, match="empty"):
        CertificateAuthority(key, [], [root])
    other, _ = self_signed_root("cluster.local", NOW)
    with pytest.raises(CaError, match="does not end with a root"):
        CertificateAuthority(key, [root], [other.signing_cert])


# --- helpers for the agent ------------------------------------------------------------


def test_make_csr(workload_key: ec.EllipticCurvePrivateKey) -> None:
    csr = x509.load_pem_x509_csr(make_csr(workload_key, BOOKINFO))
    assert csr.is_signature_valid
    assert csr.subject == x509.Name([])
    assert csr.public_key() == workload_key.public_key()
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert list(san.value) == [uri(BOOKINFO)]


def test_generate_key_and_pem() -> None:
    key = generate_key()
    assert isinstance(key.curve, ec.SECP256R1)
    data = private_key_pem(key)
    assert data.startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS8, not encrypted
    loaded = serialization.load_pem_private_key(data, password=None)
    assert loaded.public_key() == key.public_key()


def test_serial_hex_matches_openssl_format() -> None:
    assert serial_hex(0x0A0B) == "0A0B"
    assert serial_hex(0xABC) == "0ABC"
    assert serial_hex(1) == "01"
    assert serial_hex(0x8F01) == "8F01"


# --- the control plane's own certificate ------------------------------------------------


def test_issue_server_cert(self_signed: CertificateAuthority) -> None:
    key_pem, issued = self_signed.issue_server_cert(
        ["istiod.istio-system.svc", "Localhost"], ["198.18.0.1", "::1"], DAY, NOW
    )
    assert issued.identity == ""
    leaf, root = load_chain(issued.chain_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert key.public_key() == leaf.public_key()
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.DNSName) == ["istiod.istio-system.svc", "localhost"]
    assert [str(a) for a in san.value.get_values_for_type(x509.IPAddress)] == ["198.18.0.1", "::1"]
    assert issued.not_after == NOW + DAY
    verifier = (
        PolicyBuilder()
        .store(Store([root]))
        .time(NOW)
        .build_server_verifier(x509.DNSName("istiod.istio-system.svc"))
    )
    assert verifier.verify(leaf, []) == [leaf, root]


@pytest.mark.parametrize(
    ("dns", "ips", "fragment"),
    [
        ([], [], "at least one"),
        (["bad name"], [], "not a valid DNS name"),
        (["-x.example"], [], "not a valid DNS name"),
        ([], ["300.1.1.1"], "not a valid IP address"),
    ],
)
def test_issue_server_cert_rejects(
    self_signed: CertificateAuthority, dns: list[str], ips: list[str], fragment: str
) -> None:
    with pytest.raises(CaError, match=fragment):
        self_signed.issue_server_cert(dns, ips, DAY, NOW)


def test_issue_server_cert_rejects_bad_ttl(self_signed: CertificateAuthority) -> None:
    with pytest.raises(CaError, match="not positive"):
        self_signed.issue_server_cert(["istiod"], [], timedelta(0), NOW)


# --- cross-check with openssl ------------------------------------------------------------


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_openssl_agrees(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    ca, _ = self_signed_root("cluster.local", now)
    issued = ca.sign_csr(make_csr(ec_key(), BOOKINFO), BOOKINFO, DAY, now)
    (tmp_path / "root.pem").write_text(ca.root_pem)
    (tmp_path / "leaf.pem").write_text(issued.leaf_pem)
    for purpose in ("sslclient", "sslserver"):
        subprocess.run(
            ["openssl", "verify", "-purpose", purpose, "-CAfile", "root.pem", "leaf.pem"],
            cwd=tmp_path,
            check=True,
            capture_output=True,
        )
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-serial", "-in", "leaf.pem"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert out.strip() == f"serial={issued.serial}"
