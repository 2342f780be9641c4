"""The certificate service: who may have which certificate, and how a
refusal reads, through ``issue`` (pure) and through a real grpc.aio server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import grpc
import pytest
from ca_helpers import NOW, Pki, load_chain, pem
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from mizzen.ca import (
    CertificateAuthority,
    IssuedCert,
    PodClaims,
    TokenSigner,
    ca_from_plugin_pem,
    make_csr,
    private_key_pem,
    spiffe_id,
    wire,
)
from mizzen.ca.service import DEFAULT_TTL, CertificateService, PodRecord, Refused

TD = "cluster.local"
KEY = bytes(range(32))
CLAIMS = PodClaims("shop", "reviews-v1-0", "uid-1", "reviews")
ME = f"spiffe://{TD}/ns/shop/sa/reviews"


class Pods:
    """The runtime's view of live pods, as the daemon keeps it."""

    def __init__(self) -> None:
        self.live: dict[tuple[str, str], PodRecord] = {
            ("shop", "reviews-v1-0"): PodRecord("uid-1", "reviews")
        }

    def __call__(self, namespace: str, pod: str) -> PodRecord | None:
        return self.live.get((namespace, pod))


def service(
    ca: CertificateAuthority,
    pods: Pods | None = None,
    *,
    clock: Callable[[], datetime] = lambda: NOW,
    on_issued: Callable[[PodClaims, IssuedCert], None] | None = None,
) -> CertificateService:
    return CertificateService(
        ca, TokenSigner(KEY), pods or Pods(), TD, clock=clock, on_issued=on_issued
    )


def request(
    key: ec.EllipticCurvePrivateKey, namespace: str = "shop", sa: str = "reviews", ttl: int = 3600
) -> bytes:
    csr = make_csr(key, spiffe_id(namespace, sa, TD)).decode()
    return wire.encode_request(csr, ttl)


def token(claims: PodClaims = CLAIMS, key: bytes = KEY) -> str:
    return TokenSigner(key).issue(claims)


def refused(svc: CertificateService, tok: str, req: bytes) -> Refused:
    with pytest.raises(Refused) as info:
        svc.issue(tok, req)
    return info.value


# -- issue: the happy path --------------------------------------------------------


def test_signs_for_the_tokens_identity(
    self_signed: CertificateAuthority, workload_key: ec.EllipticCurvePrivateKey
) -> None:
    claims, issued = service(self_signed).issue(token(), request(workload_key))
    assert claims == CLAIMS
    assert issued.identity == ME
    leaf, root = load_chain(issued.chain_pem)
    assert root == self_signed.root_certs[0]
    leaf.verify_directly_issued_by(root)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [ME]
    assert leaf.public_key() == workload_key.public_key()


def test_chain_is_leaf_first_root_last_with_an_intermediate(
    ec_pki: Pki, workload_key: ec.EllipticCurvePrivateKey
) -> None:
    ca = ca_from_plugin_pem(
        {
            "ca-cert.pem": pem(ec_pki.inter),
            "ca-key.pem": private_key_pem(ec_pki.inter_key),
            "root-cert.pem": pem(ec_pki.root),
            "cert-chain.pem": pem(ec_pki.inter, ec_pki.root),
        },
        NOW,
    )
    _, issued = service(ca).issue(token(), request(workload_key))
    leaf, inter, root = load_chain(issued.chain_pem)
    assert (inter, root) == (ec_pki.inter, ec_pki.root)
    leaf.verify_directly_issued_by(inter)
    inter.verify_directly_issued_by(root)


@pytest.mark.parametrize(
    ("asked", "lifetime"),
    [
        (3600, timedelta(hours=1)),
        (120, timedelta(minutes=2)),
        (0, DEFAULT_TTL),
        (-60, DEFAULT_TTL),
        # More than the CA gives (90 days), even an int64's worth, is capped.
        (400 * 86400, timedelta(days=90)),
        (2**63 - 1, timedelta(days=90)),
    ],
)
def test_requested_validity(
    self_signed: CertificateAuthority,
    workload_key: ec.EllipticCurvePrivateKey,
    asked: int,
    lifetime: timedelta,
) -> None:
    _, issued = service(self_signed).issue(token(), request(workload_key, ttl=asked))
    assert issued.not_after == NOW + lifetime


def test_default_lifetime_is_istios() -> None:
    assert timedelta(hours=24) == DEFAULT_TTL


def test_issue_is_pure_of_the_callback(
    self_signed: CertificateAuthority, workload_key: ec.EllipticCurvePrivateKey
) -> None:
    seen: list[object] = []
    svc = service(self_signed, on_issued=lambda c, i: seen.append((c, i)))
    svc.issue(token(), request(workload_key))
    assert seen == []  # only a served call reports an issue


# -- issue: refusals ----------------------------------------------------------------


