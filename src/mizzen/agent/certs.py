"""The workload certificate: made inside the pod, signed by the control
plane, rotated before it expires.

The agent makes a fresh key pair for every certificate, sends only the CSR
(with the pod's credential) to the control plane's certificate service on
15012, and hands key and chain to Envoy through the ``SecretStore`` (SDS).
Like Istio's agent, it renews once half of the lifetime has passed (with a
little jitter, so that pods started together do not renew together), and a
failed renewal is retried with back-off while the current certificate is
still good: traffic never waits for the control plane.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from cryptography import x509

from mizzen.agent.bootstrap import CONTROL_PLANE_NAME
from mizzen.agent.sds import SecretStore
from mizzen.ca import wire
from mizzen.ca.authority import generate_key, make_csr, private_key_pem, serial_hex
from mizzen.ca.identity import SpiffeId

log = logging.getLogger("mizzen.agent.certs")

GRACE_RATIO = 0.5
JITTER_RATIO = 0.01
RETRY_MIN_S = 1.0
RETRY_MAX_S = 30.0
CALL_TIMEOUT_S = 10.0


class CertificateError(RuntimeError):
    """The control plane would not (or could not) sign; says why."""


@dataclass(frozen=True)
class Issued:
    chain_pem: tuple[str, ...]
    serial: str
    not_after: float  # seconds since the epoch
    received_at: float


class CaClient:
    """Istio's ``CreateCertificate`` over TLS, authenticated by the pod's token."""

    def __init__(self, address: str, trust_bundle: bytes, token: str) -> None:
        self._address = address
        self._credentials = grpc.ssl_channel_credentials(root_certificates=trust_bundle)
        self._token = token

    async def create_certificate(self, csr_pem: bytes, ttl_s: int) -> list[str]:
        options = [
            ("grpc.ssl_target_name_override", CONTROL_PLANE_NAME),
            ("grpc.default_authority", CONTROL_PLANE_NAME),
        ]
        async with grpc.aio.secure_channel(self._address, self._credentials, options) as channel:
            call = channel.unary_unary(
                wire.PATH, request_serializer=None, response_deserializer=None
            )
            try:
                reply = await call(
                    wire.encode_request(csr_pem.decode(), ttl_s),
                    metadata=(("authorization", f"Bearer {self._token}"),),
                    timeout=CALL_TIMEOUT_S,
                )
            except grpc.aio.AioRpcError as e:
                raise CertificateError(
                    f"the control plane at {self._address} refused the CSR: "
                    f"{e.code().name}: {e.details()}"
                ) from None
        chain = wire.decode_response(reply)
        if not chain:
            raise CertificateError(f"the control plane at {self._address} sent no certificate")
        return chain


class CertificateManager:
    def __init__(
        self,
        client: CaClient,
        identity: SpiffeId,
        ttl_s: float,
        store: SecretStore,
        trust_bundle: str,
        *,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        wait: Callable[[asyncio.Event, float], Awaitable[bool]] | None = None,
    ) -> None:
        """``clock``, ``jitter`` and ``wait`` (sleep unless stopped; True
        when stopped) are injectable so tests can drive time."""
        self._client = client
        self._identity = identity
        self._ttl_s = max(1, round(ttl_s))
        self._store = store
        self._trust_bundle = trust_bundle
        self._clock = clock
        self._jitter = jitter
        self._wait = wait or _wait
        self.current: Issued | None = None

    async def refresh(self) -> Issued:
        """A new key pair and certificate, installed for Envoy; raises
        ``CertificateError`` when the control plane does not sign."""
        key = generate_key()
        csr = make_csr(key, self._identity)
        chain = await self._client.create_certificate(csr, self._ttl_s)
        leaf = x509.load_pem_x509_certificate(chain[0].encode())
        if leaf.public_key() != key.public_key():
            # Envoy would refuse the pair and keep serving the old one, while
            # this agent believed it had renewed.
            raise CertificateError(
                f"the certificate the control plane sent (serial "
                f"{serial_hex(leaf.serial_number)}) is not for the key this agent made"
            )
        issued = Issued(
            chain_pem=tuple(chain),
            serial=serial_hex(leaf.serial_number),
            not_after=leaf.not_valid_after_utc.timestamp(),
            received_at=self._clock(),
        )
        self._store.set(private_key_pem(key), chain, self._trust_bundle)
        self.current = issued
        log.info(
            "certificate for %s: serial %s, valid until %s",
            self._identity,
            issued.serial,
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(issued.not_after)),
        )
        return issued

    def renew_at(self, issued: Issued) -> float:
        """Half-way through the lifetime as received (the certificate's own
        not_before is backdated for clock skew), plus or minus a little."""
        lifetime = max(0.0, issued.not_after - issued.received_at)
        ratio = GRACE_RATIO + JITTER_RATIO * (2 * self._jitter() - 1)
        return issued.received_at + lifetime * ratio

    async def obtain(self, stop: asyncio.Event) -> Issued | None:
        """Refresh until it works (back-off between failures) or ``stop``."""
        delay = RETRY_MIN_S
        while not stop.is_set():
            try:
                return await self.refresh()
            except (CertificateError, OSError, ValueError) as e:
                log.warning(
                    "cannot get a certificate for %s (retry in %.0f s): %s",
                    self._identity,
                    delay,
                    e,
                )
            except Exception:
                # Anything unforeseen must not end renewals silently: the
                # certificate would expire under a running Envoy.
                log.exception(
                    "unexpected error renewing the certificate of %s (retry in %.0f s)",
                    self._identity,
                    delay,
                )
            if await self._wait(stop, delay):
                return None
            delay = min(RETRY_MAX_S, delay * 2)
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Keep a valid certificate until ``stop``: renew, retry on failure."""
        while not stop.is_set():
            if self.current is None:
                if await self.obtain(stop) is None:
                    return
                continue
            due = self.renew_at(self.current) - self._clock()
            if due > 0 and await self._wait(stop, due):
                return
            if await self.obtain(stop) is None:
                return


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True when stopped."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True
