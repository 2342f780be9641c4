"""``describe_secrets``: what ``mizzen proxy-config secret`` reads from Envoy's
config dump. Certificates come from ``mizzen.ca``; SANs and serials are
compared with what ``openssl x509`` prints for the same certificate."""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ca_helpers import NOW
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mizzen.ca import CertificateAuthority, IssuedCert, make_csr, spiffe_id
from mizzen.ca.authority import serial_hex
from mizzen.ca.describe import SECRETS_DUMP_PATH, CertInfo, describe_secrets

REDACTED = "W3JlZGFjdGVkXQ=="  # base64("[redacted]"), what Envoy puts for a key
DYNAMIC_SECRET = "type.googleapis.com/envoy.admin.v3.SecretsConfigDump.DynamicSecret"
SECRETS_DUMP = "type.googleapis.com/envoy.admin.v3.SecretsConfigDump"
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
ME = "spiffe://cluster.local/ns/shop/sa/reviews"


@pytest.fixture
def workload(
    self_signed: CertificateAuthority, workload_key: ec.EllipticCurvePrivateKey
) -> IssuedCert:
    csr = make_csr(workload_key, spiffe_id("shop", "reviews"))
    return self_signed.sign_csr(csr, spiffe_id("shop", "reviews"), timedelta(hours=24), NOW)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _cert_secret(chain: str, *, as_string: bool = False) -> dict[str, Any]:
    source = {"inline_string": chain} if as_string else {"inline_bytes": _b64(chain)}
    return {
        "@type": SECRET,
        "name": "default",
        "tls_certificate": {
            "certificate_chain": source,
            "private_key": {"inline_bytes": REDACTED},
        },
    }


def _root_secret(root: str, *, as_string: bool = False) -> dict[str, Any]:
    source = {"inline_string": root} if as_string else {"inline_bytes": _b64(root)}
    return {"@type": SECRET, "name": "ROOTCA", "validation_context": {"trusted_ca": source}}


def flat_dump(secrets: list[dict[str, Any]]) -> dict[str, Any]:
    """``/config_dump?resource=dynamic_active_secrets``: one entry per secret."""
    return {
        "configs": [
            {
                "@type": DYNAMIC_SECRET,
                "name": s["name"],
                "version_info": "1",
                "last_updated": "2026-11-22T12:00:00Z",
                "secret": s,
            }
            for s in secrets
        ]
    }


def nested_dump(secrets: list[dict[str, Any]]) -> dict[str, Any]:
    """A whole ``/config_dump``: the secrets inside a SecretsConfigDump."""
    return {
        "configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", "bootstrap": {}},
            {
                "@type": SECRETS_DUMP,
                "dynamic_active_secrets": [
                    {"name": s["name"], "version_info": "1", "secret": s} for s in secrets
                ],
            },
        ]
    }


def _served(workload: IssuedCert) -> str:
    # What the agent gives Envoy: the chain without the root.
    return "".join(workload.chain_pem[:-1])


@pytest.mark.parametrize("shape", [flat_dump, nested_dump])
@pytest.mark.parametrize("as_string", [False, True])
def test_describes_both_dump_shapes_and_sources(
    shape: Any, as_string: bool, workload: IssuedCert, self_signed: CertificateAuthority
) -> None:
    dump = shape(
        [
            _cert_secret(_served(workload), as_string=as_string),
            _root_secret(self_signed.root_pem, as_string=as_string),
        ]
    )
    leaf, root = describe_secrets(dump)
    root_cert = self_signed.root_certs[0]
    assert leaf == CertInfo(
        secret="default",
        kind="certificate",
        subject="",
        issuer="O=cluster.local",
        sans=(f"URI:{ME}",),
        serial=workload.serial,
        not_before=workload.not_before,
        not_after=workload.not_after,
    )
    assert (root.secret, root.kind, root.subject, root.sans) == (
        "ROOTCA",
        "trusted CA",
        "O=cluster.local",
        (),
    )
    assert root.not_after == root_cert.not_valid_after_utc


def test_a_redacted_private_key_never_appears(
    workload: IssuedCert, self_signed: CertificateAuthority
) -> None:
    dump = flat_dump([_cert_secret(_served(workload)), _root_secret(self_signed.root_pem)])
    out = json.dumps([c.to_json() for c in describe_secrets(dump)])
    assert REDACTED not in out
    assert "[redacted]" not in out
    assert "private" not in out.lower()


