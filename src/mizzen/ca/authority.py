"""The certificate authority: signs workload CSRs with SPIFFE identities.

Rules followed here (Istio's observable behaviour):

- A workload certificate carries its SPIFFE URI as its only SAN and an empty
  subject, so the SAN extension is critical (RFC 5280 4.2.1.6). It is an end
  entity (BasicConstraints CA=false), for TLS servers and clients, and lives
  ``DEFAULT_WORKLOAD_CERT_TTL`` (24 h) unless asked otherwise; requested
  lifetimes are capped at ``MAX_WORKLOAD_CERT_TTL`` (90 days) and at the expiry
  of the signing chain. ``not_before`` is backdated by ``BACKDATE`` for clock
  skew between machines.
- A CSR is signed only if its own signature verifies and any SAN it asks for is
  exactly the identity the caller was authenticated as; the CA decides every
  extension, nothing is copied from the CSR.
- The issued chain is leaf first, then the signing chain, root last.
- A plug-in CA is Istio's directory of four files (``ca-cert.pem``,
  ``ca-key.pem``, ``root-cert.pem``, ``cert-chain.pem``); without one, a
  self-signed root (``O=<trust domain>``) is made once and kept in the state
  directory, so a restart keeps the same root.

Everything except ``load_plugin``/``load_or_create`` (and the writers in
``files.py``) is pure: the time is always passed in as ``now``.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mizzen.ca.errors import CaError, CsrRejected
from mizzen.ca.files import (
    ensure_private_dir,
    read_file,
    read_private,
    write_private,
    write_public,
)
from mizzen.ca.identity import SpiffeId, check_trust_domain

__all__ = [
    "BACKDATE",
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "CERT_CHAIN_FILE",
    "DEFAULT_ROOT_TTL",
    "DEFAULT_WORKLOAD_CERT_TTL",
    "MAX_WORKLOAD_CERT_TTL",
    "PLUGIN_FILES",
    "ROOT_CERT_FILE",
    "CaError",
    "CertificateAuthority",
    "CsrRejected",
    "IssuedCert",
    "SigningKey",
    "ca_from_plugin_pem",
    "generate_key",
    "load_or_create",
    "load_plugin",
    "make_csr",
    "private_key_pem",
    "self_signed_root",
    "serial_hex",
    "write_private",
]

BACKDATE = timedelta(minutes=2)
DEFAULT_WORKLOAD_CERT_TTL = timedelta(hours=24)
MAX_WORKLOAD_CERT_TTL = timedelta(days=90)
DEFAULT_ROOT_TTL = timedelta(days=3650)

CA_CERT_FILE = "ca-cert.pem"
CA_KEY_FILE = "ca-key.pem"
ROOT_CERT_FILE = "root-cert.pem"
CERT_CHAIN_FILE = "cert-chain.pem"
PLUGIN_FILES = (CA_CERT_FILE, CA_KEY_FILE, ROOT_CERT_FILE, CERT_CHAIN_FILE)
# What a self-signed CA left in a state directory must hold to be reloaded.
_STATE_FILES = (CA_CERT_FILE, CA_KEY_FILE, ROOT_CERT_FILE)

MIN_RSA_BITS = 2048
_CSR_CURVES = (ec.SECP256R1, ec.SECP384R1)

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_DNS_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME_RE = re.compile(rf"(\*\.)?{_DNS_LABEL}(\.{_DNS_LABEL})*")


@dataclass(frozen=True)
class IssuedCert:
    """A signed certificate and the chain to hand to its owner."""

    chain_pem: tuple[str, ...]  # leaf, then the signing chain, root last
    serial: str  # upper-case hex, as `openssl x509 -serial` prints it
    not_before: datetime  # aware, UTC
    not_after: datetime  # aware, UTC
    identity: str  # the URI SAN ("" for the control plane's DNS certificate)

    @property
    def leaf_pem(self) -> str:
        return self.chain_pem[0]


def serial_hex(serial: int) -> str:
    """A serial number the way `openssl x509 -serial` prints it (``0A1B``)."""
    text = f"{serial:X}"
    return text if len(text) % 2 == 0 else "0" + text


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _spki(key: object) -> bytes:
    if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return b""


def _describe(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "<empty subject>"


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now.astimezone(UTC).replace(microsecond=0)


def _when(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _random_serial() -> int:
    """A random positive serial number of at most 128 bits."""
    while True:
        serial = secrets.randbits(128)
        if serial:
            return serial


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _can_sign_certs(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    except x509.ExtensionNotFound:
        return False


def _key_usage(
    *, key_encipherment: bool = False, signs_certificates: bool = False
) -> x509.KeyUsage:
    """Digital signature always; key encipherment for workload leaves,
    certificate and CRL signing for CAs."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        public_key = issuer.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise CaError(f"unsupported key type in {_describe(issuer)}") from None
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key)
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