def _tampered(tok: str) -> str:
    header, payload, signature = tok.split(".")
    # Flip one character of the payload (still valid base64url).
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    return ".".join((header, flipped, signature))


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: _tampered(token()), id="tampered"),
        pytest.param(lambda: token(key=b"\x01" * 32), id="foreign-key"),
        pytest.param(lambda: "not-a-token", id="garbage"),
        pytest.param(lambda: token() + "x", id="extended-signature"),
    ],
)
def test_bad_credential_is_unauthenticated(
    self_signed: CertificateAuthority,
    workload_key: ec.EllipticCurvePrivateKey,
    make: Callable[[], str],
) -> None:
    e = refused(service(self_signed), make(), request(workload_key))
    assert e.status == grpc.StatusCode.UNAUTHENTICATED
    assert e.reason.startswith("bad pod credential: ")


def test_token_of_a_gone_pod_is_dead(
    self_signed: CertificateAuthority, workload_key: ec.EllipticCurvePrivateKey
) -> None:
    pods = Pods()
    svc = service(self_signed, pods)
    tok = token()
    svc.issue(tok, request(workload_key))
    del pods.live[("shop", "reviews-v1-0")]
    e = refused(svc, tok, request(workload_key))
    assert e.status == grpc.StatusCode.UNAUTHENTICATED
    assert "shop/reviews-v1-0" in e.reason and "no longer valid" in e.reason


def test_token_of_an_earlier_pod_of_the_same_name_is_dead(
    self_signed: CertificateAuthority, workload_key: ec.EllipticCurvePrivateKey
) -> None:
    pods = Pods()
    pods.live[("shop", "reviews-v1-0")] = PodRecord("uid-2", "reviews")  # restarted
    e = refused(service(self_signed, pods), token(), request(workload_key))
    assert e.status == grpc.StatusCode.UNAUTHENTICATED
    assert "no longer valid" in e.reason


def test_service_account_mismatch_is_permission_denied(
    self_signed: CertificateAuthority, workload_key: ec.EllipticCurvePrivateKey
) -> None:
    pods = Pods()
    pods.live[("shop", "reviews-v1-0")] = PodRecord("uid-1", "ratings")
    e = refused(service(self_signed, pods), token(), request(workload_key))
    assert e.status == grpc.StatusCode.PERMISSION_DENIED
    assert "'reviews'" in e.reason and "'ratings'" in e.reason


def test_csr_for_another_namespace_is_permission_denied(
    self_signed: CertificateAuthority, workload_key: ec.EllipticCurvePrivateKey
) -> None:
    e = refused(service(self_signed), token(), request(workload_key, namespace="other"))
    assert e.status == grpc.StatusCode.PERMISSION_DENIED
    assert f"spiffe://{TD}/ns/other/sa/reviews" in e.reason  # what was asked
    assert ME in e.reason  # what this caller may have
    assert e.reason.startswith("pod shop/reviews-v1-0: ")


def test_csr_for_another_service_account_is_permission_denied(
    self_signed: CertificateAuthority, workload_key: ec.EllipticCurvePrivateKey
) -> None:
    e = refused(service(self_signed), token(), request(workload_key, sa="admin"))
    assert e.status == grpc.StatusCode.PERMISSION_DENIED
    assert f"spiffe://{TD}/ns/shop/sa/admin" in e.reason


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x0a\x50abc", id="truncated"),
        pytest.param(b"\x08\x01", id="csr-not-a-string"),
        pytest.param(b"\x0a\x02\xff\xfe", id="csr-not-utf8"),
        pytest.param(b"\x0f", id="bad-wire-type"),
        pytest.param(b"", id="empty"),
        pytest.param(wire.encode_request("", 3600), id="no-csr"),
        pytest.param(wire.encode_request("hello", 3600), id="csr-not-pem"),
    ],
)
def test_malformed_request_is_invalid_argument(
    self_signed: CertificateAuthority, data: bytes
) -> None:
    e = refused(service(self_signed), token(), data)
    assert e.status == grpc.StatusCode.INVALID_ARGUMENT
    assert e.reason.startswith("malformed request: ")


def test_credential_is_checked_before_the_request_is_read(
    self_signed: CertificateAuthority,
) -> None:
    e = refused(service(self_signed), "nope", b"\x0f")
    assert e.status == grpc.StatusCode.UNAUTHENTICATED


def test_ca_that_cannot_sign_is_internal(
    self_signed: CertificateAuthority, workload_key: ec.EllipticCurvePrivateKey
) -> None:
    later = NOW + timedelta(days=20 * 365)  # past the root's ten years
    e = refused(service(self_signed, clock=lambda: later), token(), request(workload_key))
    assert e.status == grpc.StatusCode.INTERNAL
    assert "expired" in e.reason


# -- served by a real grpc.aio server on a Unix socket ---------------------------------


async def _call(
    address: str, svc: CertificateService, data: bytes, metadata: tuple[tuple[str, str], ...]
) -> bytes:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((svc.handler(),))
    port = server.add_insecure_port(address)
    assert port
    if address.endswith(":0"):  # TCP on an ephemeral port
        address = f"{address.rpartition(':')[0]}:{port}"
    await server.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            call = channel.unary_unary(wire.PATH)
            reply: bytes = await call(data, metadata=metadata, timeout=10)
            return reply
    finally:
        await server.stop(None)