def test_an_unredacted_key_is_not_read_either(
    workload: IssuedCert, workload_key: ec.EllipticCurvePrivateKey
) -> None:
    # An Envoy that did not redact, or a key pasted into the chain: only
    # certificate fields are ever read.
    key_pem = workload_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    secret = _cert_secret(key_pem + _served(workload))
    secret["tls_certificate"]["private_key"] = {"inline_string": key_pem}
    out = json.dumps([c.to_json() for c in describe_secrets(flat_dump([secret]))])
    assert [c.serial for c in describe_secrets(flat_dump([secret]))] == [workload.serial]
    body = [line for line in key_pem.splitlines() if "-----" not in line]
    assert not any(line in out for line in body)


def test_every_certificate_of_a_chain_in_order(
    workload: IssuedCert, self_signed: CertificateAuthority
) -> None:
    # Leaf first, then the signing chain (here just the root): each described.
    infos = describe_secrets(nested_dump([_cert_secret("".join(workload.chain_pem))]))
    assert [(i.kind, i.serial) for i in infos] == [
        ("certificate", workload.serial),
        ("certificate", serial_hex(self_signed.root_certs[0].serial_number)),
    ]


@pytest.mark.parametrize(
    "dump",
    [
        {},
        {"configs": []},
        {"configs": [{"@type": DYNAMIC_SECRET, "name": "default", "secret": {}}]},
        flat_dump([{"name": "default", "tls_certificate": {}}]),
        flat_dump([{"name": "default", "tls_certificate": {"certificate_chain": {}}}]),
        flat_dump([{"name": "x", "tls_certificate": {"certificate_chain": {"inline_bytes": "!"}}}]),
        flat_dump([_cert_secret("not a certificate")]),
        # A marker but no readable certificate: nothing to show, no crash.
        flat_dump([_cert_secret("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")]),
        nested_dump([]),
    ],
)
def test_nothing_to_describe(dump: dict[str, Any]) -> None:
    assert describe_secrets(dump) == []


def test_name_comes_from_the_secret_when_the_entry_has_none(workload: IssuedCert) -> None:
    dump = {"configs": [{"@type": DYNAMIC_SECRET, "secret": _cert_secret(_served(workload))}]}
    assert [c.secret for c in describe_secrets(dump)] == ["default"]


def test_to_json(workload: IssuedCert) -> None:
    (info,) = describe_secrets(flat_dump([_cert_secret(_served(workload))]))
    assert info.to_json() == {
        "secret": "default",
        "kind": "certificate",
        "subject": "",
        "issuer": "O=cluster.local",
        "sans": [f"URI:{ME}"],
        "serial": workload.serial,
        "not_before": workload.not_before.isoformat(timespec="seconds"),
        "not_after": workload.not_after.isoformat(timespec="seconds"),
    }


def test_dump_path_asks_only_for_active_secrets() -> None:
    assert SECRETS_DUMP_PATH == "/config_dump?resource=dynamic_active_secrets"


# -- as openssl prints them -------------------------------------------------------------


def _odd_cert(serial: int) -> str:
    """A certificate with every kind of SAN, in a mixed order."""
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.DNSName("reviews.shop.svc"),
        x509.UniformResourceIdentifier(ME),
        x509.IPAddress(ipaddress.ip_address("fd00::7")),
        x509.IPAddress(ipaddress.ip_address("198.18.0.7")),
        x509.IPAddress(ipaddress.ip_address("2001:db8:0:0:1:0:0:ab")),
        x509.RFC822Name("ops@example.org"),
    ]
    now = datetime(2026, 11, 22, tzinfo=UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(x509.Name([]))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _openssl(pem: str) -> tuple[tuple[str, ...], str]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl binary")
    out = subprocess.run(
        [openssl, "x509", "-noout", "-serial", "-ext", "subjectAltName"],
        input=pem.encode(),
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout.decode()
    serial = re.search(r"^serial=(\S+)$", out, re.M)
    assert serial is not None, out
    lines = [line.strip() for line in out.splitlines()]
    sans_line = lines[lines.index("X509v3 Subject Alternative Name: critical") + 1]
    return tuple(sans_line.split(", ")), serial.group(1)


@pytest.mark.parametrize("serial", [0x0A1B, 0xFF01, 0x8000_0000_0000_0000_0000, 7])
def test_sans_and_serial_as_openssl_prints_them(serial: int) -> None:
    pem = _odd_cert(serial)
    (info,) = describe_secrets(flat_dump([_cert_secret(pem)]))
    sans, openssl_serial = _openssl(pem)
    assert info.sans == sans
    assert info.serial == openssl_serial


def test_workload_certificate_as_openssl_prints_it(workload: IssuedCert) -> None:
    (info,) = describe_secrets(flat_dump([_cert_secret(workload.leaf_pem)]))
    assert (info.sans, info.serial) == _openssl(workload.leaf_pem)
