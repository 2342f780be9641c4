"""What a proxy's secrets say, read from Envoy's config dump (pure).

``mizzen proxy-config secret POD`` shows, per SDS secret Envoy holds, each
certificate's subject, SANs, serial and validity. Envoy redacts private
keys in its config dump; nothing here would print one anyway, because only
certificate fields are read.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509

from mizzen.ca.authority import serial_hex

SECRETS_DUMP_PATH = "/config_dump?resource=dynamic_active_secrets"


@dataclass(frozen=True)
class CertInfo:
    secret: str  # SDS name: default, ROOTCA
    kind: str  # "certificate" (a chain link) or "trusted CA"
    subject: str
    issuer: str
    sans: tuple[str, ...]
    serial: str
    not_before: datetime
    not_after: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "secret": self.secret,
            "kind": self.kind,
            "subject": self.subject,
            "issuer": self.issuer,
            "sans": list(self.sans),
            "serial": self.serial,
            "not_before": self.not_before.isoformat(timespec="seconds"),
            "not_after": self.not_after.isoformat(timespec="seconds"),
        }


def _san(name: x509.GeneralName) -> str:
    """One SAN the way ``openssl x509 -text`` prints it."""
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI:{name.value}"
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    if isinstance(name, x509.IPAddress):
        ip = name.value
        if isinstance(ip, ipaddress.IPv6Address):
            # OpenSSL writes all eight groups, upper case, no zero compression.
            groups = ip.packed
            text = ":".join(
                f"{int.from_bytes(groups[i : i + 2], 'big'):X}" for i in range(0, 16, 2)
            )
            return f"IP Address:{text}"
        return f"IP Address:{ip}"
    if isinstance(name, x509.RFC822Name):
        return f"email:{name.value}"
    if isinstance(name, x509.DirectoryName):
        return f"DirName:{name.value.rfc4514_string()}"
    return f"{type(name).__name__}:{getattr(name, 'value', '')}"


def _sans(cert: x509.Certificate) -> tuple[str, ...]:
    """The SANs in certificate order, as openssl prints them."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(_san(name) for name in ext)


def _inline(source: Mapping[str, Any] | None) -> bytes:
    if not source:
        return b""
    if "inline_bytes" in source:
        try:
            return base64.b64decode(source["inline_bytes"])
        except (binascii.Error, ValueError):
            return b""
    return str(source.get("inline_string", "")).encode()


def _certs(secret: str, kind: str, pem: bytes) -> Iterator[CertInfo]:
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        return
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        return  # not readable as certificates: nothing to describe
    for cert in certs:
        yield CertInfo(
            secret=secret,
            kind=kind,
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            sans=_sans(cert),
            serial=serial_hex(cert.serial_number),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
        )


def _entries(dump: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    # A full dump nests the secrets in a SecretsConfigDump; asked for
    # ``resource=dynamic_active_secrets``, Envoy lists them directly.
    for config in dump.get("configs", ()):
        if "secret" in config:
            yield config
        yield from config.get("dynamic_active_secrets", ())


def describe_secrets(dump: Mapping[str, Any]) -> list[CertInfo]:
    """Every certificate in the active SDS secrets of an Envoy config dump."""
    out: list[CertInfo] = []
    for entry in _entries(dump):
        secret = entry.get("secret") or {}
        name = str(entry.get("name") or secret.get("name", ""))
        chain = (secret.get("tls_certificate") or {}).get("certificate_chain")
        out.extend(_certs(name, "certificate", _inline(chain)))
        trusted = (secret.get("validation_context") or {}).get("trusted_ca")
        out.extend(_certs(name, "trusted CA", _inline(trusted)))
    return out