class CertificateAuthority:
    """A signing key, its chain up to a root, and the trust bundle.

    Build one with ``self_signed_root``, ``load_plugin``, ``load_or_create`` or
    ``ca_from_plugin_pem`` (which check the chain and name the file at fault);
    the constructor itself only checks that the pieces fit together. State is
    read-only; the key never appears in ``repr``.
    """

    __slots__ = ("_chain", "_key", "_roots")

    def __init__(
        self,
        signing_key: SigningKey,
        signing_chain: Sequence[x509.Certificate],
        roots: Sequence[x509.Certificate],
    ) -> None:
        if not isinstance(signing_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise CaError("the signing key must be an RSA or ECDSA key")
        if not signing_chain:
            raise CaError("the signing chain is empty")
        if not roots:
            raise CaError("the trust bundle holds no root certificate")
        if _spki(signing_key.public_key()) != _spki(signing_chain[0].public_key()):
            raise CaError("the signing key does not match the signing certificate")
        root_ders = {_der(r) for r in roots}
        if _der(signing_chain[-1]) not in root_ders:
            raise CaError("the signing chain does not end with a root of the trust bundle")
        self._key: SigningKey = signing_key
        self._chain: tuple[x509.Certificate, ...] = tuple(signing_chain)
        self._roots: tuple[x509.Certificate, ...] = tuple(roots)

    def __repr__(self) -> str:
        return f"CertificateAuthority(signing={_describe(self._chain[0])!r})"

    @property
    def signing_cert(self) -> x509.Certificate:
        return self._chain[0]

    @property
    def root_certs(self) -> tuple[x509.Certificate, ...]:
        return self._roots

    @property
    def root_pem(self) -> str:
        """The trust bundle: every root, PEM, concatenated."""
        return "".join(_pem(r) for r in self._roots)

    @property
    def signing_chain_pem(self) -> tuple[str, ...]:
        """The signing certificate, its intermediates, then the root."""
        return tuple(_pem(c) for c in self._chain)

    @property
    def expires(self) -> datetime:
        """When the first certificate of the signing chain expires (aware UTC)."""
        return min(c.not_valid_after_utc for c in self._chain)

    def sign_csr(
        self, csr_pem: bytes, identity: SpiffeId, ttl: timedelta, now: datetime
    ) -> IssuedCert:
        """Sign a workload CSR for `identity` (already authenticated by the caller).

        Raises CsrRejected for a CSR the CA refuses (bad signature, other
        SANs, weak key, lifetime not positive), CaError when the CA itself
        cannot sign (signing chain expired or not valid yet).
        """
        csr = _load_csr(csr_pem)
        try:
            signature_ok = csr.is_signature_valid
            public_key = _csr_key(csr)
        except (ValueError, UnsupportedAlgorithm) as e:
            raise CsrRejected(
                f"the CSR's key or signature algorithm is not supported: {e}"
            ) from None
        if not signature_ok:
            raise CsrRejected("the CSR's signature does not verify (was it altered after signing?)")
        _check_csr_sans(csr, identity)
        uri = str(identity)
        if ttl <= timedelta(0):
            raise CsrRejected(f"requested certificate lifetime {ttl} is not positive")
        cert = self._issue(public_key, [x509.UniformResourceIdentifier(uri)], ttl, now)
        return self._issued(cert, uri)

    def issue_server_cert(
        self,
        dns_names: Sequence[str],
        ip_addresses: Sequence[str],
        ttl: timedelta,
        now: datetime,
    ) -> tuple[bytes, IssuedCert]:
        """A fresh key (PKCS8 PEM) and certificate for the control plane's TLS port.

        The certificate names `dns_names` and `ip_addresses` as SANs (no URI;
        ``IssuedCert.identity`` is ""); lifetime rules are the workload ones.
        """
        sans: list[x509.GeneralName] = []
        for name in dns_names:
            if not isinstance(name, str) or _DNS_NAME_RE.fullmatch(name) is None:
                raise CaError(f"{name!r} is not a valid DNS name for the server certificate")
            sans.append(x509.DNSName(name.lower()))
        for text in ip_addresses:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(text)))
            except ValueError:
                raise CaError(
                    f"{text!r} is not a valid IP address for the server certificate"
                ) from None
        if not sans:
            raise CaError("a server certificate needs at least one DNS name or IP address")
        if ttl <= timedelta(0):
            raise CaError(f"server certificate lifetime {ttl} is not positive")
        key = generate_key()
        cert = self._issue(key.public_key(), sans, ttl, now)
        return private_key_pem(key), self._issued(cert, "")

    def _issue(
        self,
        public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
        sans: list[x509.GeneralName],
        ttl: timedelta,
        now: datetime,
    ) -> x509.Certificate:
        not_before, not_after = self._validity(ttl, now)
        signing = self._chain[0]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(signing.subject)
            .public_key(public_key)
            .serial_number(_random_serial())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(sans), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                _key_usage(key_encipherment=True),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(_authority_key_id(signing), critical=False)
        )
        return builder.sign(self._key, hashes.SHA256())

    def _validity(self, ttl: timedelta, now: datetime) -> tuple[datetime, datetime]:
        now = _utc(now)
        signing = self._chain[0]
        if now < signing.not_valid_before_utc:
            raise CaError(
                f"the CA's signing certificate ({_describe(signing)}) is not valid until "
                f"{_when(signing.not_valid_before_utc)}; check the clock"
            )
        end = self.expires
        if now >= end:
            raise CaError(
                f"the CA's signing chain expired on {_when(end)}; install a new signing "
                "certificate (plug-in CA) or remove the state directory's CA files"
            )
        ttl = min(ttl, MAX_WORKLOAD_CERT_TTL)
        not_before = max(now - BACKDATE, signing.not_valid_before_utc)
        return not_before, min(now + ttl, end)

    def _issued(self, cert: x509.Certificate, identity: str) -> IssuedCert:
        return IssuedCert(
            chain_pem=(_pem(cert), *self.signing_chain_pem),
            serial=serial_hex(cert.serial_number),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            identity=identity,
        )