def _bearer(tok: str, scheme: str = "Bearer") -> tuple[tuple[str, str], ...]:
    return (("authorization", f"{scheme} {tok}"),)


def test_served_call_signs_and_reports(
    tmp_path: Path,
    self_signed: CertificateAuthority,
    workload_key: ec.EllipticCurvePrivateKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[tuple[PodClaims, IssuedCert]] = []
    svc = service(self_signed, on_issued=lambda c, i: seen.append((c, i)))
    caplog.set_level(logging.INFO, logger="mizzen.ca")
    address = f"unix:{tmp_path / 'ca.sock'}"
    reply = asyncio.run(_call(address, svc, request(workload_key), _bearer(token())))
    chain = wire.decode_response(reply)
    ((claims, issued),) = seen
    assert claims == CLAIMS
    assert tuple(chain) == issued.chain_pem
    assert load_chain(chain)[0].public_key() == workload_key.public_key()
    (record,) = [r for r in caplog.records if r.name == "mizzen.ca"]
    assert record.levelno == logging.INFO
    assert f"issued {ME} to pod shop/reviews-v1-0: serial {issued.serial}" in record.getMessage()


@pytest.mark.parametrize("scheme", ["bearer", "BEARER"])
def test_scheme_is_case_insensitive(
    tmp_path: Path,
    self_signed: CertificateAuthority,
    workload_key: ec.EllipticCurvePrivateKey,
    scheme: str,
) -> None:
    address = f"unix:{tmp_path / 'ca.sock'}"
    reply = asyncio.run(
        _call(address, service(self_signed), request(workload_key), _bearer(token(), scheme))
    )
    assert len(wire.decode_response(reply)) == 2


@pytest.mark.parametrize(
    ("metadata", "status", "reason"),
    [
        pytest.param((), grpc.StatusCode.UNAUTHENTICATED, "no pod credential", id="no-header"),
        pytest.param(
            (("authorization", "Basic dXNlcjpwYXNz"),),
            grpc.StatusCode.UNAUTHENTICATED,
            "no pod credential",
            id="basic-auth",
        ),
        pytest.param(
            (("authorization", "Bearer "),),
            grpc.StatusCode.UNAUTHENTICATED,
            "no pod credential",
            id="empty-token",
        ),
        pytest.param(
            _bearer(token(key=b"\x02" * 32)),
            grpc.StatusCode.UNAUTHENTICATED,
            "bad pod credential",
            id="foreign-key",
        ),
        pytest.param(
            (*_bearer(token()), ("x-forwarded-for", "198.18.0.9, 198.18.4.7")),
            grpc.StatusCode.PERMISSION_DENIED,
            "ns/other/sa/reviews",
            id="other-namespace",
        ),
    ],
)
def test_served_refusal_is_logged_without_secrets(
    tmp_path: Path,
    self_signed: CertificateAuthority,
    workload_key: ec.EllipticCurvePrivateKey,
    caplog: pytest.LogCaptureFixture,
    metadata: tuple[tuple[str, str], ...],
    status: grpc.StatusCode,
    reason: str,
) -> None:
    seen: list[object] = []
    svc = service(self_signed, on_issued=lambda c, i: seen.append(i))
    caplog.set_level(logging.DEBUG)
    address = f"unix:{tmp_path / 'ca.sock'}"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        asyncio.run(_call(address, svc, request(workload_key, namespace="other"), metadata))
    assert info.value.code() == status
    assert reason in (info.value.details() or "")
    assert seen == []
    (record,) = [r for r in caplog.records if r.name == "mizzen.ca"]
    assert record.levelno == logging.WARNING
    text = record.getMessage()
    assert text.startswith("refused a certificate request from ")
    assert reason in text
    if any(k == "x-forwarded-for" for k, _ in metadata):
        # Through the TLS front: the client's address, not the socket's.
        assert "from 198.18.4.7:" in text
    # Nothing secret in any log line: not the token, not any part of it,
    # not the workload key.
    logged = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    for _, value in metadata:
        for part in value.split()[-1].split("."):
            if len(part) > 8:
                assert part not in logged
    key_lines = [
        line for line in private_key_pem(workload_key).decode().splitlines() if "-----" not in line
    ]
    assert not any(line in logged for line in key_lines)
    assert "PRIVATE KEY" not in logged


def test_a_call_that_did_not_come_through_tls_is_refused(
    self_signed: CertificateAuthority,
    workload_key: ec.EllipticCurvePrivateKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On a TCP port without TLS (the plaintext debug port) a credential
    would travel in clear: the service refuses before reading it."""
    caplog.set_level(logging.INFO, logger="mizzen.ca")
    svc = service(self_signed)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        asyncio.run(_call("127.0.0.1:0", svc, request(workload_key), _bearer(token())))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "only issued on the secure port" in str(refused.value.details())
    assert "refused a certificate request" in caplog.text
