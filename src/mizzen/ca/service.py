"""The control plane's certificate service (gRPC adapter, Istio's wire form).

A pod's agent calls ``CreateCertificate`` with a CSR and its pod
credential (``authorization: Bearer <token>``). The service signs only
when all of these hold, and logs every refusal with the reason:

1. the token's signature is the control plane's (on Kubernetes: the API
   server vouches for the pod's projected service-account token, see
   ``mizzen.kube.tokenreview``);
2. the pod it names still exists, with the same uid and service account
   (a token of a deleted pod, or of an earlier pod of the same name, is
   dead);
3. the CSR asks for exactly that pod's identity,
   ``spiffe://<trust domain>/ns/<namespace>/sa/<service account>``.

Private keys never come here: only CSRs and public certificates do.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from cryptography import x509

from mizzen.ca import wire
from mizzen.ca.authority import (
    DEFAULT_WORKLOAD_CERT_TTL,
    MAX_WORKLOAD_CERT_TTL,
    CertificateAuthority,
    IssuedCert,
)
from mizzen.ca.errors import CaError, CsrRejected
from mizzen.ca.identity import spiffe_id
from mizzen.ca.tokens import PodClaims, TokenError, TokenSigner

# What istiod issues when the client does not say (the agent always does).
DEFAULT_TTL = DEFAULT_WORKLOAD_CERT_TTL


@dataclass(frozen=True)
class PodRecord:
    """What the runtime knows of a live pod, to check a credential against."""

    uid: str
    service_account: str


# (namespace, pod) -> the live pod, or None when there is no such pod.
PodLookup = Callable[[str, str], PodRecord | None]
OnIssued = Callable[[PodClaims, IssuedCert], None]
# Who a credential belongs to, or ``Refused``: for a runtime whose pod
# credentials another party checks (the Kubernetes API's TokenReview).
Authenticate = Callable[[str], Awaitable[PodClaims]]


class Refused(Exception):
    def __init__(self, status: grpc.StatusCode, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class CertificateService:
    def __init__(
        self,
        ca: CertificateAuthority,
        tokens: TokenSigner | None,
        pods: PodLookup,
        trust_domain: str,
        *,
        on_issued: OnIssued | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        logger: logging.Logger | None = None,
        secure_transport: Callable[[str], bool] = lambda peer: peer.startswith("unix:"),
        authenticate: Authenticate | None = None,
    ) -> None:
        self._ca = ca
        self._authenticate = authenticate
        self._tokens = tokens
        self._pods = pods
        self._trust_domain = trust_domain
        self._on_issued = on_issued
        self._clock = clock
        self._log = logger or logging.getLogger("mizzen.ca")
        # Whether a call came over TLS, from gRPC's peer string: in the mesh,
        # only calls through the TLS front arrive on the Unix socket.
        self._secure = secure_transport

    def handler(self) -> grpc.GenericRpcHandler:
        method = grpc.unary_unary_rpc_method_handler(
            self._create, request_deserializer=None, response_serializer=None
        )
        return grpc.method_handlers_generic_handler(wire.SERVICE, {wire.METHOD: method})

    def issue(self, token: str, request: bytes) -> tuple[PodClaims, IssuedCert]:
        """Check and sign one request (pure of IO); raises ``Refused``."""
        claims = self.verify(token)
        return claims, self.sign(claims, request)

    def verify(self, token: str) -> PodClaims:
        """Rules 1 and 2 with the mesh's own credentials; raises ``Refused``."""
        if self._tokens is None:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, "this mesh issues no pod credentials")
        try:
            claims = self._tokens.verify(token)
        except TokenError as e:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, f"bad pod credential: {e}") from None
        self.check_pod(claims)
        return claims

    def check_pod(self, claims: PodClaims) -> None:
        """Rule 2: the credential's pod is alive, the same pod, the same account."""
        where = f"pod {claims.namespace}/{claims.pod}"
        pod = self._pods(claims.namespace, claims.pod)
        if pod is None or pod.uid != claims.pod_uid:
            raise Refused(
                grpc.StatusCode.UNAUTHENTICATED,
                f"the credential of {where} is no longer valid: that pod does not exist now",
            )
        if pod.service_account != claims.service_account:
            raise Refused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"the credential of {where} names service account "
                f"{claims.service_account!r}, but the pod runs as {pod.service_account!r}",
            )

    def sign(self, claims: PodClaims, request: bytes) -> IssuedCert:
        """Rule 3 and the signature; raises ``Refused``."""
        where = f"pod {claims.namespace}/{claims.pod}"
        try:
            csr, seconds = wire.decode_request(request)
        except wire.WireError as e:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {e}") from None
        if not csr.strip():
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "malformed request: no CSR")
        try:
            x509.load_pem_x509_csr(csr.encode())
        except ValueError:
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                "malformed request: the csr field is not a PEM certificate request",
            ) from None
        identity = spiffe_id(claims.namespace, claims.service_account, self._trust_domain)
        # The CA caps lifetimes anyway; capping first keeps a huge request
        # (int64 seconds overflow timedelta) from crashing the handler.
        max_s = int(MAX_WORKLOAD_CERT_TTL.total_seconds())
        ttl = timedelta(seconds=min(seconds, max_s)) if seconds > 0 else DEFAULT_TTL
        try:
            issued = self._ca.sign_csr(csr.encode(), identity, ttl, self._clock())
        except CsrRejected as e:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, f"{where}: {e}") from None
        except CaError as e:
            raise Refused(grpc.StatusCode.INTERNAL, f"{where}: cannot sign: {e}") from None
        return issued

    async def _create(self, request: bytes, context: Any) -> bytes:
        metadata = dict(context.invocation_metadata() or ())
        auth = str(metadata.get("authorization", ""))
        scheme, _, token = auth.partition(" ")
        # Through the TLS front the transport peer is the Unix socket only
        # the front reaches; it appends the real client address to
        # X-Forwarded-For. Anywhere else (the plaintext debug port) the
        # service does not answer: a credential must never travel in clear.
        transport = str(context.peer() or "")
        secure = self._secure(transport)
        forwarded = str(metadata.get("x-forwarded-for", "")) if secure else ""
        peer = forwarded.rsplit(",", 1)[-1].strip() or transport
        try:
            if not secure:
                raise Refused(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "certificates are only issued on the secure port (15012, TLS)",
                )
            if scheme.lower() != "bearer" or not token:
                raise Refused(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "no pod credential: send it as 'authorization: Bearer <token>'",
                )
            token = token.strip()
            if self._authenticate is not None:
                claims = await self._authenticate(token)
                self.check_pod(claims)
            else:
                claims = self.verify(token)
            issued = self.sign(claims, request)
        except Refused as e:
            self._log.warning("refused a certificate request from %s: %s", peer, e.reason)
            await context.abort(e.status, e.reason)
            raise AssertionError("unreachable: abort raises") from None
        self._log.info(
            "issued %s to pod %s/%s: serial %s, valid until %s",
            issued.identity,
            claims.namespace,
            claims.pod,
            issued.serial,
            issued.not_after.isoformat(timespec="seconds"),
        )
        if self._on_issued is not None:
            self._on_issued(claims, issued)
        return wire.encode_response(issued.chain_pem)