def _load_csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    if isinstance(csr_pem, str):
        csr_pem = csr_pem.encode("ascii", "replace")
    try:
        return x509.load_pem_x509_csr(csr_pem)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise CsrRejected(f"not a PEM certificate request: {e}") from None


def _csr_key(
    csr: x509.CertificateSigningRequest,
) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """The CSR's public key, if strong enough: RSA >= 2048 bits, ECDSA P-256 or P-384."""
    public_key = csr.public_key()
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise CsrRejected(
                f"the CSR's RSA key has {public_key.key_size} bits; at least {MIN_RSA_BITS}"
                " are required"
            )
        return public_key
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, _CSR_CURVES):
            raise CsrRejected(
                f"the CSR's ECDSA key uses curve {public_key.curve.name}; "
                "use P-256 (secp256r1) or P-384"
            )
        return public_key
    raise CsrRejected(
        f"the CSR's key type ({type(public_key).__name__}) is not supported; use ECDSA P-256 or RSA"
    )


def _check_csr_sans(csr: x509.CertificateSigningRequest, identity: SpiffeId) -> None:
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return
    except ValueError as e:
        raise CsrRejected(f"the CSR's extensions cannot be parsed: {e}") from None
    allowed = str(identity)
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    others = [
        f"{type(n).__name__} {getattr(n, 'value', n)}"
        for n in san
        if not isinstance(n, x509.UniformResourceIdentifier)
    ]
    if others:
        raise CsrRejected(
            f"the CSR asks for {', '.join(others)}; a workload certificate may only name "
            f"its identity {allowed}"
        )
    if uris != [allowed]:
        raise CsrRejected(
            f"the CSR asks for {', '.join(uris) or 'no identity'}; this caller may only "
            f"get {allowed}"
        )


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A new ECDSA P-256 key."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: SigningKey) -> bytes:
    """The key as unencrypted PKCS8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_csr(key: SigningKey, identity: SpiffeId) -> bytes:
    """A PEM CSR for `identity`: empty subject, the URI as its only (critical) SAN."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(identity))]),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def self_signed_root(
    trust_domain: str, now: datetime, ttl: timedelta = DEFAULT_ROOT_TTL
) -> tuple[CertificateAuthority, bytes]:
    """A new root CA (ECDSA P-256, ``O=<trust domain>``) and its key as PEM."""
    try:
        check_trust_domain(trust_domain)
    except ValueError as e:
        raise CaError(f"cannot make a root CA: {e}") from None
    if ttl <= timedelta(0):
        raise CaError(f"root certificate lifetime {ttl} is not positive")
    now = _utc(now)
    key = generate_key()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_random_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + ttl)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            _key_usage(signs_certificates=True),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(key, [cert], [cert]), private_key_pem(key)


# --- plug-in CA: Istio's four files -------------------------------------------------


def _load_certs(label: str, data: bytes) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        if b"-----BEGIN CERTIFICATE-----" not in data:
            raise CaError(f"{label}: no PEM certificate found") from None
        raise CaError(f"{label}: not a valid PEM certificate: {e}") from None
    if not certs:
        raise CaError(f"{label}: no PEM certificate found")
    return certs


def _load_key(label: str, data: bytes) -> SigningKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CaError(
            f"{label}: the key is encrypted; Istio's plug-in CA needs an unencrypted key "
            "(decrypt it with `openssl pkey`)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        # The parser's message could quote key bytes: never pass it on.
        raise CaError(f"{label}: not a PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CaError(f"{label}: the key must be RSA or ECDSA, not {type(key).__name__}")
    return key


def _check_time(label: str, cert: x509.Certificate, now: datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise CaError(
            f"{label} is not valid until {_when(cert.not_valid_before_utc)}; check the clock "
            "or wait"
        )
    if now >= cert.not_valid_after_utc:
        raise CaError(
            f"{label} expired on {_when(cert.not_valid_after_utc)}; install a renewed certificate"
        )


def ca_from_plugin_pem(
    files: Mapping[str, bytes], now: datetime, source: str = "cacerts"
) -> CertificateAuthority:
    """Check Istio's plug-in CA files (contents keyed by file name) and build the CA.

    `cert-chain.pem` may be absent (then the chain is ``ca-cert.pem`` alone). If
    the chain stops below the root, the root from `root-cert.pem` that signed
    its last certificate is appended. `source` prefixes file names in errors
    (a directory, or a Kubernetes secret).
    """
    now = _utc(now)

    def label(name: str) -> str:
        return f"{source.rstrip('/')}/{name}"

    missing = [name for name in (CA_CERT_FILE, CA_KEY_FILE, ROOT_CERT_FILE) if name not in files]
    if missing:
        raise CaError(f"{source} is missing {', '.join(missing)}")

    ca_certs = _load_certs(label(CA_CERT_FILE), files[CA_CERT_FILE])
    if len(ca_certs) > 1:
        raise CaError(
            f"{label(CA_CERT_FILE)} holds {len(ca_certs)} certificates; it must hold only the "
            f"signing certificate (put intermediates in {CERT_CHAIN_FILE})"
        )
    ca_cert = ca_certs[0]
    key = _load_key(label(CA_KEY_FILE), files[CA_KEY_FILE])
    if _spki(key.public_key()) != _spki(ca_cert.public_key()):
        raise CaError(
            f"{label(CA_KEY_FILE)} does not match the public key in {CA_CERT_FILE}; "
            "install the key that belongs to the signing certificate"
        )
    if not _is_ca(ca_cert):
        raise CaError(
            f"{label(CA_CERT_FILE)} is not a CA certificate (BasicConstraints CA:TRUE is "
            "missing); issue the signing certificate as an intermediate CA"
        )
    if not _can_sign_certs(ca_cert):
        raise CaError(
            f"{label(CA_CERT_FILE)} may not sign certificates (KeyUsage keyCertSign is "
            "missing); issue it with keyUsage = keyCertSign"
        )
    roots = _load_certs(label(ROOT_CERT_FILE), files[ROOT_CERT_FILE])
    chain_data = files.get(CERT_CHAIN_FILE)
    chain = [ca_cert] if chain_data is None else _load_certs(label(CERT_CHAIN_FILE), chain_data)
    chain_label = label(CERT_CHAIN_FILE)
    if _der(chain[0]) != _der(ca_cert):
        raise CaError(
            f"{chain_label} must start with the certificate in {CA_CERT_FILE}; it starts with "
            f"{_describe(chain[0])}"
        )
    for i, (child, issuer) in enumerate(itertools.pairwise(chain)):
        _check_link(chain_label, i, child, issuer)
    root_ders = {_der(r) for r in roots}
    if _der(chain[-1]) not in root_ders:
        anchor = next((r for r in roots if _issued_by(chain[-1], r)), None)
        if anchor is None:
            raise CaError(
                f"{chain_label} does not chain to {ROOT_CERT_FILE}: its last certificate "
                f"({_describe(chain[-1])}, issued by {chain[-1].issuer.rfc4514_string()}) is "
                f"neither in {ROOT_CERT_FILE} nor signed by a certificate there"
            )
        if not _is_ca(anchor):
            raise CaError(f"{label(ROOT_CERT_FILE)}: {_describe(anchor)} is not a CA certificate")
        chain.append(anchor)
    _check_path_lengths(chain_label, chain)
    _check_time(label(CA_CERT_FILE), ca_cert, now)
    for i, cert in enumerate(chain[1:], start=2):
        where = (
            f"{label(ROOT_CERT_FILE)}: root {_describe(cert)}"
            if _der(cert) in root_ders
            else f"{chain_label}: certificate {i} ({_describe(cert)})"
        )
        _check_time(where, cert, now)
    return CertificateAuthority(key, chain, roots)


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _check_link(label: str, index: int, child: x509.Certificate, issuer: x509.Certificate) -> None:
    what = f"certificate {index + 1} ({_describe(child)})"
    by = f"certificate {index + 2} ({_describe(issuer)})"
    fix = "list the signing certificate first, then each issuer in order up to the root"
    try:
        child.verify_directly_issued_by(issuer)
    except InvalidSignature:
        raise CaError(
            f"{label}: the signature of {what} does not verify with {by}; {fix}"
        ) from None
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise CaError(f"{label}: {what} is not issued by {by} ({e}); {fix}") from None
    if not _is_ca(issuer):
        raise CaError(f"{label}: {by} is not a CA certificate (BasicConstraints CA:TRUE)")


def _check_path_lengths(label: str, chain: Sequence[x509.Certificate]) -> None:
    # chain[j] has the j CA certificates chain[0..j-1] below it.
    for j, cert in enumerate(chain[1:], start=1):
        try:
            limit = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            continue
        if limit.path_length is not None and limit.path_length < j:
            raise CaError(
                f"{label}: certificate {j + 1} ({_describe(cert)}) allows "
                f"{limit.path_length} CA certificate(s) below it (pathLenConstraint) but "
                f"the chain has {j}"
            )


def load_plugin(directory: Path, now: datetime | None = None) -> CertificateAuthority:
    """Load Istio's plug-in CA directory; `now` defaults to the current time."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CaError(
            f"plug-in CA directory {directory} does not exist; it must hold "
            f"{', '.join(PLUGIN_FILES)}"
        )
    missing = [name for name in PLUGIN_FILES if not (directory / name).is_file()]
    if missing:
        raise CaError(
            f"plug-in CA directory {directory} is missing {', '.join(missing)}; Istio's "
            f"plug-in CA needs all of {', '.join(PLUGIN_FILES)}"
        )
    files = {name: read_file(directory / name) for name in PLUGIN_FILES}
    return ca_from_plugin_pem(files, datetime.now(UTC) if now is None else now, str(directory))


def load_or_create(
    state_dir: Path, trust_domain: str, now: datetime, plugin_dir: Path | None = None
) -> CertificateAuthority:
    """The mesh's CA: the plug-in CA if given, else the self-signed one in `state_dir`.

    A self-signed CA is made on first use: ``ca-key.pem`` (0600) and
    ``ca-cert.pem``, ``root-cert.pem``, ``cert-chain.pem`` (0644) in
    `state_dir` (created 0700). Later calls load it, so a restart keeps the
    same root. A partial set of files is an error, never silently replaced.
    """
    if plugin_dir is not None:
        return load_plugin(plugin_dir, now)
    state_dir = Path(state_dir)
    present = [name for name in _STATE_FILES if (state_dir / name).exists()]
    if len(present) == len(_STATE_FILES):
        files = {
            CA_CERT_FILE: read_file(state_dir / CA_CERT_FILE),
            CA_KEY_FILE: read_private(state_dir / CA_KEY_FILE),
            ROOT_CERT_FILE: read_file(state_dir / ROOT_CERT_FILE),
        }
        if (state_dir / CERT_CHAIN_FILE).exists():
            files[CERT_CHAIN_FILE] = read_file(state_dir / CERT_CHAIN_FILE)
        return ca_from_plugin_pem(files, now, str(state_dir))
    if present:
        missing = [name for name in _STATE_FILES if name not in present]
        raise CaError(
            f"CA state directory {state_dir} holds {', '.join(present)} but not "
            f"{', '.join(missing)}; restore the missing files, or delete the CA files there "
            "to create a new root (every workload certificate will be reissued)"
        )
    ensure_private_dir(state_dir)
    ca, key_pem = self_signed_root(trust_domain, now)
    root = ca.root_pem.encode("ascii")
    write_private(state_dir / CA_KEY_FILE, key_pem)
    write_public(state_dir / CERT_CHAIN_FILE, root)
    write_public(state_dir / ROOT_CERT_FILE, root)
    write_public(state_dir / CA_CERT_FILE, root)
    return ca
